"""The event handlers and their table, ``HANDLERS``: one place lists every event type
the app applies (and ``endpoints`` subscribes the Stripe endpoint to exactly these).

A handler gets the stored event and its ``data.object`` as Stripe's typed object
(``stripe_api.construct_event``). Handlers only ever *confirm* what Stripe says: the
success-URL redirect never marks a request paid. They run inside the transaction that
claimed the event (``processing``); ``EventIgnored`` undoes their writes and stores the
event as ignored, with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import Q
from wagtail.log_actions import log

from .. import agency, billing, stripe_api
from ..mail.queue import notify
from ..models import BillingRequest, OutgoingEmail, StripeConnection, WebhookEvent
from ..stripe_api import field_of

Handler = Callable[[WebhookEvent, Any], None]
Status = BillingRequest.Status


class EventIgnored(Exception):
    """Raised by a handler: store the event as ignored, with the message as its note."""


# Whose event is it? ------------------------------------------------------------------


def match_connection(event: WebhookEvent) -> tuple[StripeConnection | None, str]:
    """The linked connection ``event`` is about, or None and a note saying why not."""
    mode = event.mode
    connection = agency.linked_connection(mode)
    account = event.account
    if connection is not None and connection.direct:
        # Direct mode: the platform's own account takes the money; its events carry no
        # ``account``, and Connect events about some other account are not ours.
        if account:
            return None, (
                f"event for connected account {account}, but {mode} mode uses the "
                "platform's own account (direct mode)"
            )
        return connection, ""
    if connection is not None and account == connection.account_id:
        return connection, ""
    if (
        account
        and StripeConnection.objects.filter(
            mode=mode, account_id=account, unlinked_at__isnull=False
        ).exists()
    ):
        return None, f"account {account} was unlinked"
    if connection is None:
        return None, f"no account is linked in {mode} mode"
    if not account:
        return None, (
            f"event of the platform account, but {mode} mode uses connected account "
            f"{connection.account_id}"
        )
    return None, (
        f"event for account {account}, but the {mode}-mode linked account is "
        f"{connection.account_id}"
    )


#: Events that report money taken. They are applied to a request we know whatever its
#: account's state now (unlinked, replaced, deauthorized): the client has paid, and
#: ignoring it would leave the request Pending forever. Other events of an account that
#: is no longer linked stay ignored.
MONEY_EVENTS = frozenset({stripe_api.EVENT_COMPLETED, stripe_api.EVENT_ASYNC_SUCCEEDED})


def money_for_own_request(event: WebhookEvent, session: Any) -> bool:
    """Whether ``event`` reports money for a request made with the event's own account.

    Only the request's own account may settle it: the event's account (none for the
    platform's own, direct mode) must be the one the request stored, and its mode the
    request's mode. The signature is verified already; this keeps one account's events
    from ever touching another account's request.
    """
    session_id = field_of(session, "id")
    if event.type not in MONEY_EVENTS or not isinstance(session_id, str) or not session_id:
        return False
    return BillingRequest.objects.filter(
        checkout_session_id=session_id, mode=event.mode, account_id=event.account or ""
    ).exists()


def connection_for(event: WebhookEvent) -> StripeConnection:
    """The linked connection ``event`` is about; raise ``EventIgnored`` if there is none."""
    connection, note = match_connection(event)
    if connection is None:
        raise EventIgnored(note)
    return connection


# The agency's account ------------------------------------------------------------------


def account_updated(event: WebhookEvent, account: Any) -> None:
    """Store the linked account's new state (onboarding done, restricted, ready...)."""
    connection = connection_for(event)
    if field_of(account, "id") != connection.account_id:
        raise EventIgnored(
            f"the event's account object is {field_of(account, 'id')!r}, "
            f"not the linked account {connection.account_id}"
        )
    agency.apply_account_state(connection, stripe_api.account_state(account))


def account_deauthorized(event: WebhookEvent, application: Any) -> None:
    """The agency disconnected this platform at Stripe: forget the connection."""
    agency.unlink(connection_for(event), reason="deauthorized at Stripe")


# Billing requests: Checkout Sessions and subscriptions -----------------------------------


def _request_for_session(event: WebhookEvent, session: Any) -> BillingRequest:
    session_id = field_of(session, "id")
    request = (
        BillingRequest.objects.filter(checkout_session_id=session_id).select_related("site").first()
        if isinstance(session_id, str)
        else None
    )
    if request is None:
        raise EventIgnored(f"no billing request has checkout session {session_id!r}")
    if request.mode != event.mode:
        raise EventIgnored(f"{event.mode}-mode event for a {request.mode}-mode billing request")
    return request


def checkout_completed(event: WebhookEvent, session: stripe_api.CheckoutSession) -> None:
    """Paid (``stripe_api.is_paid``: cards at once, or a delayed payment that settled),
    or completed but processing until the delayed payment settles."""
    request = _request_for_session(event, session)
    subscription_id = stripe_api.id_of(field_of(session, "subscription"))
    if stripe_api.is_paid(session, event_type=event.type):
        billing.mark_paid(Q(pk=request.pk), subscription_id=subscription_id, source=event.stripe_id)
        return
    # Completed but unpaid: a delayed method (bank debit...) settles later with
    # async_payment_succeeded or _failed. Remember the subscription meanwhile.
    BillingRequest.objects.filter(pk=request.pk, status=Status.PENDING).update(
        payment_state=BillingRequest.PaymentState.PROCESSING,
        subscription_id=subscription_id or request.subscription_id,
    )


def async_payment_failed(event: WebhookEvent, session: stripe_api.CheckoutSession) -> None:
    """The delayed payment failed: recorded and shown; the request stays as it is."""
    request = _request_for_session(event, session)
    updated = (
        BillingRequest.objects.filter(pk=request.pk, status=Status.PENDING)
        .exclude(payment_state=BillingRequest.PaymentState.FAILED)
        .update(payment_state=BillingRequest.PaymentState.FAILED)
    )
    if updated:
        log(request, billing.ACTION_PAYMENT_FAILED, data={"event": event.stripe_id})


def checkout_expired(event: WebhookEvent, session: stripe_api.CheckoutSession) -> None:
    """Stripe expired the session: at ``expires_at`` (Expired), or because a delete asked
    it to (Deleted: the delete may not have finished yet when this arrives)."""
    billing.end_with_expired_session(_request_for_session(event, session), source=event.stripe_id)


def subscription_changed(event: WebhookEvent, subscription: stripe_api.Subscription) -> None:
    """Store the subscription's status; tell the agency when it becomes past due."""
    subscription_id, status = field_of(subscription, "id"), field_of(subscription, "status") or ""
    if not isinstance(subscription_id, str) or not isinstance(status, str):
        raise EventIgnored("the subscription object has no valid id or status")
    requests = BillingRequest.objects.filter(subscription_id=subscription_id, mode=event.mode)
    if not requests.exists():
        raise EventIgnored(f"no billing request has subscription {subscription_id!r}")
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


#: Event type -> the function that applies it; ``endpoints`` subscribes to exactly these.
HANDLERS: dict[str, Handler] = {
    "account.updated": account_updated,
    "account.application.deauthorized": account_deauthorized,
    stripe_api.EVENT_COMPLETED: checkout_completed,
    stripe_api.EVENT_ASYNC_SUCCEEDED: checkout_completed,
    "checkout.session.async_payment_failed": async_payment_failed,
    "checkout.session.expired": checkout_expired,
    "customer.subscription.updated": subscription_changed,
    "customer.subscription.deleted": subscription_changed,
}
