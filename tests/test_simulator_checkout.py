"""Checkout Sessions through the real stripe SDK against the simulator (no database)."""

from __future__ import annotations

import time
import urllib.parse

import pytest
import requests
import stripe

from wagtail_client_billing.testing.stripe_simulator import StripeError

SUCCESS = "https://client.example/paid?session={CHECKOUT_SESSION_ID}"
CANCEL = "https://client.example/cancelled"


def payment_params(**changes):
    """A valid one-time payment session, with ``changes`` merged in."""
    params = {
        "mode": "payment",
        "success_url": SUCCESS,
        "cancel_url": CANCEL,
        "customer_email": "client@example.com",
        "client_reference_id": "request-42",
        "metadata": {"billing_request": "42"},
        "line_items": [
            {
                "price_data": {
                    "currency": "eur",
                    "unit_amount": 12500,
                    "product_data": {"name": "Website maintenance"},
                },
                "quantity": 1,
            }
        ],
    }
    params.update(changes)
    return params


def subscription_params(interval="month", **changes):
    """A valid monthly (or yearly) subscription session."""
    params = payment_params(mode="subscription", **changes)
    params["line_items"][0]["price_data"]["recurring"] = {"interval": interval}
    return params


def with_price(**price_data):
    """payment_params whose first price_data has ``price_data`` merged in."""
    params = payment_params()
    params["line_items"][0]["price_data"].update(price_data)
    return params


def test_payment_session_is_created_open_with_a_hosted_url(stripe_client, stripe_simulator):
    client = stripe_client()
    session = client.v1.checkout.sessions.create(params=payment_params())

    assert session.id.startswith("cs_test_")
    assert session.object == "checkout.session"
    assert session.livemode is False
    assert (session.status, session.payment_status, session.mode) == ("open", "unpaid", "payment")
    assert session.url == f"{stripe_simulator.url}/c/pay/{session.id}"
    assert session.amount_total == session.amount_subtotal == 12500
    assert session.currency == "eur"
    assert session.customer_email == "client@example.com"
    assert session.client_reference_id == "request-42"
    assert session.metadata.to_dict() == {"billing_request": "42"}
    assert session.success_url == SUCCESS
    assert session.cancel_url == CANCEL
    assert session.payment_intent is None and session.subscription is None
    assert session.expires_at - session.created == 24 * 3600  # Stripe's default
    assert session.created == pytest.approx(stripe_simulator.now(), abs=2)


def test_retrieve_list_and_line_items(stripe_client):
    client = stripe_client()
    first = client.v1.checkout.sessions.create(params=payment_params())
    second = client.v1.checkout.sessions.create(params=subscription_params())

    retrieved = client.v1.checkout.sessions.retrieve(first.id)
    assert retrieved.to_dict() == first.to_dict()

    listed = client.v1.checkout.sessions.list()
    assert [s.id for s in listed.data] == [second.id, first.id]  # newest first
    assert listed.has_more is False and listed.url == "/v1/checkout/sessions"
    page = client.v1.checkout.sessions.list(params={"limit": 1})
    assert [s.id for s in page.data] == [second.id] and page.has_more is True
    rest = client.v1.checkout.sessions.list(params={"starting_after": second.id})
    assert [s.id for s in rest.data] == [first.id]

    expanded = client.v1.checkout.sessions.retrieve(first.id, params={"expand": ["line_items"]})
    item = expanded.line_items.data[0]
    assert (item.object, item.description, item.quantity) == ("item", "Website maintenance", 1)
    assert item.price.unit_amount == 12500 and item.price.type == "one_time"
    items = client.v1.checkout.sessions.line_items.list(first.id)
    assert items.data[0].id == item.id


def test_list_filters_by_status(stripe_client, stripe_simulator):
    client = stripe_client()
    open_one = client.v1.checkout.sessions.create(params=payment_params())
    expired = client.v1.checkout.sessions.create(params=payment_params())
    client.v1.checkout.sessions.expire(expired.id)
    paid = client.v1.checkout.sessions.create(params=payment_params())
    stripe_simulator.complete_checkout(paid.id)

    def ids(status):
        found = client.v1.checkout.sessions.list(params={"status": status})
        return [s.id for s in found.data]

    assert ids("open") == [open_one.id]
    assert ids("expired") == [expired.id]
    assert ids("complete") == [paid.id]
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        ids("paid")
    assert excinfo.value.param == "status"


