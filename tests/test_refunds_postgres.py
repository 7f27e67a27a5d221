"""Refunds racing on PostgreSQL: people refunding at once, one form sent many times at
once, and Stripe's own events arriving meanwhile. Run with ``DATABASE_URL=postgres://...``.
Each actor has its own thread and connection; only the request's row lock in
``billing.refunds`` keeps the total refunded within what was paid."""

from __future__ import annotations

import pytest
from wagtail.models import ModelLogEntry

from tests.factories import make_site
from tests.test_billing_postgres import delivery, new_request, race, signed
from wagtail_client_billing import billing, stripe_api
from wagtail_client_billing.models import BillingRequest, OutgoingEmail, Refund

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("wagtail_root"),
]


@pytest.fixture
def stripe_timeout():
    return 10


@pytest.fixture
def site(db):
    return make_site("acme.test", "Acme Plumbing")


@pytest.fixture
def paid(site, connection, stripe) -> BillingRequest:
    request = new_request(site)
    stripe.complete_checkout(request.checkout_session_id)
    assert delivery(*signed(stripe.events("checkout.session.completed")[-1]))() == 200
    request.refresh_from_db()
    assert request.status == BillingRequest.Status.PAID and request.payment_intent_id
    return request


def at_stripe(request: BillingRequest) -> tuple[int, int]:
    """(refunds Stripe made, the amount its charge says was refunded)."""
    api, options = stripe_api.get_client("test").v1, {"stripe_account": request.account_id}
    refunds = api.refunds.list({"payment_intent": request.payment_intent_id}, options=options)
    intent = api.payment_intents.retrieve(request.payment_intent_id, options=options)
    charge = api.charges.retrieve(intent.latest_charge, options=options)
    return len(refunds.data), charge.amount_refunded


def test_five_people_refunding_the_whole_payment_at_once_refund_it_once(paid, stripe):
    results = race(
        [
            lambda key=key: billing.refund(paid, amount=4990, reason="", key=key)
            for key in ("alice", "bob", "carol", "dave", "erin")
        ]
    )
    made = [r for r in results if isinstance(r, Refund)]
    refused = [r for r in results if isinstance(r, billing.RefundTooLarge)]
    assert len(made) == 1 and len(refused) == 4, results
    assert at_stripe(paid) == (1, 4990)
    paid.refresh_from_db()
    assert paid.refunded_amount == 4990
    entries = ModelLogEntry.objects.filter(action=billing.ACTION_REFUND)
    assert entries.count() == 1
    assert OutgoingEmail.objects.filter(kind=OutgoingEmail.Kind.REFUNDED).count() == 1


def test_partial_refunds_at_once_never_exceed_the_payment(paid, stripe):
    # Six people give back 10.00 each of 49.90: four fit, two are refused.
    results = race(
        [
            lambda key=key: billing.refund(paid, amount=1000, reason="", key=f"p{key}")
            for key in range(6)
        ]
    )
    made = [r for r in results if isinstance(r, Refund)]
    assert len(made) == 4, results
    assert at_stripe(paid) == (4, 4000)
    paid.refresh_from_db()
    assert paid.refunded_amount == 4000


def test_one_form_sent_five_times_at_once_while_stripe_is_slow_is_one_refund(paid, stripe):
    stripe.hang_next("POST", "/v1/refunds", seconds=1.0)  # the others arrive meanwhile
    results = race(
        [lambda: billing.refund(paid, amount=2500, reason="", key="one-form") for _ in range(5)]
    )
    refunds = [r for r in results if isinstance(r, Refund)]
    # Stripe may answer the others "still working on this key": the same form's retry finishes.
    assert refunds and all(isinstance(r, Refund | stripe_api.StripeNoAnswer) for r in results), (
        results
    )
    assert billing.refund(paid, amount=2500, reason="", key="one-form").stripe_id
    assert at_stripe(paid) == (1, 2500)
    assert Refund.objects.count() == 1


def test_our_refund_and_its_webhooks_at_once_record_it_once(paid, stripe):
    made = billing.refund(paid, amount=1500, reason="", key="ours")
    events = stripe.events("refund.created") + stripe.events("charge.refunded")
    # Redelivered, each under a new id, all at once, with a second copy of our own call.
    copies = [dict(event, id=f"{event['id']}_{n}") for event in events for n in range(4)]
    results = race(
        [delivery(*signed(copy)) for copy in copies]
        + [lambda: billing.refund(paid, amount=1500, reason="", key="ours")]
    )
    assert results[:-1] == [200] * len(copies) and results[-1].pk == made.pk, results
    assert Refund.objects.count() == 1
    assert ModelLogEntry.objects.filter(action=billing.ACTION_REFUND).count() == 1
    paid.refresh_from_db()
    assert paid.refunded_amount == 1500
