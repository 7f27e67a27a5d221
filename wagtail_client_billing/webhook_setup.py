"""Register this install's webhook endpoint at Stripe."""

from __future__ import annotations

from dataclasses import dataclass

from . import stripe_api


@dataclass(frozen=True)
class RegisteredEndpoint:
    """A webhook endpoint as Stripe registered it; ``secret`` is shown only once."""

    id: str
    url: str
    secret: str
    connect: bool
    events: tuple[str, ...]


def handled_event_types() -> tuple[str, ...]:
    """Every event type the app has a handler for."""
    from .webhooks import HANDLERS

    return tuple(sorted(HANDLERS))


def register_webhook_endpoint(mode: str, url: str, *, connect: bool) -> RegisteredEndpoint:
    """Create the endpoint at Stripe for ``mode``: a Connect endpoint when Connect is used.

    With Connect, events about the agency's account (checkout sessions, ``account.updated``)
    reach only an endpoint created with ``connect=true``, with a signing secret of its own.
    """
    events = handled_event_types()
    endpoint_id, secret = stripe_api.create_webhook_endpoint(
        mode, url=url, events=events, connect=connect
    )
    return RegisteredEndpoint(
        id=endpoint_id, url=url, secret=secret, connect=connect, events=events
    )
