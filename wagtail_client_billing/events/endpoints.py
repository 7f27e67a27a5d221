"""Register this install's webhook endpoint at Stripe, for the event types it handles."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.urls import reverse

from .. import stripe_api
from .handlers import HANDLERS

WEBHOOK_URL_NAME = "wagtail_client_billing:stripe_webhook"


@dataclass(frozen=True)
class RegisteredEndpoint:
    id: str
    secret: str  # Stripe shows it only once
    events: tuple[str, ...]
    existing: bool = False  # already there: nothing was created (and no secret is known)
    added: tuple[str, ...] = ()  # event types an existing endpoint was given (a new version's)


def handled_event_types() -> tuple[str, ...]:
    return tuple(sorted(HANDLERS))


def default_webhook_url() -> str:
    base = (getattr(settings, "WAGTAILADMIN_BASE_URL", "") or "").rstrip("/")
    return f"{base}{reverse(WEBHOOK_URL_NAME)}" if base else ""


def url_problem(url: str, mode: str) -> str:
    """Why Stripe cannot deliver ``mode`` events to ``url``, or ""."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"{url!r} is not an absolute http(s) URL."
    if mode == "live" and parts.scheme != "https":  # Stripe sends live events over HTTPS only
        return f"Live-mode webhook URLs must use https: {url}"
    return ""


def register_webhook_endpoint(mode: str, url: str, *, connect: bool) -> RegisteredEndpoint:
    """Create the endpoint at Stripe for ``mode`` unless one already sends to ``url``; with
    Connect, events about the agency's account reach only an endpoint created with
    ``connect=true`` (its own secret)."""
    events = handled_event_types()
    # A second endpoint for the same URL would send every event twice, the copy signed
    # with a secret this site does not know (a failed delivery each time).
    for endpoint in stripe_api.list_webhook_endpoints(mode):
        if endpoint.get("url") == url and endpoint.get("status") != "disabled":
            enabled = endpoint.get("enabled_events") or []
            added = () if "*" in enabled else tuple(e for e in events if e not in enabled)
            if added:  # an upgrade handles more: the endpoint must send them
                stripe_api.update_webhook_endpoint_events(
                    mode, endpoint["id"], events=sorted({*enabled, *added})
                )
            return RegisteredEndpoint(
                id=endpoint["id"], secret="", events=events, existing=True, added=added
            )
    endpoint_id, secret = stripe_api.create_webhook_endpoint(
        mode, url=url, events=events, connect=connect
    )
    return RegisteredEndpoint(id=endpoint_id, secret=secret, events=events)
