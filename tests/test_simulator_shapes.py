"""The simulator's objects have the shape of Stripe's own example objects.

``tests/data/stripe/*.json`` are untouched copies of Stripe's published fixtures
(``fixtures3.json``). Every object the simulator returns must have the same keys at
every level and, where both sides have a value, the same JSON types.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

DATA = Path(__file__).parent / "data" / "stripe"

# Keys Stripe adds beyond its example object, by path (``*`` matches any list index).
ALLOWED_EXTRA = {
    "": set(),
    "controller": {"is_controller", "fees", "losses", "requirement_collection",
                   "stripe_dashboard"},
    "data": {"previous_attributes"},
    # An invoice payment names what paid it (Stripe's example shows only the type).
    "payment": {"payment_intent"},
}  # fmt: skip


# Nested objects Stripe leaves null in the states these tests create, although its
# example object fills them; every other nested object of the example must be there.
_UNSET = "null unless the session is created with this option"
NULL_IN_THIS_STATE: dict[str, str] = {
    **dict.fromkeys(
        (
            "after_expiration",
            "consent_collection",
            "currency_conversion",
            "permissions",
            "custom_text.after_submit",
            "custom_text.shipping_address",
            "custom_text.submit",
            "custom_text.terms_of_service_acceptance",
            "shipping_address_collection",
            "shipping_cost",
            "wallet_options",
            "adjustable_quantity",
            "transform_quantity",
            "price.transform_quantity",
            "items.data[*].price.transform_quantity",
            "plan.transform_usage",
            "items.data[*].plan.transform_usage",
        ),
        _UNSET,
    ),  # fmt: skip
    "consent": "null unless consent_collection asked for consent",
    "automatic_tax.liability": "null while automatic tax is disabled",
    "collected_information": "null unless shipping or a name was collected",
    "customer_details": "null until the customer pays (checked on complete sessions below)",
    "saved_payment_method_options": "null unless the session has a customer",
    "invoice_creation": "null in subscription mode (checked in payment mode below)",
    "invoice_creation.invoice_data.issuer": "null while invoice creation is disabled",
    "invoice_creation.invoice_data.rendering_options": "null while invoice creation is disabled",
    "payment_method_configuration_details": "null when payment_method_types were given",
    "recurring": "a one-time price's (checked on recurring prices below)",
    "price.recurring": "a one-time price's",
    # Customers, payment intents and subscriptions in their plain paid state:
    "address": "null until an address is collected",
    "discount": "null without a coupon",
    "shipping": "null without shipping",
    **dict.fromkeys(
        (
            "automatic_payment_methods",
            "last_payment_error",
            "next_action",
            "processing",
            "transfer_data",
            "billing_cycle_anchor_config",
            "billing_thresholds",
            "items.data[*].billing_thresholds",
            "pause_collection",
            "pending_invoice_item_interval",
            "pending_update",
        ),
        "null in the state the simulator creates (paid by card, no Connect transfer, no "
        "threshold, pause or pending update)",
    ),  # fmt: skip
    "data.object": "an event's object is checked on its own, against its kind's example",
    # A charge paid by a plain card, from Checkout:
    "source": "null for a charge made with a payment method (not a legacy source)",
    "payment_method_details.card.wallet": "null unless paid with a wallet (Apple Pay...)",
    "payment_method_details.card.installments": "null unless paid in installments",
    # Invoices of a one-time payment or of a subscription, paid by card:
    **dict.fromkeys(
        ("customer_address", "customer_shipping", "shipping_details", "shipping_cost"),
        "null unless Checkout collected an address or shipping (checked with an address below)",
    ),
    "from_invoice": "null unless the invoice revises another",
    "flow": "null unless a portal session is made with flow_data",
    "last_finalization_error": "null: finalization succeeded",
    "parent": "null on a one-time payment's invoice (checked on subscription invoices)",
    "parent.quote_details": "null: the invoice comes from a subscription, not a quote",
    "lines.data[*].parent.invoice_item_details": "null on a subscription item's line",
    "lines.data[*].parent.subscription_item_details": "null on a one-time item's line",
    **dict.fromkeys(
        (
            "lines.data[*].parent.invoice_item_details.proration_details.credited_items",
            "lines.data[*].parent.subscription_item_details.proration_details.credited_items",
        ),
        "null: no proration",
    ),
}


def raw(obj: Any) -> dict[str, Any]:
    """The JSON the simulator sent (the SDK turns decimal strings into Decimals)."""
    return json.loads(obj.last_response.body)


def fixture(name: str) -> dict[str, Any]:
    """Stripe's example object ``name``."""
    return json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))


