"""Billing requests' races on PostgreSQL: webhooks, the expiry sweep and delete at once.

Run with ``DATABASE_URL=postgres://postgres@127.0.0.1:5432/wcb_races``. Every actor runs
in its own thread with its own database connection (closed at the end), all released
at once by a barrier, so PostgreSQL's row locks and the conditional UPDATEs in
``billing`` are all that stop a second transition. Transactions really commit here, so
the signals fire on commit, in the thread that won; counts are read from the database.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from wagtail.models import ModelLogEntry

from tests.factories import make_site, request_details
from wagtail_client_billing import billing, signals
from wagtail_client_billing.models import BillingRequest, WebhookEvent
from wagtail_client_billing.testing.stripe_simulator.webhooks import signature_header

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("wagtail_root"),
]

Status = BillingRequest.Status
WEBHOOK = "/billing/stripe/webhook/"
SECRET = "whsec_test_suite"  # tests/settings.py
DELIVERIES = 50
ROUNDS = 3


@pytest.fixture
def stripe_timeout():
    return 10


@pytest.fixture
def site(db):
    return make_site("acme.test", "Acme Plumbing")


class SignalLog:
    """Every billing signal received, from whichever thread sent it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[tuple[str, int, dict[str, Any]]] = []

    def receiver(self, name: str) -> Callable[..., None]:
        def receive(sender: Any, billing_request: BillingRequest, **kwargs: Any) -> None:
            kwargs.pop("signal", None)
            with self.lock:
                self.received.append((name, billing_request.pk, kwargs))

        return receive

    def count(self, name: str, pk: int | None = None) -> int:
        return sum(1 for n, p, _ in self.received if n == name and pk in (None, p))

    def of(self, name: str, pk: int) -> list[dict[str, Any]]:
        return [kwargs for n, p, kwargs in self.received if n == name and p == pk]


@pytest.fixture
def signal_log() -> Iterator[SignalLog]:
    log = SignalLog()
    receivers = []
    for name in ("created", "paid", "expired", "deleted"):
        signal = getattr(signals, f"billing_request_{name}")
        receiver = log.receiver(name)
        signal.connect(receiver, weak=False, dispatch_uid=f"test-races-{name}")
        receivers.append((signal, name))
    yield log
    for signal, name in receivers:
        signal.disconnect(dispatch_uid=f"test-races-{name}")


def new_request(site, email: str = "client@example.com") -> BillingRequest:
    """A request made as the admin makes it: the row and its Checkout Session."""
    return billing.create_request(
        site=site,
        details=request_details(email=email),
    )


def signed(event: dict[str, Any]) -> tuple[bytes, str]:
    body = json.dumps(event).encode()
    return body, signature_header(body, SECRET)


def race(actors: list[Callable[[], Any]]) -> list[Any]:
    """Run every actor in its own thread, released together; return results or errors."""
    barrier = threading.Barrier(len(actors))

    def run(actor: Callable[[], Any]) -> Any:
        try:
            barrier.wait(timeout=30)
            return actor()
        except Exception as error:  # reported by the caller's assertions
            return error
        finally:
            connection.close()  # this thread's own connection

    with ThreadPoolExecutor(len(actors)) as pool:
        return list(pool.map(run, actors))


def delivery(body: bytes, header: str) -> Callable[[], int]:
    def post() -> int:
        response = Client().post(
            WEBHOOK, data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
        )
        return response.status_code

    return post