def test_subscription_session_and_paying_it_creates_a_subscription(stripe_client, stripe_simulator):
    client = stripe_client()
    session = client.v1.checkout.sessions.create(params=subscription_params("year"))
    assert session.mode == "subscription" and session.status == "open"

    stripe_simulator.complete_checkout(session.id)
    session = client.v1.checkout.sessions.retrieve(session.id)
    assert (session.status, session.payment_status) == ("complete", "paid")
    assert session.subscription.startswith("sub_") and session.customer.startswith("cus_")
    assert session.url is None  # Stripe only shows the URL while the session is open

    subscription = client.v1.subscriptions.retrieve(session.subscription)
    assert (subscription.status, subscription.customer) == ("active", session.customer)
    price = subscription["items"].data[0].price
    assert (price.unit_amount, price.recurring.interval) == (12500, "year")
    customer = client.v1.customers.retrieve(session.customer)
    assert customer.email == "client@example.com"
    types = [event["type"] for event in stripe_simulator.events()]
    assert types == [
        "customer.subscription.created",
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",  # the first invoice: see test_simulator_invoices.py
        "checkout.session.completed",
    ]


def test_cancelling_a_subscription_emits_deleted(stripe_client, stripe_simulator):
    client = stripe_client()
    session = client.v1.checkout.sessions.create(params=subscription_params())
    stripe_simulator.complete_checkout(session.id)
    subscription_id = client.v1.checkout.sessions.retrieve(session.id).subscription

    canceled = client.v1.subscriptions.cancel(subscription_id)

    assert canceled.status == "canceled" and canceled.canceled_at is not None
    event = stripe_simulator.events("customer.subscription.deleted")[0]
    assert event["data"]["object"]["id"] == subscription_id
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.cancel(subscription_id)


def test_paying_a_payment_session_records_a_payment_intent(stripe_client, stripe_simulator):
    client = stripe_client()
    session = client.v1.checkout.sessions.create(params=payment_params())
    stripe_simulator.complete_checkout(session.id)

    session = client.v1.checkout.sessions.retrieve(session.id)
    assert (session.status, session.payment_status) == ("complete", "paid")
    assert session.customer_details.email == "client@example.com"
    intent = client.v1.payment_intents.retrieve(session.payment_intent)
    assert (intent.status, intent.amount, intent.currency) == ("succeeded", 12500, "eur")
    completed = stripe_simulator.events("checkout.session.completed")
    assert len(completed) == 1
    assert completed[0]["data"]["object"]["payment_status"] == "paid"


def test_expire_endpoint_and_expiring_a_completed_session_fails(stripe_client, stripe_simulator):
    client = stripe_client()
    session = client.v1.checkout.sessions.create(params=payment_params())
    expired = client.v1.checkout.sessions.expire(session.id)
    assert expired.status == "expired" and expired.url is None
    assert len(stripe_simulator.events("checkout.session.expired")) == 1

    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.checkout.sessions.expire(session.id)
    assert "status of `expired`" in str(again.value)

    paid = client.v1.checkout.sessions.create(params=payment_params())
    stripe_simulator.complete_checkout(paid.id)
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.checkout.sessions.expire(paid.id)
    message = excinfo.value.user_message
    assert message.startswith('Only Checkout Sessions with a status in ["open"] can be expired')
    assert "`complete`" in message
    assert excinfo.value.http_status == 400
    assert len(stripe_simulator.events("checkout.session.expired")) == 1  # no second event


def test_sessions_expire_on_their_own_when_the_clock_passes(stripe_client, stripe_simulator):
    client = stripe_client()
    soon = client.v1.checkout.sessions.create(
        params=payment_params(expires_at=stripe_simulator.now() + 1800)
    )
    later = client.v1.checkout.sessions.create(params=payment_params())

    stripe_simulator.advance_clock(1801)

    assert client.v1.checkout.sessions.retrieve(soon.id).status == "expired"
    assert client.v1.checkout.sessions.retrieve(later.id).status == "open"
    events = stripe_simulator.events("checkout.session.expired")
    assert [e["data"]["object"]["id"] for e in events] == [soon.id]

    stripe_simulator.advance_clock(24 * 3600)
    assert client.v1.checkout.sessions.retrieve(later.id).status == "expired"
    assert len(stripe_simulator.events("checkout.session.expired")) == 2
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.checkout.sessions.expire(later.id)


def test_the_background_ticker_expires_without_any_request(stripe_client, stripe_simulator):
    client = stripe_client()
    session = client.v1.checkout.sessions.create(
        params=payment_params(expires_at=stripe_simulator.now() + 1800)
    )
    stripe_simulator.engine.store.clock.advance(1801)  # no tick from advance_clock here
    record = stripe_simulator.engine.store.find(session.id, "checkout.session")
    for _ in range(100):
        if record.data["status"] == "expired":
            break
        time.sleep(0.02)
    assert record.data["status"] == "expired"