def shape_errors(ours: Any, theirs: Any, path: str = "") -> list[str]:
    """Differences in keys and types between our object and Stripe's example."""
    if ours is None and isinstance(theirs, dict) and path not in NULL_IN_THIS_STATE:
        return [f"{path}: null instead of an object"]
    if theirs is None and isinstance(ours, dict) and (DATA / f"{ours.get('object')}.json").exists():
        theirs = fixture(ours["object"])  # an expanded object: Stripe's example of its kind
    if theirs is None or ours is None:
        return []  # null in Stripe's example: nothing to compare a value with
    if isinstance(theirs, dict):
        if not isinstance(ours, dict):
            return [f"{path or '<root>'}: expected an object, got {type(ours).__name__}"]
        errors = []
        missing = set(theirs) - set(ours)
        extra = set(ours) - set(theirs) - ALLOWED_EXTRA.get(path.split(".")[-1], set())
        if missing:
            errors.append(f"{path or '<root>'}: missing keys {sorted(missing)}")
        if extra:
            errors.append(f"{path or '<root>'}: unexpected keys {sorted(extra)}")
        for key in set(theirs) & set(ours):
            errors += shape_errors(ours[key], theirs[key], f"{path}.{key}".lstrip("."))
        return errors
    if isinstance(theirs, list):
        if not isinstance(ours, list):
            return [f"{path}: expected a list, got {type(ours).__name__}"]
        if theirs and ours:
            return [e for item in ours for e in shape_errors(item, theirs[0], f"{path}[*]")]
        return []
    if isinstance(theirs, bool) or isinstance(ours, bool):
        ok = isinstance(theirs, bool) and isinstance(ours, bool)
    elif isinstance(theirs, int | float):
        ok = isinstance(ours, int | float)
    else:
        ok = isinstance(ours, type(theirs))
    return [] if ok else [f"{path}: {type(ours).__name__} instead of {type(theirs).__name__}"]


def assert_shape(ours: dict[str, Any], name: str, extra_top: set[str] = frozenset()) -> None:
    """Same top-level keys as Stripe's example (plus ``extra_top``), same nested shape."""
    theirs = fixture(name)
    assert set(ours) - extra_top == set(theirs), name
    assert shape_errors({k: v for k, v in ours.items() if k not in extra_top}, theirs) == []


def assert_event_shape(event: dict[str, Any]) -> None:
    """An event like Stripe's; its ``data.object`` like Stripe's example of that object."""
    envelope = {**event, "data": {**event["data"], "object": None}}
    assert_shape(envelope, "event", {"account"} if "account" in event else set())
    assert set(event["data"]) <= {"object", "previous_attributes"}
    obj = event["data"]["object"]
    assert_shape(obj, obj["object"])


SESSION = {
    "mode": "payment",
    "success_url": "https://client.example/ok",
    "cancel_url": "https://client.example/cancel",
    "customer_email": "client@example.com",
    "line_items": [
        {
            "price_data": {"currency": "eur", "unit_amount": 5000, "product_data": {"name": "X"}},
            "quantity": 2,
        }
    ],
}


def test_the_reference_data_is_stripes_fixture():
    names = sorted(path.stem for path in DATA.glob("*.json"))
    assert "checkout.session" in names and "event" in names and "account" in names
    assert fixture("checkout.session")["object"] == "checkout.session"


def test_shape_checker_catches_differences():
    theirs = {"a": 1, "b": {"c": "x"}, "d": [{"e": True}]}
    assert shape_errors({"a": 2, "b": {"c": "y"}, "d": [{"e": False}]}, theirs) == []
    assert shape_errors({"a": "2", "b": {"c": "y"}, "d": []}, theirs) == ["a: str instead of int"]
    assert shape_errors({"a": 1, "b": {}, "d": None}, theirs) == ["b: missing keys ['c']"]
    assert shape_errors({"a": True, "b": {"c": "y"}, "d": None}, theirs) == [
        "a: bool instead of int"
    ]
    assert shape_errors({"a": 1, "b": {"c": "y", "z": 1}, "d": None}, theirs) == [
        "b: unexpected keys ['z']"
    ]
    assert shape_errors({"a": 1, "b": None, "d": None}, theirs) == ["b: null instead of an object"]
    assert shape_errors({"a": 1, "b": {"c": "y"}, "d": None}, {"a": 1, "b": None, "d": None}) == []
    expanded = {"id": "x", "object": "customer"}  # an expanded object: compared with its kind
    assert "missing keys" in shape_errors({"customer": expanded}, {"customer": None})[0]


