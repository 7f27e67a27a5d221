"""Checkout endpoints: create, retrieve, list and expire sessions, and their line items.

Validation follows Stripe's rules and names the offending parameter, so the SDK
raises ``InvalidRequestError`` with ``.param`` set: currency and amount limits come
from :mod:`wagtail_client_billing.money`, ``expires_at`` must be 30 minutes to 24 hours
from now.
"""

from __future__ import annotations

from typing import Any, cast

from ... import money
from . import objects
from .api_connect import _check_url, check_email
from .checkout_options import invoicing_options
from .errors import StripeError, missing_param, no_such
from .forms import as_dict, as_enum, as_int, as_list, as_str, metadata
from .routes import ApiRequest, created_filter, get_or_404, paginate, route
from .store import new_id

SESSION_PARAMS = (
    "adaptive_pricing",
    "after_expiration",
    "allow_promotion_codes",
    "automatic_tax",
    "billing_address_collection",
    "branding_settings",
    "cancel_url",
    "client_reference_id",
    "consent_collection",
    "currency",
    "custom_fields",
    "custom_text",
    "customer",
    "customer_account",
    "customer_creation",
    "customer_email",
    "customer_update",
    "discounts",
    "excluded_payment_method_types",
    "expires_at",
    "integration_identifier",
    "invoice_creation",
    "line_items",
    "locale",
    "managed_payments",
    "metadata",
    "mode",
    "name_collection",
    "optional_items",
    "origin_context",
    "payment_intent_data",
    "payment_method_collection",
    "payment_method_configuration",
    "payment_method_data",
    "payment_method_options",
    "payment_method_types",
    "permissions",
    "phone_number_collection",
    "redirect_on_completion",
    "return_url",
    "saved_payment_method_options",
    "setup_intent_data",
    "shipping_address_collection",
    "shipping_options",
    "submit_type",
    "subscription_data",
    "success_url",
    "tax_id_collection",
    "ui_mode",
    "wallet_options",
)
MIN_TTL = 30 * 60
MAX_TTL = 24 * 60 * 60
INTERVALS = ("day", "month", "week", "year")
STATUSES = ("complete", "expired", "open")


def _amount_error(exc: money.InvalidAmount, param: str, *, total: bool) -> StripeError:
    """Stripe's ``amount_too_small``/``amount_too_large``, naming the limit."""
    subject = "The Checkout Session's total amount due" if total else "This amount"
    if isinstance(exc, money.AmountTooSmall):
        limit = money.format_amount(exc.limit, exc.currency.code)
        return StripeError(
            f"{subject} must add up to at least {limit} (minimum charge amount).",
            code="amount_too_small",
            param=param,
        )
    if isinstance(exc, money.AmountTooLarge):
        limit = money.format_amount(exc.limit, exc.currency.code)
        return StripeError(
            f"{subject} must be no more than {limit} (maximum charge amount).",
            code="amount_too_large",
            param=param,
        )
    return StripeError(f"Invalid amount: {exc}", param=param, code="parameter_invalid_integer")


