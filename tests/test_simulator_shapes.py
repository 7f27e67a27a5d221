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
}  # fmt: skip


def raw(obj: Any) -> dict[str, Any]:
    """The JSON the simulator sent (the SDK turns decimal strings into Decimals)."""
    return json.loads(obj.last_response.body)


def fixture(name: str) -> dict[str, Any]:
    """Stripe's example object ``name``."""
    return json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))


def shape_errors(ours: Any, theirs: Any, path: str = "") -> list[str]:
    """Differences in keys and types between our object and Stripe's example."""
    if theirs is None or ours is None:
        return []  # nullable on one side: the example and our state just differ in value
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
    assert shape_errors({"a": 1, "b": {"c": "y", "z": 1}, "d": None}, theirs) == [
        "b: unexpected keys ['z']"
    ]
    assert shape_errors({"a": True, "b": None, "d": None}, theirs) == ["a: bool instead of int"]


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
        assert_shape(raw(client.v1.customers.retrieve(complete.customer)),
                     "customer")  # fmt: skip
        canceled = raw(client.v1.subscriptions.cancel(complete.subscription))
        assert_shape(canceled, "subscription")


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