def test_account_and_account_link_shapes(stripe_client, stripe_simulator):
    client = stripe_client()
    account = raw(
        client.v1.accounts.create(
            params={"controller": {"stripe_dashboard": {"type": "express"}}, "country": "DE"}
        )
    )
    assert_shape(account, "account")
    link = raw(client.v1.account_links.create(
        params={"account": account["id"], "type": "account_onboarding",
                "refresh_url": "https://a.example/r", "return_url": "https://a.example/b"}
    ))  # fmt: skip
    assert_shape(link, "account_link")
    stripe_simulator.complete_onboarding(account["id"])
    assert_shape(raw(client.v1.accounts.retrieve(account["id"])), "account")
    [event] = stripe_simulator.events("account.updated")
    assert_event_shape(event)
    assert_event_shape(stripe_simulator.deauthorize(account["id"]))
    deleted = raw(client.v1.accounts.delete(account["id"]))
    assert_shape(deleted, "deleted_account")


@pytest.mark.parametrize("mode", ["payment", "subscription"])
def test_checkout_session_shapes_in_every_state(stripe_client, stripe_simulator, mode):
    client = stripe_client()
    params = json.loads(json.dumps(SESSION))
    params["mode"] = mode
    if mode == "subscription":
        params["line_items"][0]["price_data"]["recurring"] = {"interval": "month"}
    created = client.v1.checkout.sessions.create(params=params)
    assert_shape(raw(created), "checkout.session")

    stripe_simulator.complete_checkout(created.id)
    complete = client.v1.checkout.sessions.retrieve(created.id, params={"expand": ["line_items"]})
    assert_shape(raw(complete), "checkout.session", {"line_items"})
    assert isinstance(raw(complete)["customer_details"], dict)
    assert isinstance(raw(complete)["payment_method_configuration_details"], dict)
    assert isinstance(raw(complete)["invoice_creation"], dict) == (mode == "payment")
    for item in raw(complete)["line_items"]["data"]:
        assert_shape(item, "item")
        assert_shape(item["price"], "price")

    other = client.v1.checkout.sessions.create(params=params)
    expired = raw(client.v1.checkout.sessions.expire(other.id))
    assert_shape(expired, "checkout.session")

    for event in stripe_simulator.events():
        assert_event_shape(event)
    if mode == "payment":
        intent = client.v1.payment_intents.retrieve(complete.payment_intent)
        assert_shape(raw(intent), "payment_intent")
    else:
        subscription = raw(client.v1.subscriptions.retrieve(complete.subscription))
        assert_shape(subscription, "subscription")
        for item in subscription["items"]["data"]:
            assert_shape(item, "subscription_item")
            assert item["plan"]["object"] == "plan" and item["price"]["recurring"]
            assert item["plan"]["id"] == item["price"]["id"]
        assert_shape(raw(client.v1.customers.retrieve(complete.customer)),
                     "customer")  # fmt: skip
        canceled = raw(client.v1.subscriptions.cancel(complete.subscription))
        assert_shape(canceled, "subscription")


def test_charge_refund_and_dispute_shapes(stripe_client, stripe_simulator):
    client = stripe_client(stripe_account=stripe_client().v1.accounts.create().id)
    session = client.v1.checkout.sessions.create(params=SESSION)
    intent = stripe_simulator.complete_checkout(session.id)["payment_intent"]
    charge_id = client.v1.payment_intents.retrieve(intent).latest_charge
    assert_shape(raw(client.v1.charges.retrieve(charge_id)), "charge")

    stripe_simulator.delay_next_refunds()
    refund = raw(client.v1.refunds.create(params={"payment_intent": intent, "amount": 100}))
    assert_shape(refund, "refund")
    stripe_simulator.settle_refund(refund["id"])
    assert_shape(raw(client.v1.refunds.retrieve(refund["id"])), "refund")
    for item in raw(client.v1.refunds.list())["data"]:
        assert_shape(item, "refund")
    refunded = raw(client.v1.charges.retrieve(charge_id))
    assert_shape(refunded, "charge")
    assert refunded["refunds"]["data"] and refunded["refunds"]["data"][0]["object"] == "refund"

    dispute = stripe_simulator.create_dispute(intent)
    assert_shape(dispute, "dispute")
    stripe_simulator.close_dispute(dispute["id"], won=True)
    assert_shape(raw(client.v1.disputes.retrieve(dispute["id"])), "dispute")
    for event in stripe_simulator.events():
        assert_event_shape(event)
    kinds = {event["type"] for event in stripe_simulator.events()}
    assert {"refund.created", "charge.refunded", "refund.updated", "charge.dispute.created",
            "charge.dispute.closed"} <= kinds  # fmt: skip


