"""Subscriptions on the simulator's moved clock: renewals, failed renewals, the card fixed,
cancellation at the period's end; through the real stripe SDK."""

from __future__ import annotations

import pytest
import requests
import stripe

from wagtail_client_billing.testing.stripe_simulator import RemoteSimulator

from .test_simulator_checkout import subscription_params

DAY = 86400


@pytest.fixture
def client(stripe_client):
    """A client on a connected account, as the app calls (direct charges)."""
    account = stripe_client().v1.accounts.create(params={"type": "standard", "country": "FR"})
    return stripe_client(stripe_account=account.id)


def subscribe(client, stripe_simulator, interval="month"):
    """A paid subscription (EUR 125.00 per ``interval``), as the SDK returns it."""
    session = client.v1.checkout.sessions.create(params=subscription_params(interval))
    stripe_simulator.complete_checkout(session.id)
    return client.v1.subscriptions.retrieve(stripe_simulator.get_object(
        session.id, "checkout.session")["subscription"])  # fmt: skip


def period(subscription):
    item = subscription["items"].data[0]
    return item.current_period_start, item.current_period_end


def types(stripe_simulator, since):
    """Event types after the first ``since`` events."""
    return [event["type"] for event in stripe_simulator.events()[since:]]


def test_a_subscription_renews_when_the_clock_passes_its_period_end(client, stripe_simulator):
    sub = subscribe(client, stripe_simulator)
    start, end = period(sub)
    first_invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    seen = len(stripe_simulator.events())

    stripe_simulator.advance_clock(end - start - 60)  # a minute before the end: nothing
    assert types(stripe_simulator, seen) == []
    stripe_simulator.advance_clock(120)

    renewed = client.v1.subscriptions.retrieve(sub.id)
    assert period(renewed) == (end, end + 30 * DAY)
    assert renewed.status == "active" and renewed.latest_invoice != sub.latest_invoice
    invoice = client.v1.invoices.retrieve(renewed.latest_invoice)
    assert (invoice.billing_reason, invoice.status, invoice.amount_paid) == (
        "subscription_cycle", "paid", 12500
    )  # fmt: skip
    assert (invoice.period_start, invoice.period_end) == (start, end)
    assert (invoice.lines.data[0].period.start, invoice.lines.data[0].period.end) == (
        end, end + 30 * DAY
    )  # fmt: skip
    assert invoice.number == f"{first_invoice.number[:8]}-0002"
    assert types(stripe_simulator, seen) == [
        "customer.subscription.updated",
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
    ]
    [updated] = stripe_simulator.events("customer.subscription.updated")
    previous = updated["data"]["previous_attributes"]
    assert previous["latest_invoice"] == sub.latest_invoice
    assert previous["items"]["data"][0]["current_period_end"] == end
    assert updated["data"]["object"]["items"]["data"][0]["current_period_start"] == end
    listed = client.v1.invoices.list(params={"subscription": sub.id}).data
    assert [i.id for i in listed] == [invoice.id, first_invoice.id]
    [payment] = client.v1.invoice_payments.list(params={"invoice": invoice.id}).data
    assert client.v1.refunds.create(params={"payment_intent": payment.payment.payment_intent})


def test_set_clock_catches_up_every_period_and_yearly_waits(client, stripe_simulator):
    monthly = subscribe(client, stripe_simulator)
    yearly = subscribe(client, stripe_simulator, "year")
    start, _end = period(monthly)

    stripe_simulator.set_clock(start + 95 * DAY)

    assert period(client.v1.subscriptions.retrieve(monthly.id))[0] == start + 90 * DAY
    assert len(client.v1.invoices.list(params={"subscription": monthly.id}).data) == 4
    assert period(client.v1.subscriptions.retrieve(yearly.id)) == period(yearly)
    assert len(client.v1.invoices.list(params={"subscription": yearly.id}).data) == 1


