"""Charges, refunds and disputes through the real stripe SDK against the simulator."""

from __future__ import annotations

import pytest
import requests
import stripe

from wagtail_client_billing.testing.stripe_simulator import RemoteSimulator, StripeError

from .test_simulator_checkout import payment_params


@pytest.fixture
def account(stripe_client):
    """A connected account: the agency's, on which sessions are direct charges."""
    return stripe_client().v1.accounts.create(params={"type": "standard", "country": "FR"}).id


@pytest.fixture
def client(stripe_client, account):
    """A client that sends ``Stripe-Account`` on every call, as the app does."""
    return stripe_client(stripe_account=account)


def paid_intent(client, stripe_simulator, **changes):
    """The payment intent of a paid EUR 125.00 session on the connected account."""
    session = client.v1.checkout.sessions.create(params=payment_params(**changes))
    return stripe_simulator.complete_checkout(session.id)["payment_intent"]


def refund_error(call):
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        call()
    return excinfo.value


def test_a_paid_session_has_a_succeeded_charge_with_a_receipt(client, stripe_simulator, account):
    intent = client.v1.payment_intents.retrieve(paid_intent(client, stripe_simulator))
    charge = client.v1.charges.retrieve(intent.latest_charge)

    assert (charge.amount, charge.amount_captured, charge.currency) == (12500, 12500, "eur")
    assert (charge.amount_refunded, charge.refunded, charge.disputed) == (0, False, False)
    assert (charge.status, charge.paid, charge.payment_intent) == ("succeeded", True, intent.id)
    assert charge.billing_details.email == "client@example.com"
    receipt = requests.get(charge.receipt_url, timeout=5)
    assert receipt.status_code == 200 and "125.00 EUR" in receipt.text
    # Direct charges: the platform does not see the account's charge.
    with pytest.raises(stripe.InvalidRequestError):
        stripe.StripeClient(
            "sk_test_simulator", base_addresses=stripe_simulator.base_addresses
        ).v1.charges.retrieve(charge.id)


def test_partial_refund_then_the_rest(client, stripe_simulator, account):
    intent = paid_intent(client, stripe_simulator)

    first = client.v1.refunds.create(
        params={
            "payment_intent": intent,
            "amount": 5000,
            "reason": "requested_by_customer",
            "metadata": {"billing_request": "42"},
        }
    )
    assert (first.object, first.status, first.amount, first.currency) == (
        "refund", "succeeded", 5000, "eur"
    )  # fmt: skip
    assert (first.payment_intent, first.reason) == (intent, "requested_by_customer")
    assert first.metadata.to_dict() == {"billing_request": "42"}
    charge = client.v1.charges.retrieve(first.charge)
    assert (charge.amount_refunded, charge.refunded) == (5000, False)

    rest = client.v1.refunds.create(params={"charge": charge.id})  # what remains
    assert rest.amount == 7500 and rest.payment_intent == intent
    charge = client.v1.charges.retrieve(charge.id)
    assert (charge.amount_refunded, charge.refunded) == (12500, True)
    assert [refund.id for refund in charge.refunds.data] == [rest.id, first.id]

    listed = client.v1.refunds.list(params={"payment_intent": intent})
    assert [refund.id for refund in listed.data] == [rest.id, first.id]
    assert [r.id for r in client.v1.refunds.list(params={"charge": charge.id}).data] == [
        rest.id,
        first.id,
    ]
    assert client.v1.refunds.retrieve(first.id).amount == 5000

    events = [e for e in stripe_simulator.events() if e["type"].startswith(("refund", "charge"))]
    assert [e["type"] for e in events] == ["refund.created", "charge.refunded"] * 2
    assert {e["account"] for e in events} == {account}
    last = events[-1]["data"]
    assert (last["object"]["amount_refunded"], last["object"]["refunded"]) == (12500, True)
    assert last["previous_attributes"]["amount_refunded"] == 5000
    assert events[0]["data"]["object"]["metadata"] == {"billing_request": "42"}


