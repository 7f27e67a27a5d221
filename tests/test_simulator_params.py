"""The simulator refuses unknown parameters at every depth, as Stripe does.

The accepted parameter tree of each endpoint (``testing/stripe_objects/params.json``) is
generated from the ``stripe`` SDK's own typed params, so that it is Stripe's, not a guess.
After upgrading the SDK, regenerate it with ``python tests/test_simulator_params.py``.
"""

from __future__ import annotations

import importlib
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import stripe
from stripe._request_options import RequestOptions

from wagtail_client_billing.testing.stripe_simulator.routes import PARAMS_FILE, ROUTES

# The SDK's params class of each simulator route (``stripe.params.<module>.<class>``).
SDK_PARAMS = {
    "POST /v1/checkout/sessions": "checkout._session_create_params.SessionCreateParams",
    "GET /v1/checkout/sessions/{id}": "checkout._session_retrieve_params.SessionRetrieveParams",
    "GET /v1/checkout/sessions/{id}/line_items":
        "checkout._session_line_item_list_params.SessionLineItemListParams",
    "GET /v1/checkout/sessions": "checkout._session_list_params.SessionListParams",
    "POST /v1/checkout/sessions/{id}/expire": "checkout._session_expire_params.SessionExpireParams",
    "POST /v1/accounts": "_account_create_params.AccountCreateParams",
    "GET /v1/accounts/{id}": "_account_retrieve_params.AccountRetrieveParams",
    "GET /v1/account": "_account_retrieve_current_params.AccountRetrieveCurrentParams",
    "GET /v1/accounts": "_account_list_params.AccountListParams",
    "POST /v1/accounts/{id}": "_account_update_params.AccountUpdateParams",
    "DELETE /v1/accounts/{id}": "_account_delete_params.AccountDeleteParams",
    "POST /v1/account_links": "_account_link_create_params.AccountLinkCreateParams",
    "GET /v1/events/{id}": "_event_retrieve_params.EventRetrieveParams",
    "GET /v1/events": "_event_list_params.EventListParams",
    "POST /v1/webhook_endpoints": "_webhook_endpoint_create_params.WebhookEndpointCreateParams",
    "GET /v1/webhook_endpoints/{id}":
        "_webhook_endpoint_retrieve_params.WebhookEndpointRetrieveParams",
    "GET /v1/webhook_endpoints": "_webhook_endpoint_list_params.WebhookEndpointListParams",
    "POST /v1/webhook_endpoints/{id}":
        "_webhook_endpoint_update_params.WebhookEndpointUpdateParams",
    "DELETE /v1/webhook_endpoints/{id}":
        "_webhook_endpoint_delete_params.WebhookEndpointDeleteParams",
    "GET /v1/subscriptions/{id}": "_subscription_retrieve_params.SubscriptionRetrieveParams",
    "GET /v1/subscriptions": "_subscription_list_params.SubscriptionListParams",
    "POST /v1/subscriptions/{id}": "_subscription_update_params.SubscriptionUpdateParams",
    "DELETE /v1/subscriptions/{id}": "_subscription_cancel_params.SubscriptionCancelParams",
    "GET /v1/customers/{id}": "_customer_retrieve_params.CustomerRetrieveParams",
    "GET /v1/payment_intents/{id}":
        "_payment_intent_retrieve_params.PaymentIntentRetrieveParams",
    "POST /v1/refunds": "_refund_create_params.RefundCreateParams",
    "GET /v1/refunds/{id}": "_refund_retrieve_params.RefundRetrieveParams",
    "GET /v1/refunds": "_refund_list_params.RefundListParams",
    "GET /v1/charges/{id}": "_charge_retrieve_params.ChargeRetrieveParams",
    "GET /v1/disputes/{id}": "_dispute_retrieve_params.DisputeRetrieveParams",
    "GET /v1/invoices/{id}": "_invoice_retrieve_params.InvoiceRetrieveParams",
    "GET /v1/invoices": "_invoice_list_params.InvoiceListParams",
    "GET /v1/invoice_payments": "_invoice_payment_list_params.InvoicePaymentListParams",
    "POST /v1/billing_portal/sessions": "billing_portal._session_create_params.SessionCreateParams",
}  # fmt: skip


def _tree(hint: Any, namespace: dict[str, Any]) -> Any:
    """A params type as a tree: a dict is a hash of known keys, ``[x]`` an array of x,
    ``"*"`` a hash of free keys (metadata), None a value."""
    if isinstance(hint, typing.ForwardRef):
        hint = hint.__forward_arg__
    if isinstance(hint, str):
        hint = eval(hint, namespace)  # noqa: S307 - the SDK's own annotations
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.NotRequired, typing.Required):
        return _tree(args[0], namespace)
    if origin in (typing.Union, types.UnionType):
        options = [tree for tree in (_tree(arg, namespace) for arg in args) if tree is not None]
        # ``Literal[""] | Dict`` (an empty string clears a hash): the richest form wins.
        for kind in (dict, list, str):
            for tree in options:
                if isinstance(tree, kind):
                    return tree
        return None
    if origin is list:
        return [_tree(args[0], namespace)]
    if origin is dict:
        return "*"
    if isinstance(hint, type) and issubclass(hint, dict) and hasattr(hint, "__total__"):
        inner = {**vars(typing), **vars(sys.modules[hint.__module__])}
        return {
            key: _tree(value, inner)
            for key, value in sorted(hint.__annotations__.items())
            if key not in RequestOptions.__annotations__
        }
    return None


