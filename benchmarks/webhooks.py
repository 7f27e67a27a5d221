"""Stripe webhook events per second through the real endpoint, against a bare view.

    python benchmarks/webhooks.py [--events N] [--rows N] [--quick] [--clients C]

Uses ``DATABASE_URL`` (PostgreSQL) if set, else a temporary SQLite file; either way a
fresh database of its own (``<name>_webhooks``, dropped at the end; a copy of
``run.py``'s template, see ``bench_database.py``).

Set-up, with the real app and the bundled Stripe simulator: a ready connected account
(as the tests connect one), one billing request created through ``billing.create_request``
and paid on the simulator, whose ``checkout.session.completed`` event is the template
of N more; N Pending requests (bulk-inserted) with their own Checkout Session ids; N
events, each the template with its own event id and session. Then a real HTTP server
(``bench_server.py``: Django's threaded runserver, in its own process, on this
database) and C keep-alive ``http.client`` connections, each sending its share of the
events, every body signed as Stripe signs it (``Stripe-Signature``, the test secret
from the settings):

- **measured**: ``POST /billing/stripe/webhook/``: verify the signature, store the event
  once, apply it (the request becomes Paid: a conditional UPDATE, the audit log, the
  payment notification queued for django-q2) and answer 200;
- **baseline**: ``POST /bench/bare/`` on the same server (``bench_urls.py``): the same
  bodies and headers, a view that reads the body and answers 200;
- **duplicates**: the same N events delivered again: verified, found already
  processed, answered 200, nothing changed;
- **floor**: ``POST /bench/store/``: the same bodies parsed and each stored once (one
  durable ``INSERT ... ON CONFLICT DO NOTHING``): what any endpoint that keeps what it
  is sent costs at least. The rows give the ratio to it too (``floor_ratio``).

The bare view runs before and after the webhooks; its baseline is the mean of the two.
``--rows M`` runs them on a table of M billing requests (the events' own and a history,
``bench_history.py``) and as many processed events.
"""

from __future__ import annotations

import argparse
import copy
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WEBHOOK = "/billing/stripe/webhook/"
DEFAULT_EVENTS = 1000
QUICK_EVENTS = 100


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, help=f"events per run (default {DEFAULT_EVENTS})")
    parser.add_argument(
        "--rows", type=int, help="billing requests (and stored events) in the tables"
    )
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_EVENTS} events (CI)")
    parser.add_argument("--clients", type=int, default=4, help="keep-alive connections (4)")
    args = parser.parse_args(argv)
    args.events = args.events or (QUICK_EVENTS if args.quick else DEFAULT_EVENTS)
    if args.rows:
        args.events = max(1, min(args.events, args.rows - 1))
    args.rows = max(args.rows or 0, args.events + 1)
    args.clients = max(1, min(args.clients, args.events))
    return args


def describe_database() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT sqlite_version()")
            return f"SQLite {cursor.fetchone()[0]} (temporary file, WAL)"
        cursor.execute("SHOW server_version")
        return f"PostgreSQL {cursor.fetchone()[0]}"


def template_event() -> tuple[dict[str, Any], Any]:
    """A real ``checkout.session.completed`` event from the simulator, and the site.

    The account is connected and the request created through the app, the session paid
    on the simulator; the simulator is stopped again (the server never calls Stripe for
    these events).
    """
    from django.conf import settings
    from django.test import override_settings

    from tests.factories import connect_ready_account, make_site, request_details
    from wagtail_client_billing import billing
    from wagtail_client_billing.testing.stripe_simulator import StripeSimulator

    with StripeSimulator() as simulator:
        stripe_settings = {
            **settings.WAGTAIL_CLIENT_BILLING,
            "STRIPE_API_BASE": simulator.url,
            "STRIPE_MAX_NETWORK_RETRIES": 0,
        }
        with override_settings(WAGTAIL_CLIENT_BILLING=stripe_settings):
            account = connect_ready_account(simulator)
            site = make_site("acme.test", "Acme Plumbing")
            request = billing.create_request(
                site=site,
                details=request_details(),
            )
            simulator.complete_checkout(request.checkout_session_id)
            event = simulator.events("checkout.session.completed")[-1]
    if event.get("account") != account.account_id or event["livemode"]:
        raise SystemExit(f"unexpected template event: {event.get('account')}, {event['livemode']}")
    if event["data"]["object"]["payment_status"] != "paid":
        raise SystemExit("the template event is not a paid checkout")
    return event, site