def test_refunding_more_than_remains_is_refused_with_stripes_messages(client, stripe_simulator):
    intent = paid_intent(client, stripe_simulator)

    error = refund_error(
        lambda: client.v1.refunds.create(params={"payment_intent": intent, "amount": 20000})
    )
    assert (error.code, error.param) == ("amount_too_large", "amount")
    assert error.user_message == "Refund amount (€200.00) is greater than charge amount (€125.00)"

    client.v1.refunds.create(params={"payment_intent": intent, "amount": 5000})
    error = refund_error(
        lambda: client.v1.refunds.create(params={"payment_intent": intent, "amount": 7501})
    )
    assert error.user_message == (
        "Refund amount (€75.01) is greater than unrefunded amount on charge (€75.00)"
    )
    client.v1.refunds.create(params={"payment_intent": intent, "amount": 7500})

    error = refund_error(lambda: client.v1.refunds.create(params={"payment_intent": intent}))
    charge = client.v1.payment_intents.retrieve(intent).latest_charge
    assert error.code == "charge_already_refunded"
    assert error.user_message == f"Charge {charge} has already been refunded."
    assert len(client.v1.refunds.list().data) == 2


def test_bad_refund_requests(client, stripe_client, stripe_simulator):
    intent = paid_intent(client, stripe_simulator)
    refunds = client.v1.refunds

    error = refund_error(lambda: refunds.create(params={"payment_intent": intent, "reason": "x"}))
    assert error.param == "reason"
    assert "duplicate, fraudulent, or requested_by_customer" in error.user_message
    error = refund_error(lambda: refunds.create(params={"payment_intent": "pi_1Nope"}))
    assert (error.code, error.param, error.http_status) == (
        "resource_missing", "payment_intent", 400
    )  # fmt: skip
    assert error.user_message == "No such payment_intent: 'pi_1Nope'"
    error = refund_error(lambda: refunds.create(params={"charge": "ch_1Nope"}))
    assert (error.code, error.param) == ("resource_missing", "charge")
    error = refund_error(lambda: refunds.create(params={"amount": 100}))
    assert error.code == "parameter_missing"
    error = refund_error(lambda: refunds.create(params={"payment_intent": intent, "amount": 0}))
    assert error.param == "amount"
    error = refund_error(lambda: refunds.create(params={"payment_intent": intent, "bogus": 1}))
    assert error.code == "parameter_unknown"
    # Another account's (or the platform's) payment is not there for this account.
    other = stripe_client(stripe_account=stripe_client().v1.accounts.create().id)
    error = refund_error(lambda: other.v1.refunds.create(params={"payment_intent": intent}))
    assert error.code == "resource_missing"
    # A delayed payment still processing has no successful charge yet.
    session = client.v1.checkout.sessions.create(params=payment_params())
    processing = stripe_simulator.complete_checkout(session.id, delayed=True)["payment_intent"]
    error = refund_error(lambda: refunds.create(params={"payment_intent": processing}))
    assert error.code == "charge_not_refundable"
    assert refunds.list().data == []
    stripe_simulator.settle_async(session.id)
    assert refunds.create(params={"payment_intent": processing}).status == "succeeded"


def test_the_idempotency_key_replays_the_same_refund(client, stripe_simulator):
    intent = paid_intent(client, stripe_simulator)
    options = {"idempotency_key": "refund-42-1"}
    params = {"payment_intent": intent, "amount": 2500}

    first = client.v1.refunds.create(params=params, options=options)
    again = client.v1.refunds.create(params=params, options=options)

    assert again.id == first.id
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert len(client.v1.refunds.list().data) == 1
    assert len(stripe_simulator.events("refund.created")) == 1
    assert client.v1.charges.retrieve(first.charge).amount_refunded == 2500
    with pytest.raises(stripe.IdempotencyError):
        client.v1.refunds.create(params={**params, "amount": 2600}, options=options)