def _line_items(req: ApiRequest, mode: str) -> tuple[list[dict[str, Any]], str, int]:
    """Validated line items (as ``item`` objects), their currency and total."""
    raw = as_list(req.params.get("line_items", []), "line_items")
    if not raw:
        raise missing_param("line_items")
    items: list[dict[str, Any]] = []
    currency: str | None = None
    recurring_seen = False
    for index, entry in enumerate(raw):
        prefix = f"line_items[{index}]"
        entry = as_dict(entry, prefix)
        if entry.get("price"):
            raise no_such("price", str(entry["price"]), f"{prefix}[price]")
        if "price_data" not in entry:
            raise StripeError(
                f"You must specify either `price` or `price_data` in {prefix}.",
                code="parameter_missing",
                param=f"{prefix}[price_data]",
            )
        data = as_dict(entry["price_data"], f"{prefix}[price_data]")
        pp = f"{prefix}[price_data]"
        if not data.get("currency"):
            raise missing_param(f"{pp}[currency]")
        code = as_str(data["currency"], f"{pp}[currency]").lower()
        try:
            money.get_currency(code)
        except money.UnknownCurrency:
            supported = ", ".join(money.CURRENCIES)
            raise StripeError(
                f"Invalid currency: {code}. Stripe currently supports these currencies: "
                f"{supported}",
                param=f"{pp}[currency]",
            ) from None
        if currency is not None and code != currency:
            raise StripeError("All line items must use the same currency.", param=f"{pp}[currency]")
        currency = code
        if "unit_amount" not in data:
            raise missing_param(f"{pp}[unit_amount]")
        unit_amount = as_int(data["unit_amount"], f"{pp}[unit_amount]", minimum=0)
        if "quantity" not in entry:
            raise missing_param(f"{prefix}[quantity]")
        quantity = as_int(entry["quantity"], f"{prefix}[quantity]", minimum=1)
        product = as_dict(data.get("product_data", {}), f"{pp}[product_data]")
        if not data.get("product") and not product:
            raise StripeError(
                f"You must specify either `product` or `product_data` in {pp}.",
                code="parameter_missing",
                param=f"{pp}[product_data]",
            )
        if data.get("product"):
            raise no_such("product", str(data["product"]), f"{pp}[product]")
        if not product.get("name"):
            raise missing_param(f"{pp}[product_data][name]")
        name = as_str(product["name"], f"{pp}[product_data][name]", max_length=5000)
        recurring: dict[str, Any] | None = None
        if "recurring" in data:
            rec = as_dict(data["recurring"], f"{pp}[recurring]")
            if not rec.get("interval"):
                raise missing_param(f"{pp}[recurring][interval]")
            recurring = {
                "interval": as_enum(rec["interval"], f"{pp}[recurring][interval]", INTERVALS)
            }
            if "interval_count" in rec:
                recurring["interval_count"] = as_int(
                    rec["interval_count"], f"{pp}[recurring][interval_count]", minimum=1
                )
            recurring_seen = True
            if mode == "payment":
                raise StripeError(
                    "You specified `payment` mode but passed a recurring price. Either switch "
                    "to `subscription` mode or use only one-time prices.",
                    param=f"{pp}[recurring]",
                )
        limits = money.get_currency(code)
        if unit_amount > limits.maximum:
            error = money.AmountTooLarge(limits, unit_amount)
            raise _amount_error(error, f"{pp}[unit_amount]", total=False)
        if unit_amount % limits.step:
            raise StripeError(
                f"Invalid {pp}[unit_amount]: {code} amounts must be a multiple of {limits.step} "
                f"in the smallest currency unit (got {unit_amount}).",
                param=f"{pp}[unit_amount]",
                code="parameter_invalid_integer",
            )
        price_obj = objects.price(
            livemode=req.livemode,
            created=req.engine.now(),
            currency=code,
            unit_amount=unit_amount,
            recurring=recurring,
        )
        items.append(objects.line_item(price_obj=price_obj, quantity=quantity, description=name))
    if mode == "subscription" and not recurring_seen:
        raise StripeError(
            "You must provide at least one recurring price in `subscription` mode when using "
            "prices.",
            param="line_items",
        )
    currency = cast(str, currency)  # set by the loop: line_items is not empty
    total = sum(item["amount_total"] for item in items)
    if total or mode == "payment":
        try:
            money.check_amount(total, currency)
        except money.InvalidAmount as exc:
            param = "line_items[0][price_data][unit_amount]"
            raise _amount_error(exc, param, total=True) from None
    return items, currency, total


def _expires_at(req: ApiRequest) -> int:
    now = req.engine.now()  # whole seconds, as the timestamps are
    if "expires_at" not in req.params:
        return now + MAX_TTL
    expires_at = as_int(req.params["expires_at"], "expires_at")
    if expires_at < now + MIN_TTL:
        raise StripeError(
            "The `expires_at` timestamp must be at least 30 minutes from Checkout Session "
            "creation.",
            param="expires_at",
        )
    if expires_at > now + MAX_TTL:
        raise StripeError(
            "The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.",
            param="expires_at",
        )
    return expires_at