@pytest.mark.parametrize(
    ("params", "param", "code", "text"),
    [
        (with_price(currency="xyz"), "line_items[0][price_data][currency]", None,
         "Invalid currency: xyz"),
        (with_price(unit_amount=49, currency="usd"), "line_items[0][price_data][unit_amount]",
         "amount_too_small", "at least 0.50 USD"),
        (with_price(unit_amount=29, currency="gbp"), "line_items[0][price_data][unit_amount]",
         "amount_too_small", "at least 0.30 GBP"),
        (with_price(unit_amount=49, currency="jpy"), "line_items[0][price_data][unit_amount]",
         "amount_too_small", "at least 50 JPY"),
        (with_price(unit_amount=100_000_000), "line_items[0][price_data][unit_amount]",
         "amount_too_large", "no more than 999,999.99 EUR"),
        (with_price(unit_amount=1234, currency="kwd"), "line_items[0][price_data][unit_amount]",
         "parameter_invalid_integer", "multiple of 10"),
        (with_price(unit_amount="12.50"), "line_items[0][price_data][unit_amount]",
         "parameter_invalid_integer", "Invalid integer"),
        (payment_params(success_url=None), "success_url", "parameter_missing", "success_url"),
        (payment_params(success_url="not a url"), "success_url", "url_invalid", "Not a valid URL"),
        (payment_params(line_items=None), "line_items", "parameter_missing", "line_items"),
        (payment_params(mode=None), "mode", "parameter_missing", "mode"),
        (payment_params(mode="donation"), "mode", None, "must be one of"),
        (payment_params(customer_email="nope"), "customer_email", "email_invalid", "nope"),
        (payment_params(line_items=[{"quantity": 1}]), "line_items[0][price_data]",
         "parameter_missing", "price_data"),
        (payment_params(line_items=[{"price": "price_123", "quantity": 1}]),
         "line_items[0][price]", "resource_missing", "No such price"),
        (with_price(product_data=None), "line_items[0][price_data][product_data]",
         "parameter_missing", "product_data"),
        (with_price(recurring={"interval": "month"}), "line_items[0][price_data][recurring]",
         None, "payment` mode but passed a recurring price"),
        (payment_params(mode="subscription"), "line_items", None, "at least one recurring price"),
        (payment_params(unknown_thing="x"), "unknown_thing", "parameter_unknown", "unknown"),
        (payment_params(metadata={"k": "v" * 501}), "metadata[k]", None, "500 characters"),
    ],
)  # fmt: skip
def test_bad_parameters_raise_invalid_request_error_naming_the_param(
    stripe_client, stripe_simulator, params, param, code, text
):
    params = {key: value for key, value in params.items() if value is not None}
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        stripe_client().v1.checkout.sessions.create(params=params)
    error = excinfo.value
    assert error.http_status == 400
    assert error.param == param
    assert error.code == code
    assert text in error.user_message
    assert error.error.type == "invalid_request_error"
    assert stripe_simulator.engine.store.find("x", "checkout.session") is None


@pytest.mark.parametrize(
    ("offset", "text"),
    [(1799, "at least 30 minutes"), (24 * 3600 + 60, "less than 24 hours"), (-10, "at least")],
)
def test_expires_at_must_be_30_minutes_to_24_hours_away(
    stripe_client, stripe_simulator, offset, text
):
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        stripe_client().v1.checkout.sessions.create(
            params=payment_params(expires_at=stripe_simulator.now() + offset)
        )
    assert excinfo.value.param == "expires_at"
    assert text in excinfo.value.user_message


def test_expires_at_bounds_follow_the_moved_clock(stripe_client, stripe_simulator):
    stripe_simulator.advance_clock(3 * 86400)
    expires_at = stripe_simulator.now() + 86400
    session = stripe_client().v1.checkout.sessions.create(
        params=payment_params(expires_at=expires_at)
    )
    assert session.expires_at == expires_at


def test_zero_decimal_and_three_decimal_amounts(stripe_client):
    client = stripe_client()
    yen = client.v1.checkout.sessions.create(params=with_price(currency="jpy", unit_amount=50))
    assert (yen.amount_total, yen.currency) == (50, "jpy")
    dinar = client.v1.checkout.sessions.create(params=with_price(currency="KWD", unit_amount=1230))
    assert (dinar.amount_total, dinar.currency) == (1230, "kwd")


