"""The paid webhook's short path on PostgreSQL (``events/paid.py``): a new paid Checkout
event for a Pending request of the linked account is stored and applied in one
statement. It must write exactly what the general path writes for the same event:
each test pays one request through each path and compares what a user would see (the
request, the event, the audit entry, the agency's email and its django-q2 task).

The general path is taken by registering a project's own handler that delegates to
ours (the short path is for the app's own handler only)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core import mail
from django.db import connection
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.signing import SignedPackage
from wagtail.models import ModelLogEntry

from tests.factories import connect_ready_account, make_site, make_user, request_details
from wagtail_client_billing import billing, signals
from wagtail_client_billing.events import handlers
from wagtail_client_billing.events.handlers import HANDLERS
from wagtail_client_billing.models import BillingRequest, OutgoingEmail, WebhookEvent
from wagtail_client_billing.testing.stripe_simulator.webhooks import signature_header

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("wagtail_root"),
]

WEBHOOK = "/billing/stripe/webhook/"
SECRET = "whsec_test_suite"  # tests/settings.py
COMPLETED = "checkout.session.completed"


@pytest.fixture
def two_paid_sessions(stripe) -> list[tuple[BillingRequest, dict[str, Any]]]:
    """Two Pending requests (one-time, monthly) paid at Stripe: each with its event."""
    connect_ready_account(stripe)
    make_user("owner", superuser=True)  # the payment notification's recipient
    site = make_site("acme.test", "Acme Plumbing")
    paid = []
    for number, billing_type in enumerate(("one_time", "one_time", "monthly", "monthly")):
        details = request_details(billing_type=billing_type, email=f"client{number}@example.com")
        request = billing.create_request(site=site, details=details)
        stripe.complete_checkout(request.checkout_session_id)
        paid.append((request, stripe.events(COMPLETED)[-1]))
    mail.outbox.clear()
    return paid


def deliver(client, event: dict[str, Any]) -> tuple[int, list[str]]:
    """POST the event as Stripe signs it: the status code and the SQL statements run."""
    body = json.dumps(event).encode()
    statements: list[str] = []

    def count(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        response = client.post(
            WEBHOOK, body, content_type="application/json",
            HTTP_STRIPE_SIGNATURE=signature_header(body, SECRET),
        )  # fmt: skip
    assert response.status_code == 200, response.content
    assert response.json() == {"id": event["id"], "status": "processed"}
    return response.status_code, statements


@pytest.fixture
def general_path(monkeypatch):
    """Make the next deliveries take the general path: a project's own handler."""

    def take_general_path() -> None:
        def delegating(event, session):
            handlers.checkout_completed(event, session)

        monkeypatch.setitem(HANDLERS, COMPLETED, delegating)

    return take_general_path


def seen(request: BillingRequest, event: dict[str, Any]) -> dict[str, Any]:
    """What the admin and the client see of a paid request, its event and its entry."""
    request.refresh_from_db()
    stored = WebhookEvent.objects.get(stripe_id=event["id"])
    (entry,) = ModelLogEntry.objects.filter(
        object_id=str(request.pk), action=billing.ACTION_PAID
    ).values("label", "action", "data", "user_id", "content_type_id", "revision_id")
    emails = OutgoingEmail.objects.filter(billing_request=request, kind=OutgoingEmail.Kind.PAID)
    return {
        "request": {
            name: getattr(request, name)
            for name in (
                "status", "late_payment", "payment_state", "subscription_id",
                "subscription_status", "checkout_session_id",
            )
        } | {"paid": request.paid_at is not None},
        "event": (stored.status, stored.attempts, stored.note, stored.error,
                  stored.processed_at is not None, stored.payload == event),
        "entry": entry | {"label": entry["label"] == str(request)},
        "emails": list(emails.values_list("key", "status", "recipient", "site_id")),
        "mail": sorted(
            (message.subject, tuple(message.to)) for message in mail.outbox
            if request.email not in message.to
        ),
    }  # fmt: skip


def normalized(view: dict[str, Any], request: BillingRequest, event: dict[str, Any]) -> Any:
    """``view`` with what differs between two requests by design (ids, session, email)."""
    text = json.dumps(view, default=str, sort_keys=True)
    for own, common in (
        (f"paid-{request.pk}", "paid-PK"),
        (event["id"], "EVENT"),
        (request.checkout_session_id, "SESSION"),
        (request.email, "EMAIL"),
        (request.subscription_id or "no subscription", "SUBSCRIPTION"),
    ):
        text = text.replace(own, common)
    return json.loads(text)