def test_invoice_and_invoice_payment_shapes(stripe_client, stripe_simulator):
    client = stripe_client(stripe_account=stripe_client().v1.accounts.create().id)
    invoicing = {"enabled": True, "invoice_data": {"footer": "F", "custom_fields": [
        {"name": "VAT", "value": "FR1"}]}}  # fmt: skip
    one_time = client.v1.checkout.sessions.create(
        params={
            **SESSION,
            "invoice_creation": invoicing,
            "tax_id_collection": {"enabled": True},
            "billing_address_collection": "required",
        }  # fmt: skip
    )
    assert_shape(raw(one_time), "checkout.session")
    address = {"line1": "1 rue X", "postal_code": "75001", "city": "Paris", "country": "FR"}
    stripe_simulator.complete_checkout(one_time.id, address=address, tax_id="FR2", name="C")
    subscription = client.v1.checkout.sessions.create(
        params={
            **SESSION,
            "mode": "subscription",
            "line_items": [
                {
                    **SESSION["line_items"][0],
                    "price_data": {
                        **SESSION["line_items"][0]["price_data"],
                        "recurring": {"interval": "month"},
                    },
                }
            ],
        }  # fmt: skip
    )
    stripe_simulator.complete_checkout(subscription.id)
    for session_id in (one_time.id, subscription.id):
        session = raw(client.v1.checkout.sessions.retrieve(session_id))
        assert_shape(session, "checkout.session")
        invoice = raw(client.v1.invoices.retrieve(session["invoice"]))
        assert_shape(invoice, "invoice")
        payments = raw(client.v1.invoice_payments.list(params={"invoice": invoice["id"]}))
        for payment in payments["data"]:
            assert_shape(payment, "invoice_payment")
            assert payment["payment"]["payment_intent"].startswith("pi_")
    assert isinstance(invoice["parent"]["subscription_details"], dict)
    stripe_simulator.fail_renewals(session["customer"])  # a failed renewal, then a paid one
    stripe_simulator.advance_clock(31 * 86400)
    stripe_simulator.update_payment_method(session["customer"])
    assert_shape(raw(client.v1.subscriptions.retrieve(session["subscription"])), "subscription")
    for invoice in raw(client.v1.invoices.list())["data"]:
        assert_shape(invoice, "invoice")
    portal = client.v1.billing_portal.sessions.create(
        params={"customer": session["customer"], "return_url": "https://client.example/"}
    )
    assert_shape(raw(portal), "billing_portal.session")
    for event in stripe_simulator.events():
        assert_event_shape(event)


def test_webhook_endpoint_shapes(stripe_client):
    client = stripe_client()
    created = raw(
        client.v1.webhook_endpoints.create(
            params={"url": "https://a.example/hook", "enabled_events": ["*"], "connect": True}
        )
    )
    assert_shape(created, "webhook_endpoint", {"secret"})  # the secret only on creation
    retrieved = raw(client.v1.webhook_endpoints.retrieve(created["id"]))
    assert_shape(retrieved, "webhook_endpoint")
    deleted = raw(client.v1.webhook_endpoints.delete(created["id"]))
    assert_shape(deleted, "deleted_webhook_endpoint")


def test_error_shape(stripe_simulator):
    response = requests.post(
        f"{stripe_simulator.url}/v1/checkout/sessions",
        data={"mode": "payment"},
        headers={"Authorization": "Bearer sk_test_x"},
        timeout=5,
    )
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Request-Id"].startswith("req_")
    error = response.json()["error"]
    assert set(error) == {"type", "code", "message", "param", "doc_url"}
    assert error["doc_url"] == "https://stripe.com/docs/error-codes/parameter-missing"