def test_quantity_multiplies_and_the_total_is_checked(stripe_client):
    params = with_price(currency="usd", unit_amount=30)
    params["line_items"][0]["quantity"] = 2
    session = stripe_client().v1.checkout.sessions.create(params=params)
    assert session.amount_total == 60  # each item under the minimum, the total above


def test_unknown_session_is_404_resource_missing(stripe_client):
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        stripe_client().v1.checkout.sessions.retrieve("cs_test_missing")
    error = excinfo.value
    assert (error.http_status, error.code, error.param) == (404, "resource_missing", "id")
    assert "No such checkout.session: 'cs_test_missing'" in error.user_message


def test_unknown_route_is_404(stripe_simulator):
    response = requests.get(
        f"{stripe_simulator.url}/v1/nothing_here",
        headers={"Authorization": "Bearer sk_test_x"},
        timeout=5,
    )
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "Unrecognized request URL (GET: /v1/nothing_here)" in error["message"]


def test_livemode_follows_the_key_and_modes_do_not_see_each_other(stripe_client):
    live = stripe_client("sk_live_simulator")
    test = stripe_client("sk_test_simulator")
    live_session = live.v1.checkout.sessions.create(params=payment_params())
    test_session = test.v1.checkout.sessions.create(params=payment_params())

    assert live_session.id.startswith("cs_live_") and live_session.livemode is True
    assert test_session.livemode is False
    assert [s.id for s in live.v1.checkout.sessions.list().data] == [live_session.id]
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        test.v1.checkout.sessions.retrieve(live_session.id)
    assert excinfo.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError):
        live.v1.checkout.sessions.retrieve(test_session.id)


@pytest.mark.parametrize("key", ["", "pk_test_publishable", "sk_prod_x", "whatever"])
def test_missing_or_malformed_key_is_401(stripe_simulator, key):
    client = stripe.StripeClient(
        key or "sk_test_placeholder",
        base_addresses=stripe_simulator.base_addresses,
        max_network_retries=0,
    )
    if not key:
        # The SDK refuses an empty key itself; send the request by hand.
        response = requests.get(f"{stripe_simulator.url}/v1/checkout/sessions", timeout=5)
        assert response.status_code == 401
        assert "You did not provide an API key" in response.json()["error"]["message"]
        return
    with pytest.raises(stripe.AuthenticationError) as excinfo:
        client.v1.checkout.sessions.list()
    assert excinfo.value.http_status == 401
    assert "Invalid API Key provided" in excinfo.value.user_message
    assert key not in excinfo.value.user_message or len(key) <= 4


def test_restricted_keys_reject_other_keys(stripe_simulator, stripe_client):
    stripe_simulator.api_keys = frozenset({"sk_test_right"})
    assert stripe_client("sk_test_right").v1.checkout.sessions.list().data == []
    with pytest.raises(stripe.AuthenticationError):
        stripe_client("sk_test_wrong").v1.checkout.sessions.list()
    stripe_simulator.reset()
    assert stripe_simulator.api_keys is None


def test_idempotency_key_replays_the_first_response(stripe_client, stripe_simulator):
    client = stripe_client()
    options = {"idempotency_key": "billing-request-42"}
    first = client.v1.checkout.sessions.create(params=payment_params(), options=options)
    second = client.v1.checkout.sessions.create(params=payment_params(), options=options)

    assert second.id == first.id
    assert second.to_dict() == first.to_dict()
    assert second.last_response.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.last_response.headers
    assert len(client.v1.checkout.sessions.list().data) == 1

    with pytest.raises(stripe.IdempotencyError) as excinfo:
        client.v1.checkout.sessions.create(params=with_price(unit_amount=999), options=options)
    assert "billing-request-42" in excinfo.value.user_message
    assert len(client.v1.checkout.sessions.list().data) == 1


def test_idempotency_keys_are_scoped_per_api_key_and_account(stripe_client, stripe_simulator):
    options = {"idempotency_key": "same-key"}
    account = stripe_client().v1.accounts.create(params={"type": "standard"})
    one = stripe_client("sk_test_one").v1.checkout.sessions.create(
        params=payment_params(), options=options
    )
    two = stripe_client("sk_test_two").v1.checkout.sessions.create(
        params=payment_params(), options=options
    )
    three = stripe_client("sk_test_one").v1.checkout.sessions.create(
        params=payment_params(), options={**options, "stripe_account": account.id}
    )
    assert len({one.id, two.id, three.id}) == 3


