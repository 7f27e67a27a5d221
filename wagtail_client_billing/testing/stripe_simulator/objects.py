"""Build Stripe objects from Stripe's own example objects (``testing/stripe_objects``).

The templates are Stripe's published fixtures with their placeholder values replaced
by neutral ones (nulls, empty lists): same keys, nesting and value types. Each builder
deep-copies a template and fills in the simulated state, so responses never gain or
lose a key by accident.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

from . import checkout_options
from .store import new_id

TEMPLATES = Path(__file__).resolve().parent.parent / "stripe_objects"
ADDRESS_KEYS = ("city", "country", "line1", "line2", "postal_code", "state")
PERIOD_SECONDS = {"day": 86400, "week": 7 * 86400, "month": 30 * 86400, "year": 365 * 86400}

# Stripe's legacy account types expressed as controller properties (Stripe's mapping).
CONTROLLER_FOR_TYPE: dict[str, dict[str, Any]] = {
    "standard": {
        "fees": {"payer": "account"},
        "losses": {"payments": "stripe"},
        "requirement_collection": "stripe",
        "stripe_dashboard": {"type": "full"},
    },
    "express": {
        "fees": {"payer": "application"},
        "losses": {"payments": "application"},
        "requirement_collection": "stripe",
        "stripe_dashboard": {"type": "express"},
    },
    "custom": {
        "fees": {"payer": "application"},
        "losses": {"payments": "application"},
        "requirement_collection": "application",
        "stripe_dashboard": {"type": "none"},
    },
}


@functools.cache
def _load(name: str) -> dict[str, Any]:
    with (TEMPLATES / f"{name}.json").open(encoding="utf-8") as handle:
        return json.load(handle)


def build(template: str, /, **values: Any) -> dict[str, Any]:
    """A fresh copy of ``template`` with top-level ``values`` set (keys must exist)."""
    obj = copy.deepcopy(_load(template))
    for key, value in values.items():
        if key not in obj:
            raise KeyError(f"{template} objects have no {key!r} key")
        obj[key] = value
    return obj


def account(
    *, account_id: str, livemode: bool, created: int, params: dict[str, Any]
) -> dict[str, Any]:
    """A new connected account, not yet onboarded (requirements currently due)."""
    controller = params.get("controller") or {}
    account_type = params.get("type")
    if controller:
        # An account made with controller properties reports the matching legacy type.
        matches = (name for name, props in CONTROLLER_FOR_TYPE.items() if props == controller)
        account_type = next(matches, "none")
    elif account_type in CONTROLLER_FOR_TYPE:
        controller = copy.deepcopy(CONTROLLER_FOR_TYPE[account_type])
    requested = params.get("capabilities") or {"card_payments": {}, "transfers": {}}
    obj = build(
        "account",
        id=account_id,
        created=created,
        country=(params.get("country") or "US").upper(),
        default_currency=params.get("default_currency") or "usd",
        email=params.get("email"),
        business_type=params.get("business_type"),
        metadata=dict(params.get("metadata") or {}),
        capabilities=dict.fromkeys(requested, "inactive"),
        type=account_type or "standard",
    )
    obj["controller"].update(controller)
    obj["external_accounts"]["url"] = f"/v1/accounts/{account_id}/external_accounts"
    profile = obj["business_profile"]
    for key, value in (params.get("business_profile") or {}).items():
        if key in profile and isinstance(value, str):
            profile[key] = value or None
    return obj


def onboarded(obj: dict[str, Any], now: int) -> dict[str, Any]:
    """The account after the hosted onboarding form was completed."""
    requirements = obj["requirements"]
    for key in ("currently_due", "eventually_due", "past_due", "pending_verification"):
        requirements[key] = []
    requirements.update(disabled_reason=None, current_deadline=None)
    obj.update(details_submitted=True, charges_enabled=True, payouts_enabled=True)
    obj["capabilities"] = dict.fromkeys(obj["capabilities"], "active")
    obj["tos_acceptance"].update(date=now, ip="127.0.0.1", user_agent="StripeSimulator")
    return obj


def account_link(*, url: str, created: int, expires_at: int) -> dict[str, Any]:
    """The account link returned to the platform."""
    return build("account_link", created=created, expires_at=expires_at, url=url)


def price(
    *, livemode: bool, created: int, currency: str, unit_amount: int,
    recurring: dict[str, Any] | None,
) -> dict[str, Any]:  # fmt: skip
    """An inline price made from ``price_data`` (inactive: it cannot be reused)."""
    if recurring:
        recurring = {"interval": recurring["interval"],
                     "interval_count": recurring.get("interval_count", 1), "meter": None,
                     "usage_type": "licensed", "trial_period_days": None}  # fmt: skip
    return build(
        "price",
        id=new_id("price"),
        created=created,
        livemode=livemode,
        currency=currency,
        product=new_id("prod"),
        type="recurring" if recurring else "one_time",
        recurring=recurring,
        unit_amount=unit_amount,
        unit_amount_decimal=str(unit_amount),
    )


def plan(price_obj: dict[str, Any]) -> dict[str, Any]:
    """The legacy ``plan`` Stripe still shows beside a subscription item's recurring price."""
    recurring = price_obj["recurring"]
    return build(
        "plan",
        id=price_obj["id"],
        active=price_obj["active"],
        amount=price_obj["unit_amount"],
        amount_decimal=price_obj["unit_amount_decimal"],
        created=price_obj["created"],
        currency=price_obj["currency"],
        interval=recurring["interval"],
        interval_count=recurring["interval_count"],
        livemode=price_obj["livemode"],
        product=price_obj["product"],
        usage_type=recurring["usage_type"],
    )