def entries(action: str, request: BillingRequest | None = None) -> int:
    # The request's own entries by content type too: a connection may share its pk.
    entries = ModelLogEntry.objects.for_instance(request) if request else ModelLogEntry.objects
    return entries.filter(action=action).count()


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_fifty_deliveries_racing_the_sweep_and_a_delete_pay_once(
    site, connection, stripe, signal_log, round_
):
    request = new_request(site)
    stripe.complete_checkout(request.checkout_session_id)  # the client paid at Stripe
    event = stripe.events("checkout.session.completed")[-1]
    body, header = signed(event)
    after_expiry = request.expires_at + timedelta(seconds=1)
    stale = BillingRequest.objects.get(pk=request.pk)  # as the delete view loaded it

    actors: list[Callable[[], Any]] = [delivery(body, header) for _ in range(DELIVERIES)]
    actors.append(lambda: billing.expire_overdue(now=after_expiry))
    actors.append(lambda: billing.delete_request(stale))
    results = race(actors)

    assert results[:DELIVERIES] == [200] * DELIVERIES
    swept, deleted = results[DELIVERIES:]
    assert not isinstance(swept, Exception), swept
    assert not isinstance(deleted, Exception), deleted

    request.refresh_from_db()
    assert request.status == Status.PAID and request.paid_at
    # Exactly one transition to Paid: one audit entry, one signal.
    assert entries(billing.ACTION_PAID, request) == 1
    assert signal_log.count("paid", request.pk) == 1
    # Stripe said the session was complete, so the delete could only confirm the payment.
    assert entries(billing.ACTION_DELETED) == 0
    assert signal_log.count("deleted") == 0
    # The sweep flipped it first or not at all; if it did, the payment is flagged late.
    expired = entries(billing.ACTION_EXPIRED, request)
    assert expired == signal_log.count("expired", request.pk) <= 1
    assert swept == ([request.pk] if expired else [])
    assert request.late_payment is bool(expired)
    assert signal_log.of("paid", request.pk) == [{"late": bool(expired)}]
    paid_entry = ModelLogEntry.objects.get(action=billing.ACTION_PAID)
    assert paid_entry.data["late"] is bool(expired)
    assert paid_entry.data["source"] in (event["id"], "delete")
    # The event is stored once and applied once.
    stored = WebhookEvent.objects.get()
    assert (stored.stripe_id, stored.status, stored.attempts) == (
        event["id"],
        WebhookEvent.Status.PROCESSED,
        1,
    )


def test_late_payment_after_the_sweep_won_is_paid_and_flagged(site, connection, stripe, signal_log):
    # The sweep has already won (the deterministic end of the race above); then fifty
    # deliveries of the payment at once still make exactly one late transition.
    request = new_request(site)
    stripe.complete_checkout(request.checkout_session_id)
    assert billing.expire_overdue(now=request.expires_at + timedelta(seconds=1)) == [request.pk]
    body, header = signed(stripe.events("checkout.session.completed")[-1])

    assert race([delivery(body, header) for _ in range(DELIVERIES)]) == [200] * DELIVERIES

    request.refresh_from_db()
    assert (request.status, request.late_payment) == (Status.PAID, True)
    assert entries(billing.ACTION_EXPIRED, request) == 1
    assert entries(billing.ACTION_PAID, request) == 1
    assert signal_log.of("paid", request.pk) == [{"late": True}]


def overdue_requests(site, count: int) -> list[int]:
    """``count`` pending requests already past their expiry (no Stripe needed)."""
    past = timezone.now() - timedelta(hours=1)
    BillingRequest.objects.bulk_create(
        BillingRequest(
            site=site,
            email=f"client{i}@example.com",
            currency="eur",
            amount=1000 + i,
            description="Hosting",
            success_url="https://acme.test/thanks/",
            cancel_url="https://acme.test/cancel/",
            expires_at=past,
        )
        for i in range(count)
    )
    return sorted(BillingRequest.objects.values_list("pk", flat=True))