def seed(site: Any, account_id: str, events: int) -> list[int]:
    """``events`` Pending requests of ``site``, each with its own session; their ids."""
    from datetime import timedelta

    from django.utils import timezone

    from wagtail_client_billing.models import BillingRequest

    expires = timezone.now() + timedelta(hours=23)
    BillingRequest.objects.bulk_create(
        (
            BillingRequest(
                site=site,
                email=f"client{number}@example.com",
                currency="eur",
                amount=amount_of(number),
                description="Website maintenance",
                success_url="https://acme.test/thanks/",
                cancel_url="https://acme.test/cancel/",
                mode="test",
                account_id=account_id,
                checkout_session_id=f"cs_test_bench_{number:07d}",
                checkout_url=f"https://checkout.stripe.test/c/pay/cs_test_bench_{number:07d}",
                expires_at=expires,
            )
            for number in range(events)
        ),
        batch_size=2000,
    )
    return list(
        BillingRequest.objects.filter(checkout_session_id__startswith="cs_test_bench_")
        .order_by("checkout_session_id")
        .values_list("pk", flat=True)
    )


def amount_of(number: int) -> int:
    """The amount of the ``number``th request (and of its session: Stripe's amount_total)."""
    return 4990 + number


def event_bodies(template: dict[str, Any], request_ids: list[int]) -> list[bytes]:
    """One event per request: the template with its own event id, session, request and
    amount."""
    bodies = []
    for number, request_id in enumerate(request_ids):
        event = copy.deepcopy(template)
        event["id"] = f"evt_bench_{number:07d}"
        session = event["data"]["object"]
        session["id"] = f"cs_test_bench_{number:07d}"
        session["client_reference_id"] = f"wcb-{request_id}"
        session["metadata"]["wagtail_client_billing_request"] = str(request_id)
        session["amount_subtotal"] = session["amount_total"] = amount_of(number)
        if session.get("payment_intent"):
            session["payment_intent"] = f"pi_bench_{number:07d}"
        bodies.append(json.dumps(event).encode())
    return bodies


class Server:
    """``bench_server.py`` in a child process, on this process's database."""

    def __init__(self, workdir: str) -> None:
        from django.db import connection

        self.log_path = Path(workdir) / "server.log"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "benchmarks.bench_settings",
            "WCB_BENCH_DATABASE_NAME": str(connection.settings_dict["NAME"]),
        }
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench_server"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise SystemExit(f"the server did not start:\n{self.log_tail()}")
        self.port = int(line)

    def log_tail(self, lines: int = 30) -> str:
        self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def post_all(
    port: int, path: str, bodies: list[bytes], secret: str, clients: int
) -> tuple[float, list[tuple[int, bytes]]]:
    """POST every body (signed just before) over ``clients`` keep-alive connections.

    Returns the wall time from the first request to the last answer, and each body's
    status and answer, in the order of ``bodies``.
    """
    from wagtail_client_billing.testing.stripe_simulator.webhooks import signature_header

    signed = [(body, signature_header(body, secret)) for body in bodies]
    answers: list[tuple[int, bytes]] = [(0, b"")] * len(bodies)
    errors: list[BaseException] = []
    share = -(-len(bodies) // clients)
    firsts = range(0, len(bodies), share)
    start = threading.Barrier(len(firsts) + 1)

    def work(first: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            connection.connect()
            start.wait()
            for index in range(first, min(first + share, len(bodies))):
                body, signature = signed[index]
                headers = {"Content-Type": "application/json", "Stripe-Signature": signature}
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                answers[index] = (response.status, response.read())
        except BaseException as error:  # reported by the caller
            errors.append(error)
            start.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(first,), daemon=True) for first in firsts]
    for thread in threads:
        thread.start()
    try:
        start.wait(timeout=60)  # every connection open: go
    except threading.BrokenBarrierError:
        pass  # a connection failed; its error is reported below
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{len(errors)} client error(s), the first: {errors[0]!r}")
    return elapsed, answers