def test_a_pending_refund_fails_then_succeeds(client, stripe_simulator):
    intent = paid_intent(client, stripe_simulator)
    stripe_simulator.delay_next_refunds(2)

    pending = client.v1.refunds.create(params={"payment_intent": intent})
    assert pending.status == "pending"
    charge = client.v1.charges.retrieve(pending.charge)
    assert (charge.amount_refunded, charge.refunded) == (12500, True)  # pending counts

    failed = stripe_simulator.settle_refund(pending.id, succeed=False)
    assert failed["status"] == "failed"
    [updated] = stripe_simulator.events("refund.updated")
    assert updated["data"]["object"]["status"] == "failed"
    assert updated["data"]["previous_attributes"] == {"status": "pending"}
    charge = client.v1.charges.retrieve(pending.charge)
    assert (charge.amount_refunded, charge.refunded) == (0, False)  # refundable again

    second = client.v1.refunds.create(params={"payment_intent": intent, "amount": 100})
    assert second.status == "pending"
    stripe_simulator.settle_refund(second.id)
    assert client.v1.refunds.retrieve(second.id).status == "succeeded"
    assert client.v1.refunds.create(params={"payment_intent": intent}).status == "succeeded"
    with pytest.raises(StripeError, match="not pending"):
        stripe_simulator.settle_refund(second.id)


def test_a_refund_made_in_the_dashboard(client, stripe_simulator, webhook_receiver, account):
    secret = "whsec_refunds"
    stripe_simulator.add_webhook(webhook_receiver.webhook_url, secret)
    intent = paid_intent(client, stripe_simulator)

    refund = stripe_simulator.refund(intent, amount=2000)

    assert (refund["amount"], refund["metadata"], refund["status"]) == (2000, {}, "succeeded")
    [request] = webhook_receiver.wait_for("charge.refunded")
    event = stripe.Webhook.construct_event(request.body, request.signature, secret)
    assert event.account == account
    assert event.data.object.amount_refunded == 2000
    assert event.request.idempotency_key is None
    [created] = webhook_receiver.wait_for("refund.created")
    assert created.json()["data"]["object"]["id"] == refund["id"]
    with pytest.raises(StripeError, match="greater than unrefunded amount"):
        stripe_simulator.refund(intent, amount=20000)
    remote = RemoteSimulator(stripe_simulator.url)
    assert remote.refund(intent)["amount"] == 10500  # the rest
    with pytest.raises(RuntimeError, match="has already been refunded"):
        remote.refund(intent)


def test_a_dispute_opens_and_closes(client, stripe_simulator):
    intent = paid_intent(client, stripe_simulator)

    dispute = stripe_simulator.create_dispute(intent)

    assert (dispute["status"], dispute["reason"], dispute["amount"]) == (
        "needs_response", "fraudulent", 12500
    )  # fmt: skip
    assert dispute["payment_intent"] == intent
    [created] = stripe_simulator.events("charge.dispute.created")
    assert created["data"]["object"]["id"] == dispute["id"]
    charge = client.v1.charges.retrieve(dispute["charge"])
    assert charge.disputed is True
    error = refund_error(lambda: client.v1.refunds.create(params={"payment_intent": intent}))
    assert error.code == "charge_disputed"
    with pytest.raises(StripeError, match="already has an open dispute"):
        stripe_simulator.create_dispute(intent)

    closed = stripe_simulator.close_dispute(dispute["id"], won=False)
    assert closed["status"] == "lost"
    [event] = stripe_simulator.events("charge.dispute.closed")
    assert event["data"]["object"]["status"] == "lost"
    assert event["data"]["previous_attributes"] == {"status": "needs_response"}
    assert client.v1.disputes.retrieve(dispute["id"]).status == "lost"
    with pytest.raises(StripeError, match="already closed"):
        stripe_simulator.close_dispute(dispute["id"], won=True)

    won = stripe_simulator.create_dispute(paid_intent(client, stripe_simulator), "duplicate")
    assert stripe_simulator.close_dispute(won["id"], won=True)["status"] == "won"
    with pytest.raises(StripeError, match="Invalid dispute reason"):
        stripe_simulator.create_dispute(intent, reason="bored")