@route("POST", "/v1/checkout/sessions")
def create_session(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """Create an open hosted Checkout Session (``payment`` or ``subscription`` mode)."""
    req.allow(*SESSION_PARAMS)
    params = req.params
    if not params.get("mode"):
        raise missing_param("mode")
    mode = as_enum(params["mode"], "mode", ("payment", "setup", "subscription"))
    if mode == "setup":
        raise StripeError("The Stripe simulator does not support setup mode.", param="mode")
    if params.get("ui_mode", "hosted") != "hosted":
        raise StripeError("The Stripe simulator only supports ui_mode=hosted.", param="ui_mode")
    if not params.get("success_url"):
        raise missing_param("success_url")
    clean: dict[str, Any] = {"success_url": _check_url(params["success_url"], "success_url")}
    if params.get("cancel_url"):
        clean["cancel_url"] = _check_url(params["cancel_url"], "cancel_url")
    if params.get("customer_email"):
        clean["customer_email"] = check_email(params["customer_email"], "customer_email")
    if "client_reference_id" in params:
        clean["client_reference_id"] = (
            as_str(params["client_reference_id"], "client_reference_id", max_length=200) or None
        )
    if "metadata" in params:
        clean["metadata"] = metadata(params["metadata"])
    if params.get("customer"):
        customer = as_str(params["customer"], "customer")
        if req.engine.store.get(customer, "customer", req.scope) is None:
            raise no_such("customer", customer, "customer")
        clean["customer"] = customer
    for key in ("payment_intent_data", "subscription_data"):
        if key in params:
            section = as_dict(params[key], key)
            clean[key] = {
                **section,
                "metadata": metadata(section.get("metadata", {}), f"{key}[metadata]"),
            }
    if "payment_method_types" in params:
        clean["payment_method_types"] = as_list(
            params["payment_method_types"], "payment_method_types"
        )
    if "locale" in params:
        clean["locale"] = as_str(params["locale"], "locale")
    clean.update(invoicing_options(params, mode))
    expires_at = _expires_at(req)
    items, currency, total = _line_items(req, mode)
    engine = req.engine
    session_id = new_id("cs", req.livemode)
    url = f"{engine.base_url()}/c/pay/{session_id}"
    data = objects.checkout_session(
        session_id=session_id,
        livemode=req.livemode,
        created=engine.now(),
        expires_at=expires_at,
        mode=mode,
        url=url,
        currency=currency,
        amount=total,
        params=clean,
    )
    engine.store.add(
        "checkout.session",
        data,
        req.scope,
        params=clean,
        line_items=items,
        api_version=req.info.api_version,
    )
    return 200, _expanded(req, data)


def _expanded(req: ApiRequest, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with the requested ``expand[]`` fields replaced by objects."""
    wanted = req.expand()
    if not wanted:
        return data
    result = dict(data)
    for path in wanted:
        if path == "line_items":
            result["line_items"] = _line_items_list(req, data["id"])
        elif path in ("customer", "subscription", "payment_intent"):
            if data[path]:
                result[path] = get_or_404(req, path, data[path]).data
        else:
            raise StripeError(f"This property cannot be expanded ({path}).", param="expand")
    return result


def _line_items_list(req: ApiRequest, session_id: str) -> dict[str, Any]:
    record = get_or_404(req, "checkout.session", session_id)
    url = f"/v1/checkout/sessions/{session_id}/line_items"
    return {"object": "list", "data": record.extra["line_items"], "has_more": False, "url": url}


@route("GET", "/v1/checkout/sessions/{id}")
def retrieve_session(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """Retrieve a session (expired on the way if its time has passed)."""
    req.allow()
    record = get_or_404(req, "checkout.session", req.args["id"])
    req.engine.expire_if_due(record)
    return 200, _expanded(req, record.data)


@route("GET", "/v1/checkout/sessions/{id}/line_items")
def list_line_items(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """A session's line items."""
    req.allow("ending_before", "limit", "starting_after")
    return 200, _line_items_list(req, req.args["id"])


@route("GET", "/v1/checkout/sessions")
def list_sessions(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """List sessions, newest first, optionally by status, customer, payment intent..."""
    req.allow(
        "created",
        "customer",
        "customer_details",
        "ending_before",
        "limit",
        "payment_intent",
        "payment_link",
        "starting_after",
        "status",
        "subscription",
    )
    params = req.params
    req.engine.tick()
    status = params.get("status")
    if status is not None:
        as_enum(status, "status", STATUSES)
    created = created_filter(params)
    fields = {
        key: params[key] for key in ("customer", "payment_intent", "subscription") if key in params
    }

    def wanted(record: Any) -> bool:
        data = record.data
        return (
            (status is None or data["status"] == status)
            and all(data[key] == value for key, value in fields.items())
            and created(record)
        )

    records = req.engine.store.iter("checkout.session", req.scope, wanted)
    return 200, paginate(req, records, "/v1/checkout/sessions")


@route("POST", "/v1/checkout/sessions/{id}/expire")
def expire_session(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """Expire an open session now; fails for complete or expired ones."""
    req.allow()
    record = get_or_404(req, "checkout.session", req.args["id"])
    return 200, req.engine.expire_session(record, req.info)
