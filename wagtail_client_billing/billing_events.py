"""Webhook handlers for billing requests: Checkout Session and subscription events.

They only ever *confirm* what Stripe says; the success-URL redirect never marks a
request paid. Each handler finds the request by the session's id, checks that the
event's mode matches the request's, and moves it with one conditional UPDATE.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q
from wagtail.log_actions import log

from . import billing, stripe_api
from .mail.queue import notify
from .models import BillingRequest, OutgoingEmail, WebhookEvent
from .webhooks import EventIgnored, register_handler

Status = BillingRequest.Status


def _request_for_session(event: WebhookEvent, session: dict[str, Any]) -> BillingRequest:
    request = (
        BillingRequest.objects.filter(checkout_session_id=session.get("id"))
        .select_related("site")
        .first()
    )
    if request is None:
        raise EventIgnored(f"no billing request has checkout session {session.get('id')!r}")
    if request.mode != event.mode:
        raise EventIgnored(f"{event.mode}-mode event for a {request.mode}-mode billing request")
    return request


def _subscription_id(session: dict[str, Any]) -> str:
    value = session.get("subscription") or ""
    return value.get("id", "") if isinstance(value, dict) else value


@register_handler("checkout.session.completed")
@register_handler("checkout.session.async_payment_succeeded")
def checkout_completed(event: WebhookEvent, payload: dict[str, Any]) -> None:
    """Paid (``stripe_api.is_paid``: cards at once, or a delayed payment that settled),
    or completed but processing until the delayed payment settles."""
    session = payload["data"]["object"]
    request = _request_for_session(event, session)
    if stripe_api.is_paid(session, event_type=event.type):
        billing.mark_paid(
            Q(pk=request.pk), subscription_id=_subscription_id(session), source=event.stripe_id
        )
        return
    # Completed but unpaid: a delayed method (bank debit...) settles later with
    # async_payment_succeeded or _failed. Remember the subscription meanwhile.
    BillingRequest.objects.filter(pk=request.pk, status=Status.PENDING).update(
        payment_state=BillingRequest.PaymentState.PROCESSING,
        subscription_id=_subscription_id(session) or request.subscription_id,
    )


@register_handler("checkout.session.async_payment_failed")
def async_payment_failed(event: WebhookEvent, payload: dict[str, Any]) -> None:
    """The delayed payment failed: recorded and shown; the request stays as it is."""
    request = _request_for_session(event, payload["data"]["object"])
    updated = (
        BillingRequest.objects.filter(pk=request.pk, status=Status.PENDING)
        .exclude(payment_state=BillingRequest.PaymentState.FAILED)
        .update(payment_state=BillingRequest.PaymentState.FAILED)
    )
    if updated:
        log(request, billing.ACTION_PAYMENT_FAILED, data={"event": event.stripe_id})


@register_handler("checkout.session.expired")
def checkout_expired(event: WebhookEvent, payload: dict[str, Any]) -> None:
    """Stripe expired the session: at ``expires_at`` (Expired), or because a delete asked
    it to (Deleted: the delete may not have finished yet when this arrives)."""
    request = _request_for_session(event, payload["data"]["object"])
    billing.end_with_expired_session(request, source=event.stripe_id)


def _subscription_changed(event: WebhookEvent, payload: dict[str, Any]) -> None:
    subscription = payload["data"]["object"]
    status = subscription.get("status") or ""
    requests = BillingRequest.objects.filter(
        subscription_id=subscription.get("id"), mode=event.mode
    )
    if not requests.exists():
        raise EventIgnored(f"no billing request has subscription {subscription.get('id')!r}")
    # Only the change into past_due tells the agency: Stripe's retries of the same
    # failure keep it past_due and send nothing more.
    newly_past_due = (
        list(requests.exclude(subscription_status="past_due")) if status == "past_due" else []
    )
    requests.update(subscription_status=status)
    for request in newly_past_due:
        notify(
            OutgoingEmail.Kind.PAYMENT_FAILED,
            request,
            key=f"past-due-{request.pk}-{event.stripe_id}",
        )


register_handler("customer.subscription.updated")(_subscription_changed)
register_handler("customer.subscription.deleted")(_subscription_changed)
