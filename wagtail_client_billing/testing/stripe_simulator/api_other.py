"""Events, webhook endpoints, subscriptions, customers and payment intents."""

from __future__ import annotations

import re
from typing import Any

from . import objects, renewals
from .api_connect import _check_url
from .errors import StripeError, missing_param
from .forms import as_bool, as_list, as_str, metadata
from .routes import ApiRequest, created_filter, get_or_404, paginate, route
from .store import Record, new_id
from .webhooks import WebhookTarget, new_secret

EVENT_TYPE = re.compile(r"^(\*|[a-z_]+(\.[a-z_]+)+)$")


# Events -------------------------------------------------------------------------------


@route("GET", "/v1/events/{id}")
def retrieve_event(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """Retrieve an event of the caller's scope (platform or ``Stripe-Account``)."""
    req.allow()
    return 200, get_or_404(req, "event", req.args["id"]).data


@route("GET", "/v1/events")
def list_events(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """List events, newest first, filtered by ``type``, ``types[]`` or ``created``."""
    req.allow(
        "created", "delivery_success", "ending_before", "limit", "starting_after", "type", "types"
    )
    params = req.params
    if "type" in params and "types" in params:
        raise StripeError("You cannot specify both `type` and `types`.", param="types")
    wanted_types = set(as_list(params.get("types", []), "types"))
    pattern = params.get("type")
    created = created_filter(params)

    def wanted(record: Any) -> bool:
        event_type = record.data["type"]
        if wanted_types and event_type not in wanted_types:
            return False
        if pattern and not _type_matches(pattern, event_type):
            return False
        return created(record)

    records = req.engine.store.iter("event", req.scope, wanted)
    return 200, paginate(req, records, "/v1/events")


def _type_matches(pattern: str, event_type: str) -> bool:
    # Stripe allows one wildcard: ``type=checkout.session.*``.
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


# Webhook endpoints ----------------------------------------------------------------------


def _enabled_events(value: Any) -> list[str]:
    events = [as_str(item, "enabled_events") for item in as_list(value, "enabled_events")]
    if not events:
        raise missing_param("enabled_events")
    for index, event_type in enumerate(events):
        if not EVENT_TYPE.match(event_type):
            raise StripeError(
                f"Invalid enabled_events[{index}]: {event_type} is not a valid event type.",
                param=f"enabled_events[{index}]",
            )
    return events


@route("POST", "/v1/webhook_endpoints")
def create_webhook_endpoint(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """Create an endpoint; the response (only this one) carries its ``secret``."""
    req.allow("api_version", "connect", "description", "enabled_events", "metadata", "url")
    params = req.params
    if not params.get("url"):
        raise missing_param("url")
    if "enabled_events" not in params:
        raise missing_param("enabled_events")
    url = _check_url(params["url"], "url")
    enabled = _enabled_events(params["enabled_events"])
    connect = as_bool(params.get("connect", "false"), "connect")
    endpoint_id = new_id("we")
    data = objects.webhook_endpoint(
        endpoint_id=endpoint_id,
        livemode=req.livemode,
        created=req.engine.now(),
        url=url,
        enabled_events=enabled,
        metadata=metadata(params.get("metadata", {})),
        description=params.get("description") or None,
        api_version=params.get("api_version"),
    )
    secret = new_secret()
    target = WebhookTarget(
        id=endpoint_id,
        url=url,
        secret=secret,
        livemode=req.livemode,
        connect=connect,
        enabled_events=tuple(enabled),
        account=req.scope.account,
    )
    req.engine.store.add("webhook_endpoint", data, req.scope, target=target)
    return 200, {**data, "secret": secret}


@route("GET", "/v1/webhook_endpoints/{id}")
def retrieve_webhook_endpoint(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """Retrieve an endpoint (without its secret)."""
    req.allow()
    return 200, get_or_404(req, "webhook_endpoint", req.args["id"]).data


@route("GET", "/v1/webhook_endpoints")
def list_webhook_endpoints(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """List endpoints, newest first; the one given on the command line (``--webhook-url``,
    the demo's) is listed on the platform too, oldest, as Stripe lists the endpoint it is."""
    req.allow("ending_before", "limit", "starting_after")
    records = list(req.engine.store.iter("webhook_endpoint", req.scope))
    if req.scope.account is None:
        for target in req.engine.permanent_targets:
            if target.livemode in (None, req.livemode):
                data = objects.webhook_endpoint(
                    endpoint_id=target.id, livemode=req.livemode, created=0, url=target.url,
                    enabled_events=list(target.enabled_events), metadata={},
                    description="Given to the simulator (--webhook-url)", api_version=None,
                )  # fmt: skip
                records.append(Record("webhook_endpoint", data, req.scope, seq=0))
    return 200, paginate(req, records, "/v1/webhook_endpoints")


@route("POST", "/v1/webhook_endpoints/{id}")
def update_webhook_endpoint(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """Change an endpoint's URL, events, description, metadata or disable it."""
    req.allow("description", "disabled", "enabled_events", "metadata", "url")
    params = req.params
    with req.engine.lock:
        record = get_or_404(req, "webhook_endpoint", req.args["id"])
        data, target = record.data, record.extra["target"]
        if "url" in params:
            data["url"] = target.url = _check_url(params["url"], "url")
        if "enabled_events" in params:
            data["enabled_events"] = _enabled_events(params["enabled_events"])
            target.enabled_events = tuple(data["enabled_events"])
        if "disabled" in params:
            target.disabled = as_bool(params["disabled"], "disabled")
            data["status"] = "disabled" if target.disabled else "enabled"
        if "description" in params:
            data["description"] = params["description"] or None
        if "metadata" in params:
            data["metadata"].update(metadata(params["metadata"]))
        return 200, data


@route("DELETE", "/v1/webhook_endpoints/{id}")
def delete_webhook_endpoint(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """Delete an endpoint: it receives nothing more."""
    req.allow()
    with req.engine.lock:
        record = get_or_404(req, "webhook_endpoint", req.args["id"])
        del req.engine.store.records[record.id]
    return 200, objects.deleted("webhook_endpoint", record.id)


# Subscriptions, customers, payment intents ------------------------------------------------


@route("GET", "/v1/subscriptions/{id}")
def retrieve_subscription(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """Retrieve a subscription created by a paid subscription-mode session."""
    req.allow()
    return 200, get_or_404(req, "subscription", req.args["id"]).data


@route("GET", "/v1/subscriptions")
def list_subscriptions(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """List subscriptions (not canceled ones unless ``status=canceled`` or ``all``)."""
    req.allow("created", "customer", "ending_before", "limit", "starting_after", "status")
    params = req.params
    status = params.get("status")
    customer = params.get("customer")
    created = created_filter(params)

    def wanted(record: Any) -> bool:
        data = record.data
        if status is None and data["status"] == "canceled":
            return False
        if status not in (None, "all") and data["status"] != status:
            return False
        return (customer is None or data["customer"] == customer) and created(record)

    records = req.engine.store.iter("subscription", req.scope, wanted)
    return 200, paginate(req, records, "/v1/subscriptions")


@route("POST", "/v1/subscriptions/{id}")
def update_subscription(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """Update metadata or ``cancel_at_period_end``; emits ``customer.subscription.updated``."""
    req.allow("cancel_at_period_end", "metadata")
    params = req.params
    with req.engine.lock:
        record = get_or_404(req, "subscription", req.args["id"])
        data = record.data
        if data["status"] == "canceled":
            raise StripeError(
                "A canceled subscription can only update its cancellation_details and metadata."
            )
        previous: dict[str, Any] = {}
        if "metadata" in params:
            previous["metadata"] = dict(data["metadata"])
            data["metadata"].update(metadata(params["metadata"]))
        if "cancel_at_period_end" in params:
            flag = as_bool(params["cancel_at_period_end"], "cancel_at_period_end")
            previous.update(renewals.cancel_at_period_end(req.engine, data, flag))
        if previous:
            req.engine.emit("customer.subscription.updated", data, record.scope, req.info, previous)
        return 200, data


@route("DELETE", "/v1/subscriptions/{id}")
def cancel_subscription(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """Cancel now; emits ``customer.subscription.deleted``."""
    req.allow("cancellation_details", "invoice_now", "prorate")
    record = get_or_404(req, "subscription", req.args["id"])
    return 200, req.engine.cancel_subscription(record, req.info)


@route("GET", "/v1/customers/{id}")
def retrieve_customer(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """Retrieve a customer created by Checkout."""
    req.allow()
    return 200, get_or_404(req, "customer", req.args["id"]).data


@route("GET", "/v1/payment_intents/{id}")
def retrieve_payment_intent(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """Retrieve the payment intent of a paid payment-mode session."""
    req.allow()
    return 200, get_or_404(req, "payment_intent", req.args["id"]).data