def check_answers(
    answers: list[tuple[int, bytes]], what: str, status: str | None, server: Server
) -> None:
    """Every answer 200 (and, for the webhook, the event's status as expected)."""
    for code, body in answers:
        if code != 200 or (status and json.loads(body).get("status") != status):
            raise SystemExit(
                f"{what}: answered {code} {body[:200]!r}, expected 200 {status or ''}\n"
                f"{server.log_tail()}"
            )


def count_statements(body: bytes, secret: str) -> dict[str, int]:
    """SQL statements of one new event and of its duplicate, in this process."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from wagtail_client_billing.testing.stripe_simulator.webhooks import signature_header

    client = Client()
    counts = {}
    for kind in ("new", "duplicate"):
        with CaptureQueriesContext(connection) as captured:
            response = client.post(
                WEBHOOK,
                body,
                content_type="application/json",
                headers={"Stripe-Signature": signature_header(body, secret)},
            )
        if response.status_code != 200:
            raise SystemExit(f"the {kind} event answered {response.status_code}")
        counts[kind] = len(captured.captured_queries)
    return counts


def measure(args: argparse.Namespace, workdir: str) -> dict[str, Any]:
    from django.db import connection

    from benchmarks import bench_history
    from wagtail_client_billing.conf import billing_settings
    from wagtail_client_billing.models import BillingRequest, WebhookEvent

    template, site = template_event()
    request_ids = seed(site, template["account"], args.events + 1)
    history = args.rows - BillingRequest.objects.count()
    if history > 0:
        bench_history.add_requests(site, history, account_id=template["account"])
        bench_history.add_events(history, account_id=template["account"])
    *bodies, counted = event_bodies(template, request_ids)
    secret = billing_settings().webhook_secrets("test")[0]
    template_body = json.dumps(template).encode()
    statements = count_statements(counted, secret)
    connection.close()  # the server writes; this process only checks at the end

    server = Server(workdir)
    try:
        # Warm-up: imports, templates, connections; the template's own request is paid.
        _, answers = post_all(server.port, WEBHOOK, [template_body], secret, 1)
        check_answers(answers, "warm-up webhook", "processed", server)
        _, answers = post_all(server.port, "/bench/bare/", bodies[:20], secret, args.clients)
        check_answers(answers, "warm-up bare view", None, server)

        bare_before, answers = post_all(server.port, "/bench/bare/", bodies, secret, args.clients)
        check_answers(answers, "bare view", None, server)
        floor, answers = post_all(server.port, "/bench/store/", bodies, secret, args.clients)
        check_answers(answers, "store view", None, server)
        webhook, answers = post_all(server.port, WEBHOOK, bodies, secret, args.clients)
        check_answers(answers, "webhook", "processed", server)
        duplicates, answers = post_all(server.port, WEBHOOK, bodies, secret, args.clients)
        check_answers(answers, "duplicate webhook", "processed", server)
        bare_after, answers = post_all(server.port, "/bench/bare/", bodies, secret, args.clients)
        check_answers(answers, "bare view", None, server)
    finally:
        server.stop()

    paid = BillingRequest.objects.filter(pk__in=request_ids, status="paid").count()
    events = WebhookEvent.objects.filter(stripe_id__startswith="evt_bench_").count()
    if paid != args.events + 1 or events != args.events + 1:
        raise SystemExit(f"expected {args.events + 1} paid requests and events: {paid}, {events}")
    bare = statistics.fmean([bare_before, bare_after])
    size = statistics.median(len(body) for body in bodies)
    return {
        "benchmark": "webhooks",
        "events": args.events,
        "rows": args.rows,
        "clients": args.clients,
        "body_bytes": size,
        "webhook_s": webhook,
        "duplicates_s": duplicates,
        "bare_s": bare,
        "bare_runs_s": [bare_before, bare_after],
        "floor_s": floor,
        "statements": statements,
    }


def rows(result: dict[str, Any], database: str) -> list[dict[str, Any]]:
    """Two lines of run.py's table: new events, then duplicates."""
    events, bare = result["events"], result["bare_s"]
    common = {
        "benchmark": "webhooks",
        "baseline": "bare view, same server and bodies",
        "baseline_s": bare,
        "database": database,
        "events": events,
        "rows": result["rows"],
        "clients": result["clients"],
    }
    lines = []
    for name, key, label, kind in (
        ("webhook_new", "webhook_s", "checkout.session.completed", "new"),
        ("webhook_duplicate", "duplicates_s", "duplicate", "duplicate"),
    ):
        seconds = result[key]
        what = "new events (each marks a request Paid)" if key == "webhook_s" else "duplicates"
        lines.append(
            {
                "name": name,
                **common,
                "measured": f"webhook endpoint, {what}",
                "statements": result["statements"][kind],
                "time_s": seconds,
                "ratio": seconds / bare if bare else None,
                "floor_s": result["floor_s"],
                "floor_ratio": seconds / result["floor_s"],
                "events_per_s": events / seconds,
                "baseline_events_per_s": events / bare,
                "notes": (
                    f"{events:,} {label} events, {result['clients']} connections: "
                    f"{events / seconds:,.0f} events/s vs {events / bare:,.0f}/s; "
                    f"{result['statements'][kind]} SQL statements/event; "
                    f"{seconds / result['floor_s']:.2f}x the floor (parse and store once: "
                    f"{result['floor_s'] / bare:.2f}x the bare view)"
                    + (
                        f"; {result['rows']:,} requests in the table"
                        if result["rows"] > events + 1
                        else ""
                    )
                ),
            }
        )
    return lines