def test_a_paid_event_is_applied_in_one_statement_as_the_general_path_applies_it(
    client, two_paid_sessions, general_path
):
    announced: list[tuple[int, bool]] = []

    def receiver(sender, billing_request, late, **kwargs):
        announced.append((billing_request.pk, late))

    signals.billing_request_paid.connect(receiver)
    try:
        views = []
        for number, (request, event) in enumerate(two_paid_sessions):
            if number % 2:  # the second of each billing type: the general path
                general_path()
            mail.outbox.clear()
            deliver(client, event)
            views.append(normalized(seen(request, event), request, event))
            HANDLERS[COMPLETED] = handlers.checkout_completed
    finally:
        signals.billing_request_paid.disconnect(receiver)

    one_time, one_time_general, monthly, monthly_general = views
    assert one_time == one_time_general
    assert monthly == monthly_general
    assert one_time["request"]["status"] == "paid"
    assert one_time["request"]["late_payment"] is False
    assert monthly["request"]["subscription_status"] == "active"
    assert one_time["emails"][0][1] == "sent" and one_time["mail"], "the agency is told"
    assert announced == [(request.pk, False) for request, _ in two_paid_sessions]


def test_no_email_when_the_agency_turned_payment_emails_off(client, two_paid_sessions):
    from wagtail_client_billing.models import AgencyBillingSettings

    AgencyBillingSettings.objects.update_or_create(defaults={"notify_payments": False})
    request, event = two_paid_sessions[0]
    deliver(client, event)
    request.refresh_from_db()
    assert request.status == "paid"
    assert not OutgoingEmail.objects.filter(billing_request=request).exclude(kind="request")
    assert not [message for message in mail.outbox if str(request.pk) in message.body]


def test_the_email_task_is_queued_by_the_same_statement_on_the_orm_broker(
    client, two_paid_sessions, general_path, monkeypatch
):
    """With django-q2's ORM broker (production's default), the notification's task row
    commits with the payment: the same task, whichever path queued it."""
    monkeypatch.setattr(Conf, "SYNC", False)
    assert Conf.ORM == connection.alias
    tasks = []
    for number, (_, event) in enumerate(two_paid_sessions[:2]):
        if number:
            general_path()
        OrmQ.objects.all().delete()
        _, statements = deliver(client, event)
        if not number:
            # The duplicate check; then the event, the request, its entry, the email and its
            # task in one statement, in autocommit (no BEGIN, no COMMIT).
            assert len(statements) == 2, statements
        else:
            assert len(statements) > 2
        (row,) = OrmQ.objects.all()
        task = SignedPackage.loads(row.payload)
        tasks.append((row.key, task["func"], task["args"], task["group"], task["name"][:20]))
    assert tasks[0] == tasks[1]
    site_id = two_paid_sessions[0][0].site_id
    assert tasks[0][1:3] == ("wagtail_client_billing.tasks.send_pending_emails", (site_id,))


def test_a_late_payment_still_takes_the_general_path_and_is_flagged(client, two_paid_sessions):
    request, event = two_paid_sessions[0]
    BillingRequest.objects.filter(pk=request.pk).update(status="expired")
    _, statements = deliver(client, event)
    request.refresh_from_db()
    assert (request.status, request.late_payment) == ("paid", True)
    assert WebhookEvent.objects.get(stripe_id=event["id"]).status == "processed"
    assert len(statements) > 2


@pytest.mark.parametrize("differs", ["amount", "currency", "site", "no site"])
def test_a_session_unlike_its_request_takes_the_general_path(client, two_paid_sessions, differs):
    """The audit entry's amount is formatted from the session and its task built for the
    session's site: the statement checks both against the row (else the general path)."""
    request, event = two_paid_sessions[0]
    session = event["data"]["object"]
    if differs == "amount":
        BillingRequest.objects.filter(pk=request.pk).update(amount=request.amount + 1)
    elif differs == "currency":
        BillingRequest.objects.filter(pk=request.pk).update(currency="usd")
    elif differs == "site":
        session["metadata"]["site"] = str(request.site_id + 1)
    else:
        del session["metadata"]["site"]
    _, statements = deliver(client, event)
    assert len(statements) > 2
    request.refresh_from_db()
    assert request.status == "paid"
    (entry,) = ModelLogEntry.objects.filter(object_id=str(request.pk), action=billing.ACTION_PAID)
    assert entry.label == str(request)  # the row's own amount and currency
    assert entry.data["amount"] == request.amount