def test_a_failed_renewal_then_the_card_is_fixed(client, stripe_simulator):
    sub = subscribe(client, stripe_simulator)
    start, end = period(sub)
    stripe_simulator.fail_renewals(sub.customer)
    seen = len(stripe_simulator.events())

    stripe_simulator.advance_clock(end - start + 1)

    past_due = client.v1.subscriptions.retrieve(sub.id)
    assert past_due.status == "past_due"
    invoice = client.v1.invoices.retrieve(past_due.latest_invoice)
    assert (invoice.status, invoice.amount_remaining, invoice.attempt_count) == ("open", 12500, 1)
    assert invoice.next_payment_attempt > end
    assert types(stripe_simulator, seen) == [
        "customer.subscription.updated",
        "invoice.created",
        "invoice.finalized",
        "invoice.payment_failed",
        "customer.subscription.updated",
    ]
    status_change = stripe_simulator.events("customer.subscription.updated")[-1]["data"]
    assert status_change["previous_attributes"] == {"status": "active"}
    assert status_change["object"]["status"] == "past_due"
    [payment] = client.v1.invoice_payments.list(params={"invoice": invoice.id}).data
    intent = client.v1.payment_intents.retrieve(payment.payment.payment_intent)
    assert intent.status == "requires_payment_method"
    assert client.v1.charges.retrieve(intent.latest_charge).status == "failed"
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.refunds.create(params={"payment_intent": intent.id})
    assert excinfo.value.code == "charge_not_refundable"

    seen = len(stripe_simulator.events())
    [paid] = stripe_simulator.update_payment_method(sub.customer)

    assert paid["id"] == invoice.id and paid["status"] == "paid"
    assert types(stripe_simulator, seen) == ["invoice.paid", "customer.subscription.updated"]
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"
    assert client.v1.payment_intents.retrieve(intent.id).status == "succeeded"
    stripe_simulator.advance_clock(30 * DAY)  # the next renewal pays
    renewed = client.v1.subscriptions.retrieve(sub.id)
    assert renewed.status == "active"
    assert client.v1.invoices.retrieve(renewed.latest_invoice).status == "paid"


def test_fail_renewals_for_one_subscription_and_over_http(client, stripe_simulator):
    failing = subscribe(client, stripe_simulator)
    fine = subscribe(client, stripe_simulator)
    remote = RemoteSimulator(stripe_simulator.url)
    remote.fail_renewals(failing.id)
    start, end = period(failing)

    stripe_simulator.advance_clock(end - start + 1)

    assert client.v1.subscriptions.retrieve(failing.id).status == "past_due"
    assert client.v1.subscriptions.retrieve(fine.id).status == "active"
    remote.fail_renewals(failing.id, fail=False)  # pays again, still owes the open invoice
    assert client.v1.invoices.list(params={"subscription": failing.id, "status": "open"}).data
    assert [i["status"] for i in remote.update_payment_method(failing.customer)] == ["paid"]
    with pytest.raises(RuntimeError, match="No such customer"):
        remote.update_payment_method("cus_nope")


def test_cancel_at_period_end_takes_effect_when_the_period_ends(client, stripe_simulator):
    sub = subscribe(client, stripe_simulator)
    start, end = period(sub)

    updated = client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    assert (updated.status, updated.cancel_at, updated.cancel_at_period_end) == (
        "active", end, True
    )  # fmt: skip
    assert updated.canceled_at is not None
    assert updated.cancellation_details.reason == "cancellation_requested"
    [event] = stripe_simulator.events("customer.subscription.updated")
    assert event["data"]["previous_attributes"]["cancel_at_period_end"] is False
    seen = len(stripe_simulator.events())

    stripe_simulator.advance_clock(end - start + 1)

    canceled = client.v1.subscriptions.retrieve(sub.id)
    assert (canceled.status, canceled.ended_at) == ("canceled", end)
    assert types(stripe_simulator, seen) == ["customer.subscription.deleted"]
    assert len(client.v1.invoices.list(params={"subscription": sub.id}).data) == 1
    stripe_simulator.advance_clock(60 * DAY)
    assert types(stripe_simulator, seen) == ["customer.subscription.deleted"]
    for call in (
        lambda: client.v1.subscriptions.cancel(sub.id),
        lambda: client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": False}),
    ):
        with pytest.raises(stripe.InvalidRequestError) as excinfo:
            call()
        assert excinfo.value.user_message == (
            "A canceled subscription can only update its cancellation_details and metadata."
        )


def test_undoing_cancel_at_period_end_keeps_it_renewing(client, stripe_simulator):
    sub = subscribe(client, stripe_simulator)
    start, end = period(sub)
    client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    undone = client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": False})
    assert (undone.cancel_at, undone.canceled_at) == (None, None)

    stripe_simulator.advance_clock(end - start + 1)

    assert client.v1.subscriptions.retrieve(sub.id).status == "active"
    assert len(client.v1.invoices.list(params={"subscription": sub.id}).data) == 2


# The billing portal ----------------------------------------------------------------------

