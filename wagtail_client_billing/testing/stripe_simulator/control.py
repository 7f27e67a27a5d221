"""The control API under ``/_simulator/``: drive a simulator running in another process.

JSON in, JSON out, no authentication (it only listens on loopback). Every route maps
onto a :class:`StripeSimulator` method; :mod:`.remote` wraps them for Python callers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from .errors import StripeError
from .faults import Fault
from .responses import Response, json_response

if TYPE_CHECKING:
    from .simulator import StripeSimulator

Body = dict[str, Any]
ControlHandler = Callable[["StripeSimulator", Body, dict[str, str], dict[str, str]], Any]
ROUTES: list[tuple[str, re.Pattern[str], ControlHandler]] = []


def control(method: str, pattern: str) -> Callable[[ControlHandler], ControlHandler]:
    """Register a control route; ``{name}`` captures one path segment."""
    regex = re.compile("^/_simulator" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")

    def register(handler: ControlHandler) -> ControlHandler:
        ROUTES.append((method, regex, handler))
        return handler

    return register


def handle(sim: StripeSimulator, method: str, path: str, query: str, body: bytes) -> Response:
    """Dispatch one control request."""
    try:
        payload = json.loads(body or b"{}")
        if not isinstance(payload, dict):
            raise ValueError("The body must be a JSON object.")
    except ValueError as exc:
        return json_response(400, {"error": {"message": f"Invalid JSON body: {exc}"}})
    params = {key: values[-1] for key, values in parse_qs(query).items()}
    for route_method, regex, handler in ROUTES:
        match = regex.match(path)
        if match and route_method == method:
            try:
                return json_response(200, handler(sim, payload, params, match.groupdict()))
            except StripeError as exc:
                return json_response(exc.status, exc.body())
            except TimeoutError as exc:
                return json_response(408, {"error": {"message": str(exc)}})
            except (TypeError, ValueError, KeyError) as exc:
                return json_response(400, {"error": {"message": str(exc)}})
    return json_response(404, {"error": {"message": f"No control route {method} {path}."}})


def _flag(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    return str(value).lower() in ("1", "true", "yes")


@control("GET", "/health")
def health(sim: StripeSimulator, body: Body, query: dict[str, str], args: dict[str, str]) -> Any:
    """Liveness, URL and simulated time."""
    return {"status": "ok", "url": sim.url, "now": sim.now()}


@control("POST", "/reset")
def reset(sim: StripeSimulator, body: Body, query: dict[str, str], args: dict[str, str]) -> Any:
    """Forget everything (objects, events, deliveries, faults); back to real time."""
    sim.reset()
    return {"reset": True, "now": sim.now()}


@control("GET", "/clock")
def get_clock(sim: StripeSimulator, body: Body, query: dict[str, str], args: dict[str, str]) -> Any:
    """The simulated time and its offset from real time."""
    return {"now": sim.now(), "offset": sim.engine.store.clock.offset}


@control("POST", "/clock")
def move_clock(
    sim: StripeSimulator, body: Body, query: dict[str, str], args: dict[str, str]
) -> Any:
    """``{"advance": seconds}`` or ``{"to": timestamp}``; due expiries are applied."""
    if "advance" in body:
        now = sim.advance_clock(float(body["advance"]))
    elif "to" in body:
        now = sim.set_clock(float(body["to"]))
    else:
        raise ValueError('Send {"advance": seconds} or {"to": timestamp}.')
    return {"now": now, "offset": sim.engine.store.clock.offset}


@control("GET", "/faults")
def list_faults(
    sim: StripeSimulator, body: Body, query: dict[str, str], args: dict[str, str]
) -> Any:
    """Pending API faults and webhook faults."""
    faults = [fault.as_dict() for fault in sim.engine.faults.active()]
    return {"faults": faults, "webhooks": sim.dispatcher.pending_faults()}


@control("POST", "/faults")
def add_fault(sim: StripeSimulator, body: Body, query: dict[str, str], args: dict[str, str]) -> Any:
    """``{"kind": "error"|"hang", "method", "path", "times", "status", "seconds"}`` or
    ``{"kind": "drop_webhooks"|"duplicate_webhooks", "times"}``."""
    kind = body.get("kind")
    times = int(body.get("times", 1))
    if kind == "drop_webhooks":
        sim.drop_next_webhooks(times)
        return {"kind": kind, "times": times}
    if kind == "duplicate_webhooks":
        sim.duplicate_next_webhooks(times)
        return {"kind": kind, "times": times}
    allowed = {"kind", "method", "path", "times", "status", "seconds", "message"}
    unknown = set(body) - allowed
    if unknown:
        raise ValueError(f"Unknown fault fields: {sorted(unknown)}.")
    return sim.engine.faults.add(Fault(**{**body, "times": times})).as_dict()


@control("DELETE", "/faults")
def clear_faults(
    sim: StripeSimulator, body: Body, query: dict[str, str], args: dict[str, str]
) -> Any:
    """Remove every pending fault."""
    sim.clear_faults()
    return {"cleared": True}


@control("POST", "/config")
def configure(sim: StripeSimulator, body: Body, query: dict[str, str], args: dict[str, str]) -> Any:
    """Change settings (retry back-off, async settlement...) until the next reset."""
    return sim.configure(**body)


@control("GET", "/deliveries")
def deliveries(
    sim: StripeSimulator, body: Body, query: dict[str, str], args: dict[str, str]
) -> Any:
    """The delivery log, optionally filtered by ``event_type``, ``event_id``, ``url``."""
    log = [
        delivery.as_dict()
        for delivery in sim.deliveries(query.get("event_type"))
        if all(
            str(getattr(delivery, key)) == query[key] for key in ("event_id", "url") if key in query
        )
    ]
    return {"deliveries": log}


@control("GET", "/deliveries/wait")
def wait_deliveries(
    sim: StripeSimulator, body: Body, query: dict[str, str], args: dict[str, str]
) -> Any:
    """Block until deliveries match (``event_type``, ``event_id``, ``url``, ``ok``,
    ``count``, ``timeout``); 408 when they do not come in time."""
    found = sim.wait_for_delivery(
        query.get("event_type"),
        event_id=query.get("event_id"),
        url=query.get("url"),
        ok=_flag(query.get("ok", "true")) if query.get("ok") != "any" else None,
        count=int(query.get("count", 1)),
        timeout=min(float(query.get("timeout", 5)), 60),
    )
    return {"deliveries": [delivery.as_dict() for delivery in found]}


@control("GET", "/events")
def events(sim: StripeSimulator, body: Body, query: dict[str, str], args: dict[str, str]) -> Any:
    """Every event, all modes and accounts, oldest first (optionally one ``type``)."""
    return {"events": sim.events(query.get("type"))}


@control("POST", "/webhooks")
def add_webhook(
    sim: StripeSimulator, body: Body, query: dict[str, str], args: dict[str, str]
) -> Any:
    """``{"url", "secret"?, "connect"?, "livemode"?, "enabled_events"?}``: a new endpoint
    until the next reset; returns its id and signing secret."""
    target = sim.add_webhook(
        body["url"],
        body.get("secret"),
        connect=_flag(body.get("connect")),
        livemode=_flag(body.get("livemode")),
        enabled_events=body.get("enabled_events", ["*"]),
    )
    return {"id": target.id, "url": target.url, "secret": target.secret}


@control("POST", "/checkout/sessions/{id}/complete")
def complete(sim: StripeSimulator, body: Body, query: dict[str, str], args: dict[str, str]) -> Any:
    """Pay a session as the hosted page does (``{"delayed": true}`` for a delayed method)."""
    return sim.complete_checkout(
        args["id"], delayed=bool(body.get("delayed")), email=body.get("email")
    )


@control("POST", "/checkout/sessions/{id}/settle")
def settle(sim: StripeSimulator, body: Body, query: dict[str, str], args: dict[str, str]) -> Any:
    """Settle a delayed payment (``{"succeed": false}`` to fail it)."""
    return sim.settle_async(args["id"], succeed=body.get("succeed", True) is not False)


@control("POST", "/checkout/sessions/{id}/expire")
def expire(sim: StripeSimulator, body: Body, query: dict[str, str], args: dict[str, str]) -> Any:
    """Expire an open session now."""
    return sim.expire_session(args["id"])


@control("POST", "/accounts/{id}/onboard")
def onboard(sim: StripeSimulator, body: Body, query: dict[str, str], args: dict[str, str]) -> Any:
    """Complete a connected account's onboarding."""
    return sim.complete_onboarding(args["id"])


@control("POST", "/accounts/{id}/deauthorize")
def deauthorize(
    sim: StripeSimulator, body: Body, query: dict[str, str], args: dict[str, str]
) -> Any:
    """The account disconnects the platform (``account.application.deauthorized``)."""
    return sim.deauthorize(args["id"])
