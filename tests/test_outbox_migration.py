"""The outbox migration carries today's email state over: each request's email and
reminder columns and each Notification become OutgoingEmail rows, nothing lost.

A database in the shape before the outbox (0009) gets rows of every kind, is migrated
forward, and every row is checked, as Django's own migration tests do it
(``MigrationExecutor``)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from tests.factories import make_site
from wagtail_client_billing.models import BillingRequest, OutgoingEmail

APP = "wagtail_client_billing"
BEFORE = (APP, "0009_delete_intent")


@pytest.fixture
def migrate(wagtail_root):
    """Migrate the app to ``target`` (default: today's schema); the models as they were."""

    def to(target: tuple[str, str] | None = None):
        executor = MigrationExecutor(connection)
        targets = [target] if target else executor.loader.graph.leaf_nodes()
        executor.migrate(targets)
        return executor.loader.project_state(targets).apps

    yield to
    to()  # back to today's schema for the next test


def test_every_email_and_notification_is_carried_into_the_outbox(migrate):
    site = make_site("acme.test", "Acme Plumbing")
    old = migrate(BEFORE)
    Request = old.get_model(APP, "BillingRequest")
    Notification = old.get_model(APP, "Notification")
    now = timezone.now().replace(microsecond=0)
    later, earlier = now + timedelta(minutes=5), now - timedelta(hours=2)

    def request(name: str, **email_state):
        return Request.objects.create(
            site_id=site.pk, token=f"token-{name}", email=f"{name}@example.com",
            currency="eur", amount=4990, description=name, success_url="https://acme.test/ok/",
            cancel_url="https://acme.test/no/", expires_at=now + timedelta(hours=20),
            **email_state,
        )  # fmt: skip

    sent = request(
        "sent", email_status="sent", email_sent_at=earlier, email_attempts=1,
        email_message_id="<m1@acme.test>", reminder_status="delivered", reminder_sent_at=now,
        reminder_attempts=1, reminder_message_id="esp-2",
    )  # fmt: skip
    retrying = request(
        "retrying", email_status="queued", email_due_at=later, email_attempts=2,
        email_error="Could not connect to 127.0.0.1:25: connection refused.",
    )  # fmt: skip
    ended = request("ended", email_error="Not sent: the request had ended.", email_attempts=1)
    untouched = request("untouched")
    sending = request(
        "sending", email_status="sending", email_due_at=later, email_attempts=1,
        reminder_status="failed", reminder_error="550 no such user", reminder_attempts=1,
    )  # fmt: skip
    Request.objects.filter(pk=sent.pk).update(created_at=earlier)

    def notification(key: str, kind: str, **state):
        row = Notification.objects.create(key=key, kind=kind, billing_request_id=sent.pk, **state)
        Notification.objects.filter(pk=row.pk).update(created_at=earlier)
        return key

    notification("paid-1", "paid", claimed_at=earlier, sent_at=earlier, attempts=1)
    notification("nobody", "paid", claimed_at=earlier, attempts=1, error="No address to send to")
    notification("retry", "payment_failed", attempts=2, error="421 busy", retry_at=later)
    notification("lost", "paid", claimed_at=earlier, attempts=1)
    notification("never", "new_link_asked")

    migrate()  # forward, through the outbox migration

    def row(key: str) -> dict:
        return OutgoingEmail.objects.filter(key=key).values(
            "kind", "site_id", "billing_request_id", "recipient", "status", "attempts",
            "due_at", "message_id", "error", "created_at", "sent_at",
        ).get()  # fmt: skip

    blank = {"site_id": site.pk, "recipient": "", "message_id": "", "error": "", "due_at": None}
    expected = {
        f"request-{sent.pk}": {
            **blank, "kind": "request", "billing_request_id": sent.pk, "status": "sent",
            "recipient": "sent@example.com", "attempts": 1, "message_id": "<m1@acme.test>",
            "created_at": earlier, "sent_at": earlier,
        },
        f"reminder-{sent.pk}": {
            **blank, "kind": "reminder", "billing_request_id": sent.pk, "status": "delivered",
            "recipient": "sent@example.com", "attempts": 1, "message_id": "esp-2",
            "created_at": earlier, "sent_at": now,
        },
        f"request-{retrying.pk}": {
            **blank, "kind": "request", "billing_request_id": retrying.pk, "status": "queued",
            "recipient": "retrying@example.com", "attempts": 2, "due_at": later,
            "error": "Could not connect to 127.0.0.1:25: connection refused.",
            "created_at": retrying.created_at, "sent_at": None,
        },
        f"request-{ended.pk}": {
            **blank, "kind": "request", "billing_request_id": ended.pk, "status": "",
            "recipient": "ended@example.com", "attempts": 1,
            "error": "Not sent: the request had ended.", "created_at": ended.created_at,
            "sent_at": None,
        },
        f"request-{sending.pk}": {
            **blank, "kind": "request", "billing_request_id": sending.pk, "status": "sending",
            "recipient": "sending@example.com", "attempts": 1, "due_at": later,
            "created_at": sending.created_at, "sent_at": None,
        },
        f"reminder-{sending.pk}": {
            **blank, "kind": "reminder", "billing_request_id": sending.pk, "status": "failed",
            "recipient": "sending@example.com", "attempts": 1, "error": "550 no such user",
            "created_at": sending.created_at, "sent_at": None,
        },
        "paid-1": {
            **blank, "kind": "paid", "billing_request_id": sent.pk, "status": "sent",
            "attempts": 1, "created_at": earlier, "sent_at": earlier,
        },
        "nobody": {
            **blank, "kind": "paid", "billing_request_id": sent.pk, "status": "failed",
            "attempts": 1, "error": "No address to send to", "created_at": earlier,
            "sent_at": None,
        },
        "retry": {
            **blank, "kind": "payment_failed", "billing_request_id": sent.pk, "status": "queued",
            "attempts": 2, "error": "421 busy", "due_at": later, "created_at": earlier,
            "sent_at": None,
        },
        "lost": {
            **blank, "kind": "paid", "billing_request_id": sent.pk, "status": "sending",
            "attempts": 1, "due_at": earlier + timedelta(minutes=15), "created_at": earlier,
            "sent_at": None,
        },
        "never": {
            **blank, "kind": "new_link_asked", "billing_request_id": sent.pk, "status": "queued",
            "attempts": 0, "created_at": earlier, "sent_at": None,
        },
    }  # fmt: skip
    assert set(OutgoingEmail.objects.values_list("key", flat=True)) == set(expected)
    for key, values in expected.items():
        assert row(key) == values, key
    # Nothing for a request whose email never moved: it reads as "Not sent".
    assert not OutgoingEmail.objects.filter(billing_request_id=untouched.pk).exists()
    assert BillingRequest.objects.get(pk=untouched.pk).email_status == ""
    # The request pages read the carried state through the request.
    carried = BillingRequest.objects.get(pk=sent.pk)
    assert (carried.email_status, carried.email_sent_at) == ("sent", earlier)
    assert (carried.reminder_status, carried.reminder_message_id) == ("delivered", "esp-2")
    assert BillingRequest.objects.get(pk=retrying.pk).email_due_at == later