def report(result: dict[str, Any], database: str) -> None:
    events = result["events"]
    print(
        f"\nStripe webhooks on {database}: {events:,} events per run, {result['clients']} "
        f"keep-alive connections, bodies of {result['body_bytes']:,.0f} bytes, "
        f"{result['rows']:,} requests in the table"
    )
    for label, seconds in (
        ("POST /billing/stripe/webhook/, new", result["webhook_s"]),
        ("POST /billing/stripe/webhook/, duplicates", result["duplicates_s"]),
        ("POST /bench/store/ (floor: store once)", result["floor_s"]),
        ("POST /bench/bare/ (baseline, mean of 2)", result["bare_s"]),
    ):
        print(
            f"  {label:42} {seconds:8.2f} s  {events / seconds:8.0f} events/s  "
            f"{seconds / events * 1000:7.2f} ms/event  {seconds / result['bare_s']:6.2f}x"
        )
    before, after = result["bare_runs_s"]
    print(f"  bare view runs: {before:.2f} s before, {after:.2f} s after the webhooks")
    statements = result["statements"]
    print(
        f"  SQL statements per event: {statements['new']} new, {statements['duplicate']} "
        "duplicate (one event delivered in-process with django.test.Client)"
    )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark; print the report and return the table's rows."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wcb-bench-") as workdir:
        sys.path.insert(0, str(ROOT))
        from benchmarks.bench_database import create_database, set_up_django

        set_up_django(workdir)
        from django.db import connection

        old_name = create_database("webhooks", workdir)  # WCB_BENCH_TEMPLATE: a copy
        try:
            database = describe_database()
            result = measure(args, workdir)
        finally:
            connection.creation.destroy_test_db(old_name, verbosity=0)
    result["database"] = database
    report(result, database)
    return rows(result, database)


if __name__ == "__main__":
    main()