def sdk_params_trees() -> dict[str, Any]:
    """Every route's accepted parameter tree, read from the installed SDK."""
    trees = {}
    for key, name in SDK_PARAMS.items():
        module_name, class_name = name.rsplit(".", 1)
        module = importlib.import_module(f"stripe.params.{module_name}")
        trees[key] = _tree(getattr(module, class_name), vars(module))
    return trees


def test_the_params_tree_is_the_sdks():
    assert json.loads(PARAMS_FILE.read_text(encoding="utf-8")) == sdk_params_trees(), (
        "Regenerate it: python tests/test_simulator_params.py"
    )


def test_every_route_has_a_params_tree():
    assert {key for key, _regex, _handler in ROUTES} == set(SDK_PARAMS)


SESSION = {
    "mode": "payment",
    "success_url": "https://client.example/ok",
    "line_items": [
        {
            "price_data": {"currency": "eur", "unit_amount": 5000, "product_data": {"name": "X"}},
            "quantity": 1,
        }
    ],
}


def _refused(call: Any, param: str) -> None:
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        call()
    error = excinfo.value
    assert error.http_status == 400
    assert error.code == "parameter_unknown"
    assert error.param == param
    assert error.error.type == "invalid_request_error"
    assert error.error.message == f"Received unknown parameter: {param}"


def test_unknown_nested_session_parameters_are_refused(stripe_client):
    sessions = stripe_client().v1.checkout.sessions
    item = SESSION["line_items"][0]
    bogus_price = {**item, "price_data": {**item["price_data"], "bogus": "1"}}
    _refused(
        lambda: sessions.create(params={**SESSION, "line_items": [bogus_price]}),
        "line_items[0][price_data][bogus]",
    )
    deeper = {**item["price_data"], "product_data": {"name": "X", "colour": "red"}}
    two = [item, {**item, "price_data": deeper}]
    _refused(
        lambda: sessions.create(params={**SESSION, "line_items": two}),
        "line_items[1][price_data][product_data][colour]",
    )
    _refused(
        lambda: sessions.create(params={**SESSION, "payment_intent_data": {"bogus": "1"}}),
        "payment_intent_data[bogus]",
    )
    _refused(lambda: sessions.create(params={**SESSION, "bogus": "1"}), "bogus")
    _refused(lambda: sessions.list(params={"created": {"after": 1}}), "created[after]")
    assert sessions.list().data == []  # nothing was created


def test_known_nested_parameters_and_free_hashes_are_accepted(stripe_client):
    client = stripe_client()
    session = client.v1.checkout.sessions.create(
        params={
            **SESSION,
            "metadata": {"anything": "goes"},
            "payment_intent_data": {"metadata": {"free": "keys"}, "description": "Invoice"},
            "line_items": [
                {
                    **SESSION["line_items"][0],
                    "price_data": {
                        **SESSION["line_items"][0]["price_data"],
                        "tax_behavior": "exclusive",
                        "product_data": {"name": "X", "metadata": {"k": "v"}},
                    },
                }
            ],
        }
    )
    assert session.status == "open"
    assert client.v1.checkout.sessions.list(params={"created": {"gte": 1}}).data


def test_unknown_nested_connect_and_webhook_parameters_are_refused(stripe_client):
    client = stripe_client()
    _refused(
        lambda: client.v1.accounts.create(
            params={"controller": {"stripe_dashboard": {"type": "express", "bogus": "1"}}}
        ),
        "controller[stripe_dashboard][bogus]",
    )
    account = client.v1.accounts.create(params={"business_profile": {"url": "https://a.example"}})
    _refused(
        lambda: client.v1.accounts.update(account.id, params={"business_profile": {"bogus": "x"}}),
        "business_profile[bogus]",
    )
    _refused(
        lambda: client.v1.account_links.create(
            params={
                "account": account.id,
                "type": "account_onboarding",
                "refresh_url": "https://a.example/r",
                "return_url": "https://a.example/b",
                "collection_options": {"fields": "eventually_due", "bogus": "1"},
            }
        ),
        "collection_options[bogus]",
    )
    _refused(
        lambda: client.v1.webhook_endpoints.create(
            params={"url": "https://a.example/hook", "enabled_events": ["*"], "bogus": {"a": "1"}}
        ),
        "bogus",
    )


if __name__ == "__main__":
    PARAMS_FILE.write_text(
        json.dumps(sdk_params_trees(), indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )
    print(f"Wrote {Path(PARAMS_FILE)}")
