"""Decoding Stripe's form encoding, as the SDK sends it."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from stripe._encode import _api_encode

from wagtail_client_billing.testing.stripe_simulator.errors import StripeError
from wagtail_client_billing.testing.stripe_simulator.forms import (
    as_bool,
    as_enum,
    as_int,
    flatten,
    metadata,
    parse_form,
)


def sdk_encoded(params):
    """The body the stripe SDK would send for ``params``."""
    return urlencode(list(_api_encode(params)))


def test_round_trip_of_what_the_sdk_sends():
    params = {
        "mode": "subscription",
        "line_items": [
            {
                "price_data": {
                    "currency": "eur",
                    "unit_amount": 1000,
                    "product_data": {"name": "Care & support [monthly]"},
                    "recurring": {"interval": "month"},
                },
                "quantity": 2,
            },
            {"price": "price_1", "quantity": 1},
        ],
        "metadata": {"request": "42", "empty": ""},
        "expand": ["line_items", "customer"],
        "connect": True,
    }
    decoded = parse_form(sdk_encoded(params))
    assert decoded == {
        "mode": "subscription",
        "line_items": [
            {
                "price_data": {
                    "currency": "eur",
                    "unit_amount": "1000",
                    "product_data": {"name": "Care & support [monthly]"},
                    "recurring": {"interval": "month"},
                },
                "quantity": "2",
            },
            {"price": "price_1", "quantity": "1"},
        ],
        "metadata": {"request": "42", "empty": ""},
        "expand": ["line_items", "customer"],
        "connect": "true",
    }


def test_appended_arrays_and_index_order():
    assert parse_form("enabled_events[]=a&enabled_events[]=b") == {"enabled_events": ["a", "b"]}
    assert parse_form("a[1]=y&a[0]=x&a[2]=z") == {"a": ["x", "y", "z"]}
    assert parse_form("a[1]=y&a[0]=x&a[10]=z") == {"a": {"0": "x", "1": "y", "10": "z"}}
    assert parse_form("") == {}


def test_conflicting_keys_are_refused():
    with pytest.raises(StripeError):
        parse_form("a=1&a[b]=2")
    with pytest.raises(StripeError):
        parse_form("a[b]=2&a=1")
    with pytest.raises(StripeError):
        parse_form("]bad=1")


def test_numeric_metadata_keys_survive():
    assert metadata(parse_form("metadata[0]=a&metadata[1]=b")["metadata"]) == {"0": "a", "1": "b"}
    assert metadata(parse_form("metadata[7]=a")["metadata"]) == {"7": "a"}


def test_flatten_is_canonical():
    one = parse_form("b=2&a[y]=1&a[x]=0")
    two = parse_form("a[x]=0&a[y]=1&b=2")
    assert flatten(one) == flatten(two) == [("a[x]", "0"), ("a[y]", "1"), ("b", "2")]


def test_coercions_name_the_parameter():
    assert as_int("12", "n") == 12
    assert as_bool("true", "b") is True and as_bool("false", "b") is False
    for call, param in [
        (lambda: as_int("1.5", "line_items[0][quantity]"), "line_items[0][quantity]"),
        (lambda: as_int("0", "q", minimum=1), "q"),
        (lambda: as_bool("yes", "connect"), "connect"),
        (lambda: as_enum("x", "mode", ("payment", "subscription")), "mode"),
        (lambda: metadata({"k" * 41: "v"}), f"metadata[{'k' * 41}]"),
        (lambda: metadata({str(i): "v" for i in range(51)}), "metadata"),
    ]:
        with pytest.raises(StripeError) as excinfo:
            call()
        assert excinfo.value.param == param