def test_validation_errors_are_not_saved_under_the_idempotency_key(stripe_client):
    client = stripe_client()
    options = {"idempotency_key": "retry-after-fix"}
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.checkout.sessions.create(params=with_price(currency="xyz"), options=options)
    session = client.v1.checkout.sessions.create(params=payment_params(), options=options)
    assert session.status == "open"


def test_hosted_checkout_page_pay_and_cancel_without_a_browser(stripe_client, stripe_simulator):
    session = stripe_client().v1.checkout.sessions.create(params=payment_params())
    http = requests.Session()

    page = http.get(session.url, timeout=5)
    assert page.status_code == 200
    assert "Website maintenance" in page.text and "125.00 EUR" in page.text
    assert "client@example.com" in page.text

    cancel = http.post(session.url, data={"action": "cancel"}, allow_redirects=False, timeout=5)
    assert (cancel.status_code, cancel.headers["Location"]) == (303, CANCEL)
    assert stripe_simulator.get_object(session.id, "checkout.session")["status"] == "open"

    pay = http.post(
        session.url, data={"action": "pay", "email": "client@example.com"},
        allow_redirects=False, timeout=5,
    )  # fmt: skip
    assert pay.status_code == 303
    assert pay.headers["Location"] == SUCCESS.replace("{CHECKOUT_SESSION_ID}", session.id)
    done = http.get(session.url, timeout=5).text
    assert "This Checkout Session is complete" in done and ">Pay<" not in done


def test_expired_session_page_says_so_and_cannot_be_paid(stripe_client, stripe_simulator):
    session = stripe_client().v1.checkout.sessions.create(params=payment_params())
    stripe_client().v1.checkout.sessions.expire(session.id)
    page = requests.get(session.url or f"{stripe_simulator.url}/c/pay/{session.id}", timeout=5)
    assert "This Checkout Session has expired" in page.text and ">Pay<" not in page.text
    url = f"{stripe_simulator.url}/c/pay/{session.id}"
    pay = requests.post(url, data={"action": "pay"}, allow_redirects=False, timeout=5)
    assert pay.status_code == 200 and "has expired" in pay.text
    assert stripe_simulator.events("checkout.session.completed") == []


def test_delayed_payment_settles_when_the_test_says(stripe_client, stripe_simulator):
    client = stripe_client()
    ok = client.v1.checkout.sessions.create(params=payment_params())
    bad = client.v1.checkout.sessions.create(params=payment_params())
    for session in (ok, bad):
        url = f"{stripe_simulator.url}/c/pay/{session.id}"
        requests.post(url, data={"action": "delayed"}, allow_redirects=False, timeout=5)

    pending = client.v1.checkout.sessions.retrieve(ok.id)
    assert (pending.status, pending.payment_status) == ("complete", "unpaid")
    assert client.v1.payment_intents.retrieve(pending.payment_intent).status == "processing"
    assert len(stripe_simulator.events("checkout.session.completed")) == 2

    stripe_simulator.settle_async(ok.id, succeed=True)
    stripe_simulator.settle_async(bad.id, succeed=False)

    assert client.v1.checkout.sessions.retrieve(ok.id).payment_status == "paid"
    assert client.v1.checkout.sessions.retrieve(bad.id).payment_status == "unpaid"
    [succeeded] = stripe_simulator.events("checkout.session.async_payment_succeeded")
    [failed] = stripe_simulator.events("checkout.session.async_payment_failed")
    assert succeeded["data"]["object"]["id"] == ok.id
    assert failed["data"]["object"]["id"] == bad.id
    with pytest.raises(StripeError, match="no delayed payment"):
        stripe_simulator.settle_async(ok.id)  # nothing left to settle


def test_delayed_payment_settles_automatically_after_the_configured_delay(
    stripe_client, stripe_simulator
):
    stripe_simulator.configure(async_settle_delay=3600, async_settle_succeeds=False)
    session = stripe_client().v1.checkout.sessions.create(params=payment_params())
    stripe_simulator.complete_checkout(session.id, delayed=True)
    assert stripe_simulator.events("checkout.session.async_payment_failed") == []

    stripe_simulator.advance_clock(3600)  # simulated time drives the settlement

    assert len(stripe_simulator.events("checkout.session.async_payment_failed")) == 1


def test_success_url_without_placeholder_is_kept_as_is(stripe_client, stripe_simulator):
    session = stripe_client().v1.checkout.sessions.create(
        params=payment_params(success_url="https://client.example/thanks")
    )
    response = requests.post(session.url, data={"action": "pay"}, allow_redirects=False, timeout=5)
    assert response.headers["Location"] == "https://client.example/thanks"
    assert urllib.parse.urlsplit(response.headers["Location"]).query == ""
