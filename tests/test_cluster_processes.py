"""Real django-q2 clusters: SIGKILLed mid-batch and restarted, and two of them at once.

Everything here is real: ``manage.py qcluster`` processes (``tests.processes``) on this
test's own database (the test database, which the clusters and the test both use; the
test's transactions really commit), the ORM broker or Redis, the Stripe simulator over
HTTP, and an aiosmtpd server on loopback where every site's Custom SMTP points. The
test process creates the billing requests exactly as the admin does
(``billing.create_request``), so their email tasks reach the broker through the app's own
``queue_billing_email``; it stands in for the every-minute schedule by queueing
``expire_and_reconcile`` itself (django-q2's scheduler only looks every 30 seconds).

What is counted: every email the SMTP server accepted, per recipient (each request has
its own address); each request's email state; each request's status and its audit-log
expiry entries; and, from the clusters' logs and django-q2's task table, which cluster
ran which task and how often.

A SIGKILL can land while an email is claimed (``sending``) but its outcome not yet
recorded. The app never sends such an email again on a guess (it may have gone out);
after ``mail.LOST_AFTER`` the drain marks it failed with a reason saying so, for a
person to resend. The kill test asserts exactly that for those emails, and counts how
many of them had in fact reached the server (killed after the server had the whole
message, before the database write: an at-least-once design would have sent those
twice) and how many had not (an email the client did not get, until someone resends).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ, Task
from wagtail.models import ModelLogEntry

from tests.conftest import redis_url
from tests.factories import connect_ready_account, make_site, request_details
from tests.processes import QCluster, database_env, stop, wait_until, write_settings
from tests.smtp import Inbox, SMTPServer
from wagtail_client_billing import billing, tasks
from wagtail_client_billing.conf import billing_settings
from wagtail_client_billing.mail import outbox as mail
from wagtail_client_billing.models import BillingRequest, OutgoingEmail, SiteEmailSettings

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("wagtail_root"),
]

EmailStatus = BillingRequest.EmailStatus
Status = BillingRequest.Status
SITES = 3
WORKERS = 2  # per cluster
# The kill test's task timeout and ORM redelivery delay, short enough to wait for (the
# example project's are 60 and 120 s; a batch stops itself after 5 s, inside both).
Q_TIMEOUT, Q_RETRY = 8, 9


# The SMTP server -------------------------------------------------------------------------


class SlowInbox(Inbox):
    """An inbox that takes ``delay`` seconds over each message before it answers "250".

    Like a real server queueing the message to disk, it keeps a message it has whole even
    if the client vanishes before the answer: a sender killed then has delivered an email
    that it never recorded as sent (the window this file measures).
    """

    def __init__(self) -> None:
        super().__init__()
        self.delay = 0.0

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)

    def received(self, prefix: str = "") -> Counter:
        """Messages received per recipient (those starting with ``prefix``)."""
        with self._lock:
            envelopes = list(self.envelopes)
        return Counter(rcpt for _, rcpts in envelopes for rcpt in rcpts if rcpt.startswith(prefix))


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    server = SMTPServer()
    server.inbox = SlowInbox()
    server.controller.handler = server.inbox
    with server:
        yield server


# Sites, Stripe, requests -----------------------------------------------------------------


@pytest.fixture
def stripe_timeout():
    return 10


@pytest.fixture
def sites(smtp, stripe) -> list:
    """Client sites whose Custom SMTP is the loopback server, and a Stripe account."""
    connect_ready_account(stripe)
    made = []
    for number in range(SITES):
        site = make_site(f"site{number}.test", f"Client {number}")
        SiteEmailSettings.objects.create(
            site=site,
            custom_smtp=True,
            host=smtp.host,
            port=smtp.port,
            security=SiteEmailSettings.Security.NONE,
            from_email=f"billing@site{number}.test",
        )
        made.append(site)
    return made


def create_requests(sites: list, prefix: str, count: int, every: int = 0, then=None) -> list[int]:
    """``count`` billing requests round the sites, each to its own address, as the admin
    makes them (its email task is queued when the row commits); ``then(i)`` after every
    ``every``-th one."""
    ids = []
    for number in range(count):
        site = sites[number % len(sites)]
        request = billing.create_request(
            site=site,
            details=request_details(email=f"{prefix}-{number}@example.com", amount=4990 + number),
        )
        ids.append(request.pk)
        if every and then is not None and number % every == every - 1:
            then(number)
    return ids


def overdue_requests(sites: list, smtp: SMTPServer, count: int) -> list[int]:
    """Requests made yesterday: their emails went out (inline, before any cluster runs)
    and their links have expired, but no sweep has run since."""
    assert Conf.SYNC, "made while tasks still run inline"
    ids = create_requests(sites, "overdue", count)
    assert sum(smtp.inbox.received("overdue-").values()) == count
    assert statuses(ids) == {EmailStatus.SENT: count}
    return ids


def expiry_entries(ids: list[int]) -> Counter:
    return Counter(
        int(object_id)
        for object_id in ModelLogEntry.objects.filter(
            action=billing.ACTION_EXPIRED, object_id__in=[str(pk) for pk in ids]
        ).values_list("object_id", flat=True)
    )


def statuses(ids: list[int], field_name: str = "email_status") -> Counter:
    requests = BillingRequest.objects.filter(pk__in=ids).prefetch_related("emails")
    return Counter(getattr(request, field_name) for request in requests)


# The broker and the clusters --------------------------------------------------------------


@dataclass
class Broker:
    """The queue the test and its clusters share: ORM (this database) or Redis."""

    kind: str
    name: str
    url: str = ""
    sweeps: list[str] = field(default_factory=list)
    _client: object = None

    def pending(self) -> int:
        """Tasks still in the broker (for the ORM broker: not yet acknowledged)."""
        if self.kind == "orm":
            return OrmQ.objects.filter(key=self.name).count()
        return self.redis().llen(f"django_q:{self.name}:q")

    def redis(self):
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(self.url)
        return self._client

    def sweep(self, tag: str) -> None:
        """Queue the schedule's task, as django-q2's scheduler does every minute."""
        from django_q.tasks import async_task

        name = f"wcb-sweep-{tag}"
        async_task(tasks.SCHEDULE_FUNC, task_name=name, group=tasks.SCHEDULE_NAME)
        self.sweeps.append(name)


@pytest.fixture(params=["orm", pytest.param("redis", marks=pytest.mark.redis)])
def broker(request, monkeypatch) -> Iterator[Broker]:
    """django-q2 in this process pointed at the clusters' queue.

    Django-q2 reads ``Q_CLUSTER`` once, at import (``override_settings`` cannot change
    it), so the test process's ``Conf`` is set like the clusters' settings: a queue name
    of this test's own (which also salts the signed task packages), the broker, and
    ``go_async()`` below ends the suite's ``sync`` mode once the set-up is done.
    """
    name = f"wcb-test-{os.getpid()}-{secrets.token_hex(4)}"
    monkeypatch.setattr(Conf, "PREFIX", name)
    monkeypatch.setattr(Conf, "CLUSTER_NAME", name)
    monkeypatch.setattr(Conf, "Q_STAT", f"django_q:{name}:cluster")
    if request.param == "orm":
        monkeypatch.setattr(Conf, "ORM", "default")
        yield Broker("orm", name)
        return
    url = redis_url()
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", url)
    found = Broker("redis", name, url)
    yield found
    client = found.redis()
    keys = list(client.scan_iter(match=f"django_q:{name}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def go_async(monkeypatch) -> Callable[[], None]:
    """From now on, tasks go to the broker instead of running in this process."""
    return lambda: monkeypatch.setattr(Conf, "SYNC", False)


@pytest.fixture
def cluster(broker, stripe, sites, tmp_path) -> Iterator[Callable[..., QCluster]]:
    """``cluster(label, **q_cluster)``: a ``manage.py qcluster`` on this test's database
    and queue (``q_cluster`` changes its ``Q_CLUSTER``); every one started is SIGKILLed at
    the end, whatever happened."""
    dropped = {"DJANGO_ALLOW_ASYNC_UNSAFE", "DATABASE_URL", "SQLITE_PATH", "Q_REDIS_URL"}
    env = {key: value for key, value in os.environ.items() if key not in dropped}
    env.update(database_env(connection.settings_dict))
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": django_settings.SECRET_KEY,  # signs the task packages
            "DEMO_STATE_DIR": str(tmp_path / "state"),
            "Q_WORKERS": str(WORKERS),
            "STRIPE_API_BASE": stripe.url,
            "STRIPE_TEST_SECRET_KEY": billing_settings().stripe_test_secret_key,
            "STRIPE_TEST_WEBHOOK_SECRET": "whsec_test_suite",
        }
    )
    if broker.kind == "redis":
        env["Q_REDIS_URL"] = broker.url
    started: list[QCluster] = []

    def make(label: str, **q_cluster) -> QCluster:
        # Every result kept (save_limit 0), so the results can be counted.
        overrides = {"name": broker.name, "save_limit": 0, **q_cluster}
        module = write_settings(tmp_path, f"wcb_{label.replace('-', '_')}_settings", overrides)
        made = QCluster(label, {**env, "DJANGO_SETTINGS_MODULE": module}, tmp_path / f"{label}.log")
        started.append(made)
        return made

    yield make
    for made in started:
        made.kill()


def diagnostics(*clusters: QCluster) -> str:
    return "\n".join(f"--- {c.label} ---\n{c.log_tail()}" for c in clusters)


class Clock:
    """Seconds since the test began, at each named step (for the report)."""

    def __init__(self) -> None:
        self.began = time.monotonic()
        self.marks: dict[str, float] = {}

    def mark(self, step: str) -> None:
        self.marks[step] = round(time.monotonic() - self.began, 1)


def report(title: str, clock: Clock, **numbers) -> None:
    """One line of figures per run (shown with ``pytest -s``)."""
    numbers["seconds"] = clock.marks
    print(f"\n[{title}] " + ", ".join(f"{key}={value}" for key, value in numbers.items()))


# Part 1: SIGKILL mid-batch and restart --------------------------------------------------

FRESH = 50
OVERDUE = 20
KILL_AT = (12, 32)  # kill when this many of the fresh emails have arrived ...
SMTP_DELAY = 0.08  # ... (the server takes this long over each one) ...
KILL_JITTER = 0.15  # ... and then up to this long, so the kill falls anywhere in a send


def test_a_cluster_killed_mid_batch_and_restarted_sends_each_email_at_most_once(
    broker, cluster, sites, smtp, go_async
):
    clock = Clock()
    overdue = overdue_requests(sites, smtp, OVERDUE)
    go_async()
    fresh = create_requests(
        sites, "fresh", FRESH, every=20, then=lambda n: broker.sweep(f"during-{n}")
    )
    BillingRequest.objects.filter(pk__in=overdue).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    broker.sweep("before-start")
    assert broker.pending() >= FRESH
    clock.mark("queued")
    smtp.inbox.delay = SMTP_DELAY  # each email takes a while: a kill lands mid-batch

    def arrived() -> int:
        return sum(smtp.inbox.received("fresh-").values())

    worker = cluster("cluster", timeout=Q_TIMEOUT, retry=Q_RETRY).start()
    in_flight: list[set[int]] = []
    for kill_at in KILL_AT:
        wait_until(
            lambda kill_at=kill_at: arrived() >= kill_at,
            timeout=90,
            interval=0.02,
            what=f"{kill_at} emails\n{diagnostics(worker)}",
        )
        # Not right as an email arrives (that would favour the moment between the
        # server's "250" and the database write), but at any point of a send.
        time.sleep(random.uniform(0, KILL_JITTER))
        worker.kill()
        clock.mark(f"kill{worker.kills}")
        at_kill = arrived()
        assert 0 < at_kill < FRESH, "killed mid-batch: some emails arrived, not all"
        sending = set(
            OutgoingEmail.objects.filter(
                billing_request__in=fresh, kind="request", status=EmailStatus.SENDING
            ).values_list("billing_request_id", flat=True)
        )
        in_flight.append(sending - set().union(*in_flight))
        assert len(in_flight[-1]) <= WORKERS, "at most one email in flight per worker"
        worker.start()
    worker.wait_running()

    lost = set().union(*in_flight)
    ticks = iter(range(1000))

    def done() -> bool:
        # The schedule, sped up: sweeps expire, and drain what the kills left queued.
        broker.sweep(f"after-restart-{next(ticks)}")
        emails = statuses(fresh)
        return (
            emails[EmailStatus.SENT] == FRESH - len(lost)
            and statuses(overdue, "status") == {Status.EXPIRED: OVERDUE}
            and broker.pending() <= 1  # the sweep just queued
        )

    wait_until(done, timeout=90, interval=1, what=f"the backlog\n{diagnostics(worker)}")
    wait_until(lambda: broker.pending() == 0, timeout=Q_RETRY + 30, what="an empty broker")
    clock.mark("done")
    worker.kill()  # nothing is left for it to do

    received = smtp.inbox.received()
    # None twice, ever.
    assert max(received.values()) == 1, [r for r, n in received.items() if n > 1]
    # Every email that was not in flight at a kill arrived once and is recorded as sent.
    requests = {r.pk: r for r in BillingRequest.objects.filter(pk__in=fresh)}
    for pk in set(fresh) - lost:
        assert requests[pk].email_status == EmailStatus.SENT, requests[pk].email_error
        assert received[requests[pk].email] == 1
    # The ones in flight stay "sending" (never resent on a guess) ...
    assert {pk for pk in lost if requests[pk].email_status == EmailStatus.SENDING} == lost
    # ... until the drain reports them, after LOST_AFTER, for a person to resend.
    later = timezone.now() + mail.LOST_AFTER + timedelta(seconds=1)
    assert mail.report_lost_sends(now=later) == len(lost)
    for request in BillingRequest.objects.filter(pk__in=lost):
        assert request.email_status == EmailStatus.FAILED
        assert "may not have arrived" in request.email_error
    # Every overdue request expired, with one audit entry each; no fresh one expired.
    assert statuses(overdue, "status") == {Status.EXPIRED: OVERDUE}
    assert expiry_entries(overdue) == dict.fromkeys(overdue, 1)
    assert statuses(fresh, "status") == {Status.PENDING: FRESH}
    assert not expiry_entries(fresh)
    assert received == Counter(
        {f"overdue-{n}@example.com": 1 for n in range(OVERDUE)}
        | {requests[pk].email: 1 for pk in fresh if received[requests[pk].email]}
    )
    report(
        f"kill/{broker.kind}/{connection.vendor}",
        clock,
        emails=FRESH,
        overdue=OVERDUE,
        kills=len(KILL_AT),
        in_flight_at_kill=len(lost),
        of_which_arrived=sum(received[requests[pk].email] for pk in lost),
        lost_then_reported=sum(1 for pk in lost if not received[requests[pk].email]),
        duplicates=sum(n - 1 for n in received.values()),
    )


# Part 2: two clusters at once -------------------------------------------------------------

SCALE_FRESH = 200
SCALE_OVERDUE = 40
OVERDUE_AT_ONCE = 10  # overdue from the start; the rest fall due two at a time later
EXPIRED_LINE = re.compile(r"Expired (\d+) billing request\(s\)")


@pytest.mark.postgres
def test_two_clusters_share_the_work_and_never_do_it_twice(broker, cluster, sites, smtp, go_async):
    clock = Clock()
    overdue = overdue_requests(sites, smtp, SCALE_OVERDUE)
    go_async()
    # A backlog: the emails' tasks with the schedule's sweeps among them (which also
    # drain the due emails, so email batches race each other for the same emails), and
    # a few requests already overdue for those sweeps to race over.
    BillingRequest.objects.filter(pk__in=overdue[:OVERDUE_AT_ONCE]).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    fresh = create_requests(
        sites, "fresh", SCALE_FRESH, every=5, then=lambda n: broker.sweep(f"queued-{n}")
    )
    clock.mark("queued")
    smtp.inbox.delay = 0.01
    # The example project's timeout and retry: no task may come round a second time.
    clusters = (cluster("cluster-a").start(), cluster("cluster-b").start())
    wait_until(
        lambda: statuses(fresh) == {EmailStatus.SENT: SCALE_FRESH},
        timeout=120,
        what=f"the emails\n{diagnostics(*clusters)}",
    )
    clock.mark("sent")
    # Then the rest fall due two at a time, each time with two sweeps queued at once:
    # two workers, often of different clusters, race over the same rows.
    for start in range(OVERDUE_AT_ONCE, SCALE_OVERDUE, 2):
        BillingRequest.objects.filter(pk__in=overdue[start : start + 2]).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
        broker.sweep(f"step-{start}-1")
        broker.sweep(f"step-{start}-2")
        time.sleep(0.1)
    wait_until(
        lambda: statuses(overdue, "status") == {Status.EXPIRED: SCALE_OVERDUE},
        timeout=60,
        what=f"the expiries\n{diagnostics(*clusters)}",
    )
    wait_until(lambda: broker.pending() == 0, timeout=60, what="an empty broker")
    clock.mark("expired")
    stop(*clusters)  # SIGTERM: each finishes the tasks it holds and saves their results
    clock.mark("stopped")

    # No email twice, none missing.
    received = smtp.inbox.received()
    assert max(received.values()) == 1, [r for r, n in received.items() if n > 1]
    assert sum(received.values()) == SCALE_FRESH + SCALE_OVERDUE
    # Every overdue request expired once: one audit entry each, and the sweeps' own
    # counts (logged by whichever cluster ran them) add up to exactly the overdue ones.
    assert expiry_entries(overdue) == dict.fromkeys(overdue, 1)
    assert statuses(fresh, "status") == {Status.PENDING: SCALE_FRESH}
    expired_by = {
        made.label: sum(int(n) for n in EXPIRED_LINE.findall(made.log())) for made in clusters
    }
    assert sum(expired_by.values()) == SCALE_OVERDUE, expired_by
    # No task ran twice: each task name once across both logs, as many runs as results,
    # every one a success on its first attempt.
    runs = [run for made in clusters for run in made.processed()]
    twice = [name for name, n in Counter(name for name, _ in runs).items() if n > 1]
    assert not twice
    results = Task.objects.filter(cluster=broker.name)
    assert results.count() == len(runs)
    assert not results.filter(success=False).exists(), list(
        results.filter(success=False).values_list("func", "result")
    )
    assert set(results.values_list("attempt_count", flat=True)) == {1}
    email_tasks = {name for name, _ in runs if name.startswith("wcb-email-")}
    assert len(email_tasks) == SCALE_FRESH
    ran_sweeps = {name for name, _ in runs if name.startswith("wcb-sweep-")}
    assert ran_sweeps == set(broker.sweeps)
    # Both clusters did both kinds of work.
    for made in clusters:
        funcs = Counter(func for _, func in made.processed())
        assert funcs["wagtail_client_billing.tasks.send_billing_email"], made.label
        assert funcs[tasks.SCHEDULE_FUNC], made.label
    report(
        f"scale-out/{broker.kind}/{connection.vendor}",
        clock,
        emails=SCALE_FRESH,
        overdue=SCALE_OVERDUE,
        sweeps=len(broker.sweeps),
        tasks=len(runs),
        **{f"{made.label}_tasks": len(made.processed()) for made in clusters},
        **{f"{label}_expired": n for label, n in expired_by.items()},
        duplicates=sum(n - 1 for n in received.values()),
    )