RETURN_URL = "https://client.example/billing/"


def portal(client, customer, **params):
    """A billing portal session for ``customer``, back to RETURN_URL."""
    return client.v1.billing_portal.sessions.create(
        params={"customer": customer, "return_url": RETURN_URL, **params}
    )


def test_a_portal_session_opens_a_hosted_portal(client, stripe_simulator):
    sub = subscribe(client, stripe_simulator)

    session = portal(client, sub.customer, locale="fr")

    assert (session.object, session.customer, session.return_url) == (
        "billing_portal.session", sub.customer, RETURN_URL
    )  # fmt: skip
    assert session.id.startswith("bps_") and session.configuration.startswith("bpc_")
    assert session.locale == "fr" and session.livemode is False
    assert portal(client, sub.customer).configuration == session.configuration
    page = requests.get(session.url, timeout=5)
    assert page.status_code == 200 and "<html lang='fr'>" in page.text
    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    for text in ("125.00 EUR / month", "active", "Renews", "Visa •••• 4242", invoice.number,
                 f"<a href='{RETURN_URL}'>Return to client.example</a>",
                 ">Update payment method</button>", ">Cancel subscription</button>"):  # fmt: skip
        assert text in page.text
    assert requests.get(session.url + "x", timeout=5).status_code == 404


def test_the_client_fixes_the_card_in_the_portal(client, stripe_simulator):
    sub = subscribe(client, stripe_simulator)
    start, end = period(sub)
    stripe_simulator.fail_renewals(sub.customer)
    stripe_simulator.advance_clock(end - start + 1)
    url = portal(client, sub.customer).url
    http = requests.Session()
    page = http.get(url, timeout=5).text
    assert "Your last payment failed" in page and "Visa •••• 4242 (declined)" in page
    seen = len(stripe_simulator.events())

    answer = http.post(url, data={"action": "update_payment_method"}, allow_redirects=False,
                       timeout=5)  # fmt: skip

    path = url.removeprefix(stripe_simulator.url)
    assert (answer.status_code, answer.headers["Location"]) == (303, f"{path}?done=card")
    assert "Your payment method was updated." in http.get(url + "?done=card", timeout=5).text
    assert types(stripe_simulator, seen) == ["invoice.paid", "customer.subscription.updated"]
    renewed = client.v1.subscriptions.retrieve(sub.id)
    assert renewed.status == "active"
    assert client.v1.invoices.retrieve(renewed.latest_invoice).status == "paid"
    assert "(declined)" not in http.get(url, timeout=5).text


def test_the_client_cancels_at_period_end_in_the_portal(client, stripe_simulator):
    sub = subscribe(client, stripe_simulator)
    start, end = period(sub)
    url = portal(client, sub.customer).url
    seen = len(stripe_simulator.events())

    answer = requests.post(url, data={"action": "cancel", "subscription": sub.id}, timeout=5)

    assert "will be canceled at the end of the period" in answer.text
    assert "Cancels" in answer.text and ">Cancel subscription</button>" not in answer.text
    assert types(stripe_simulator, seen) == ["customer.subscription.updated"]
    updated = client.v1.subscriptions.retrieve(sub.id)
    assert (updated.cancel_at_period_end, updated.cancel_at) == (True, end)
    stripe_simulator.advance_clock(end - start + 1)
    assert client.v1.subscriptions.retrieve(sub.id).status == "canceled"
    assert "Canceled" in requests.get(url, timeout=5).text


def test_bad_portal_session_requests(client, stripe_client, stripe_simulator):
    sub = subscribe(client, stripe_simulator)
    sessions = client.v1.billing_portal.sessions

    def refused(params):
        with pytest.raises(stripe.InvalidRequestError) as excinfo:
            sessions.create(params=params)
        return excinfo.value

    assert refused({"return_url": RETURN_URL}).code == "parameter_missing"
    error = refused({"customer": "cus_nope"})
    assert (error.code, error.param) == ("resource_missing", "customer")
    flow = {"type": "payment_method_update"}
    assert refused({"customer": sub.customer, "flow_data": flow}).param == "flow_data"
    assert refused({"customer": sub.customer, "return_url": "nope"}).code == "url_invalid"
    assert refused({"customer": sub.customer, "bogus": "1"}).code == "parameter_unknown"
    platform = stripe_client().v1.billing_portal.sessions  # the customer is the account's
    with pytest.raises(stripe.InvalidRequestError):
        platform.create(params={"customer": sub.customer})
