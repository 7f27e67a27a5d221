"""One rule for "paid": ``stripe_api.is_paid``, asked by every path that can make a
request Paid (the webhook handlers, the reconciliation, delete), with each payment
status Stripe reports going through each path. Changing the rule makes these fail."""

from __future__ import annotations

import json

import pytest

from tests.factories import connect_ready_account, make_site, request_details
from wagtail_client_billing import billing, stripe_api
from wagtail_client_billing.models import BillingRequest
from wagtail_client_billing.testing.stripe_simulator.webhooks import signature_header

pytestmark = pytest.mark.django_db

Status = BillingRequest.Status
WEBHOOK = "/billing/stripe/webhook/"
SECRET = "whsec_test_suite"  # tests/settings.py

# Each payment status of a complete session, and whether it is paid.
PAYMENT_STATUSES = [("paid", True), ("no_payment_required", True), ("unpaid", False)]


@pytest.fixture
def request_(billing_stripe_settings, settings):
    settings.WAGTAIL_CLIENT_BILLING = {
        **settings.WAGTAIL_CLIENT_BILLING,
        "STRIPE_MAX_NETWORK_RETRIES": 0,
        "STRIPE_TIMEOUT": 2,
    }
    connect_ready_account(billing_stripe_settings)
    return billing.create_request(
        site=make_site("acme.test", "Acme Plumbing"),
        details=request_details(),
    )


def complete_at_stripe(stripe, request: BillingRequest, payment_status: str) -> dict:
    """The client finishes Checkout and Stripe reports ``payment_status``; returns the
    ``checkout.session.completed`` event (not delivered yet)."""
    session_id = request.checkout_session_id
    stripe.complete_checkout(session_id, delayed=payment_status == "unpaid")
    event = stripe.events("checkout.session.completed")[-1]
    if payment_status == "no_payment_required":
        # Nothing to charge (a 100 % coupon): what Stripe then reports, API and event.
        with stripe.engine.lock:
            stripe.engine.store.find(session_id, "checkout.session").data["payment_status"] = (
                payment_status
            )
        event["data"]["object"]["payment_status"] = payment_status
    assert event["data"]["object"]["payment_status"] == payment_status
    return event


def deliver(client, event: dict) -> int:
    body = json.dumps(event).encode()
    return client.post(
        WEBHOOK, body, content_type="application/json",
        HTTP_STRIPE_SIGNATURE=signature_header(body, SECRET),
    ).status_code  # fmt: skip


@pytest.mark.parametrize(
    ("status", "payment_status", "event_type", "paid"),
    [
        ("complete", "paid", "", True),
        ("complete", "no_payment_required", "", True),
        ("complete", "unpaid", "", False),
        ("open", "unpaid", "", False),
        ("expired", "unpaid", "", False),
        ("open", "paid", "", False),  # not complete: not paid, whatever else it says
        ("expired", "no_payment_required", "", False),
        # A completed event is about a complete session, with or without the field.
        ("", "paid", "checkout.session.completed", True),
        ("", "no_payment_required", "checkout.session.completed", True),
        ("", "unpaid", "checkout.session.completed", False),
        # A delayed payment that settled is paid.
        ("complete", "paid", "checkout.session.async_payment_succeeded", True),
        ("", "", "checkout.session.async_payment_succeeded", True),
        ("complete", "unpaid", "checkout.session.async_payment_failed", False),
        # What a signed body may hold that Stripe never sends.
        ("complete", ["paid"], "checkout.session.completed", False),
        ("complete", None, "", False),
    ],
)
def test_the_rule(status, payment_status, event_type, paid):
    payload = {"id": "cs_1", "object": "checkout.session", "status": status}
    payload["payment_status"] = payment_status
    event = {"id": "evt_1", "object": "event", "type": event_type, "data": {"object": payload}}
    session = stripe_api.construct_event(event).data.object  # as a webhook handler gets it
    assert isinstance(session, stripe_api.CheckoutSession)
    assert stripe_api.is_paid(session, event_type=event_type) is paid
    if not event_type:  # as the API returns it (reconciliation, delete)
        session = stripe_api.CheckoutSession.construct_from(payload, None)
        assert stripe_api.is_paid(session) is paid
    if not status:  # a field a signed body may lack altogether
        del payload["status"]
        session = stripe_api.construct_event(event).data.object
        assert stripe_api.is_paid(session, event_type=event_type) is paid


@pytest.mark.parametrize(("payment_status", "paid"), PAYMENT_STATUSES)
def test_webhook(request_, billing_stripe_settings, client, payment_status, paid):
    event = complete_at_stripe(billing_stripe_settings, request_, payment_status)
    assert deliver(client, event) == 200
    request_.refresh_from_db()
    if paid:
        assert request_.status == Status.PAID and request_.paid_at is not None
    else:  # a delayed payment on its way
        assert request_.status == Status.PENDING
        assert request_.payment_state == BillingRequest.PaymentState.PROCESSING


def test_webhook_async_payment_succeeded(request_, billing_stripe_settings, client):
    stripe = billing_stripe_settings
    complete_at_stripe(stripe, request_, "unpaid")
    stripe.settle_async(request_.checkout_session_id)
    event = stripe.events("checkout.session.async_payment_succeeded")[-1]
    assert deliver(client, event) == 200
    request_.refresh_from_db()
    assert request_.status == Status.PAID


@pytest.mark.parametrize(("payment_status", "paid"), PAYMENT_STATUSES)
def test_reconciliation(request_, billing_stripe_settings, payment_status, paid):
    complete_at_stripe(billing_stripe_settings, request_, payment_status)  # webhook lost
    billing.reconcile_one(request_)
    request_.refresh_from_db()
    assert request_.status == (Status.PAID if paid else Status.PENDING)


@pytest.mark.parametrize(("payment_status", "paid"), PAYMENT_STATUSES)
def test_delete(request_, billing_stripe_settings, payment_status, paid):
    complete_at_stripe(billing_stripe_settings, request_, payment_status)  # webhook late
    result = billing.delete_request(request_)
    request_.refresh_from_db()
    assert result.status == request_.status
    # Paid at Stripe: the delete reports the payment instead. Unpaid (a delayed payment
    # on its way): deleted, and a payment that settles later still shows, flagged late.
    assert request_.status == (Status.PAID if paid else Status.DELETED)