@pytest.mark.parametrize(("sweeps", "batch_size"), [(8, 5000), (8, 25)])
def test_concurrent_sweeps_flip_each_row_once(site, signal_log, sweeps, batch_size):
    ids = overdue_requests(site, 300)

    results = race([lambda: billing.expire_overdue(batch_size=batch_size)] * sweeps)

    errors = [result for result in results if isinstance(result, Exception)]
    assert errors == []
    flipped = [pk for result in results for pk in result]
    assert sorted(flipped) == ids  # each row by exactly one sweep
    assert set(BillingRequest.objects.values_list("status", flat=True)) == {Status.EXPIRED}
    per_row = Counter(
        ModelLogEntry.objects.filter(action=billing.ACTION_EXPIRED).values_list(
            "object_id", flat=True
        )
    )
    assert per_row == Counter({str(pk): 1 for pk in ids})
    assert sorted(pk for name, pk, _ in signal_log.received if name == "expired") == ids


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_a_delete_racing_the_expired_webhook_ends_once(
    site, connection, stripe, signal_log, round_
):
    request = new_request(site)
    stripe.expire_session(request.checkout_session_id)  # Stripe expired it on its own
    body, header = signed(stripe.events("checkout.session.expired")[-1])
    stale = BillingRequest.objects.get(pk=request.pk)

    deliveries = 10
    results = race(
        [delivery(body, header) for _ in range(deliveries)]
        + [lambda: billing.delete_request(stale)]
    )

    assert results[:deliveries] == [200] * deliveries
    assert not isinstance(results[-1], Exception), results[-1]
    request.refresh_from_db()
    assert request.status in (Status.EXPIRED, Status.DELETED)
    assert results[-1].status == request.status  # what the delete view would report
    outcome = {
        Status.EXPIRED: (billing.ACTION_EXPIRED, "expired"),
        Status.DELETED: (billing.ACTION_DELETED, "deleted"),
    }
    action, signal = outcome[request.status]
    # One final state, one audit entry and one signal: the winner's.
    audit = ModelLogEntry.objects.for_instance(request).exclude(action=billing.ACTION_CREATE)
    assert list(audit.values_list("action", flat=True)) == [action]
    assert [name for name, pk, _ in signal_log.received if pk == request.pk] == [
        "created",
        signal,
    ]
    assert request.paid_at is None and not request.late_payment
    assert (request.expired_at is None) is (request.status == Status.DELETED)
    assert (request.deleted_at is None) is (request.status == Status.EXPIRED)


def test_five_people_renewing_at_once_bill_the_client_once(site, connection, stripe):
    request = new_request(site)
    billing.delete_request(request)
    request.refresh_from_db()
    results = race(
        [lambda n=n: billing.renew_request(request, nonce=f"renew-{n}") for n in range(5)]
    )
    renewals = BillingRequest.objects.filter(renewed_from=request)
    assert renewals.count() == 1, results
    renewal = renewals.get()
    winners = [r for r in results if isinstance(r, BillingRequest)]
    losers = [r for r in results if isinstance(r, billing.AlreadyRenewed)]
    # No lock is held across Stripe now: a loser that comes while the winner still
    # waits for its session is told so, instead of waiting on the winner's lock.
    busy = [r for r in results if isinstance(r, billing.RenewalInProgress)]
    assert [w.pk for w in winners] == [renewal.pk], results
    assert len(losers) + len(busy) == 4, results
    assert {e.billing_request.pk for e in losers} <= {renewal.pk}
    assert entries(billing.ACTION_RENEW, request) == 1
    assert len(list(stripe.engine.store.iter("checkout.session"))) == 2


def test_two_connects_at_once_link_one_account(stripe):
    from wagtail_client_billing import connections, stripe_api
    from wagtail_client_billing.models import StripeConnection

    def connect(n: int) -> Callable[[], Any]:
        return lambda: connections.connect(
            mode="test",
            country="FR",
            privacy_policy_url="https://agency.example/privacy",
            terms_of_service_url="https://agency.example/terms",
            site_url="https://agency.example/",
            nonce=f"tab-{n}",
        )

    results = race([connect(n) for n in range(4)])
    refused = [r for r in results if isinstance(r, stripe_api.StripeRefused)]
    assert StripeConnection.objects.count() == 1, results
    assert len(refused) == 3, results  # a plain message each, never a 500
    assert all("already linked" in error.user_message for error in refused)
    assert entries(connections.ACTION_CONNECT) == 1