def line_item(*, price_obj: dict[str, Any], quantity: int, description: str) -> dict[str, Any]:
    """One Checkout line item (object ``item``)."""
    total = price_obj["unit_amount"] * quantity
    return build(
        "item",
        id=new_id("li"),
        amount_subtotal=total,
        amount_total=total,
        currency=price_obj["currency"],
        description=description,
        quantity=quantity,
        price=price_obj,
    )


def checkout_session(
    *, session_id: str, livemode: bool, created: int, expires_at: int, mode: str, url: str,
    currency: str, amount: int, params: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """A new, open Checkout Session."""
    return build(
        "checkout.session",
        id=session_id,
        livemode=livemode,
        created=created,
        expires_at=expires_at,
        mode=mode,
        url=url,
        success_url=params.get("success_url"),
        cancel_url=params.get("cancel_url"),
        client_reference_id=params.get("client_reference_id"),
        customer_email=params.get("customer_email"),
        customer=params.get("customer"),
        metadata=dict(params.get("metadata") or {}),
        currency=currency,
        amount_subtotal=amount,
        amount_total=amount,
        locale=params.get("locale"),
        payment_method_types=list(params.get("payment_method_types") or ["card"]),
        # Without payment_method_types, Stripe picks them from the account's default
        # payment method configuration and says which one.
        payment_method_configuration_details=None
        if params.get("payment_method_types")
        else {"id": new_id("pmc"), "parent": None},
        customer_creation="if_required" if mode == "payment" else "always",
        invoice_creation=checkout_options.session_invoice_creation(params, mode),
        billing_address_collection=params.get("billing_address_collection"),
    )


def customer_details(email: str) -> dict[str, Any]:
    """What Checkout collected from the payer."""
    return {
        "address": dict.fromkeys(ADDRESS_KEYS),
        "email": email,
        "name": None,
        "phone": None,
        "tax_exempt": "none",
        "tax_ids": [],
        "business_name": None,
        "individual_name": None,
    }


def customer(*, livemode: bool, created: int, email: str, currency: str) -> dict[str, Any]:
    """The customer a subscription-mode session creates."""
    return build(
        "customer",
        id=new_id("cus"),
        livemode=livemode,
        created=created,
        email=email,
        currency=currency,
        invoice_prefix=new_id("cus")[4:12].upper(),
    )


def payment_intent(
    *, livemode: bool, created: int, amount: int, currency: str, status: str,
    customer_id: str | None, metadata: dict[str, str], description: str | None,
) -> dict[str, Any]:  # fmt: skip
    """The PaymentIntent behind a paid (or processing) payment-mode session."""
    intent_id = new_id("pi")
    return build(
        "payment_intent",
        id=intent_id,
        livemode=livemode,
        created=created,
        amount=amount,
        amount_received=amount if status == "succeeded" else 0,
        currency=currency,
        status=status,
        customer=customer_id,
        metadata=dict(metadata),
        description=description,
        client_secret=f"{intent_id}_secret_{new_id('cus')[4:]}",
        payment_method=new_id("pm"),
        latest_charge=new_id("ch"),
    )


def subscription(
    *, livemode: bool, created: int, customer_id: str, items: list[dict[str, Any]],
    metadata: dict[str, str], status: str = "active",
) -> dict[str, Any]:  # fmt: skip
    """The subscription a paid subscription-mode session creates."""
    sub_id = new_id("sub")
    sub_items = [
        build(
            "subscription_item",
            id=new_id("si"),
            created=created,
            subscription=sub_id,
            price=item["price"],
            plan=plan(item["price"]),
            quantity=item["quantity"],
            current_period_start=created,
            current_period_end=created + PERIOD_SECONDS[item["price"]["recurring"]["interval"]],
        )
        for item in items
        if item["price"]["recurring"]
    ]
    obj = build(
        "subscription",
        id=sub_id,
        livemode=livemode,
        created=created,
        start_date=created,
        billing_cycle_anchor=created,
        customer=customer_id,
        status=status,
        currency=items[0]["price"]["currency"],
        metadata=dict(metadata),
    )
    obj["items"].update(data=sub_items, url=f"/v1/subscription_items?subscription={sub_id}")
    return obj


def webhook_endpoint(
    *, endpoint_id: str, livemode: bool, created: int, url: str, enabled_events: list[str],
    description: str | None, metadata: dict[str, str], api_version: str | None,
) -> dict[str, Any]:  # fmt: skip
    """A webhook endpoint (``secret`` is added only to the creation response)."""
    return build(
        "webhook_endpoint",
        id=endpoint_id,
        livemode=livemode,
        created=created,
        url=url,
        enabled_events=enabled_events,
        description=description,
        metadata=metadata,
        api_version=api_version,
    )


def event(
    *, event_type: str, obj: dict[str, Any], livemode: bool, created: int, api_version: str,
    account: str | None, request_id: str | None, idempotency_key: str | None,
    previous_attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """An event carrying a snapshot of ``obj`` (and ``account`` on connected accounts)."""
    data: dict[str, Any] = {"object": copy.deepcopy(obj)}
    if previous_attributes:
        data["previous_attributes"] = copy.deepcopy(previous_attributes)
    evt = build(
        "event",
        id=new_id("evt"),
        created=created,
        livemode=livemode,
        api_version=api_version,
        type=event_type,
        data=data,
        request={"id": request_id, "idempotency_key": idempotency_key},
    )
    if account:
        evt["account"] = account
    return evt


def deleted(kind: str, object_id: str) -> dict[str, Any]:
    """The ``{"id", "object", "deleted": true}`` answer of a DELETE."""
    return build(f"deleted_{kind}", id=object_id)


def application(account_id: str) -> dict[str, Any]:
    """The application object carried by ``account.application.deauthorized``."""
    return build("application", id=f"ca_{account_id[5:]}", name="Stripe simulator platform")
