"""Concurrent deliveries of one event, on PostgreSQL.

Run with ``DATABASE_URL=postgres://postgres@127.0.0.1:5432/wcb_dev``. Each delivery runs
the real view (middleware included) in its own thread with its own database connection,
all released at once, so the unique constraint and the conditional UPDATE that claims
the event are what stop a second application. (Threads with Django's test client rather
than ``live_server``: the development server's listen backlog of 10 resets some of 50
simultaneous connections before they reach the view.)
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.test import Client

from tests.test_webhooks import (
    URL,
    account_updated_event,
    body_of,
    deliver,
    handlers,  # noqa: F401  (fixture)
    link,
    onboarding_entries,
    sign,
)
from wagtail_client_billing.events.handlers import account_updated
from wagtail_client_billing.models import StripeConnection, WebhookEvent

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

DELIVERIES = 50
STATUS = WebhookEvent.Status


def deliver_at_once(body: bytes, count: int = DELIVERIES) -> list[int]:
    """POST the same signed body ``count`` times, all released at the same moment."""
    header = sign(body)
    barrier = threading.Barrier(count)

    def post(_: int) -> int:
        client = Client(enforce_csrf_checks=True)
        try:
            barrier.wait(timeout=30)
            response = client.post(
                URL, data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
            )
            return response.status_code
        finally:
            connection.close()  # this thread's own connection

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(post, range(count)))


def test_fifty_concurrent_deliveries_store_and_apply_once():
    connection = link()
    event = account_updated_event()

    statuses = deliver_at_once(body_of(event))

    assert statuses == [200] * DELIVERIES
    stored = WebhookEvent.objects.get()
    assert (stored.stripe_id, stored.status, stored.attempts) == (
        event["id"],
        STATUS.PROCESSED,
        1,
    )
    assert onboarding_entries() == 1
    connection.refresh_from_db()
    assert connection.status == StripeConnection.Status.READY


def test_fifty_concurrent_retries_of_a_failed_event_apply_it_once(handlers):  # noqa: F811
    applied = []

    def slow(event, account):
        # Hold the claimed row for a while, so that the other deliveries queue on it.
        time.sleep(0.2)
        applied.append(event.stripe_id)
        account_updated(event, account)

    handlers["account.updated"] = slow
    link()
    event = account_updated_event()
    WebhookEvent.objects.create(
        stripe_id=event["id"],
        type=event["type"],
        account=event["account"],
        payload=event,
        status=STATUS.FAILED,
        attempts=1,
        error="Traceback (most recent call last):\nConnectionError: earlier failure\n",
    )

    statuses = deliver_at_once(body_of(event))

    assert statuses == [200] * DELIVERIES
    assert applied == [event["id"]]
    stored = WebhookEvent.objects.get()
    assert (stored.status, stored.attempts, stored.error) == (STATUS.PROCESSED, 2, "")
    assert onboarding_entries() == 1


def test_a_signed_event_postgresql_cannot_store_is_refused_with_400():
    # JSON allows \u0000 in strings; PostgreSQL's jsonb does not. Stripe never sends it.
    event = account_updated_event()
    event["data"]["object"]["business_profile"] = {"name": "nul \u0000 byte"}

    response = deliver(Client(enforce_csrf_checks=True), event)

    assert (response.status_code, response.json()) == (
        400,
        {"error": "The event cannot be stored."},
    )
    assert not WebhookEvent.objects.exists()
