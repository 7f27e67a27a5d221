"""The event handlers and their ``HANDLERS`` table (docs/webhooks.md), run in the transaction
that claimed the event. Only Stripe's events, never the success-URL redirect, mark one paid."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wagtail.log_actions import log

from .. import billing, connections, stripe_api
from ..billing import subscriptions
from ..models import BillingRequest, StripeConnection, WebhookEvent
from ..stripe_api import field_of
from . import invoices, refunds
from .ignored import EventIgnored as EventIgnored

Handler = Callable[[WebhookEvent, Any], None]
Status = BillingRequest.Status


def match_connection(event: WebhookEvent) -> tuple[StripeConnection | None, str]:
    """The linked connection ``event`` is about, or None and a note saying why not."""
    mode, account = event.mode, event.account
    connection = connections.linked_connection(mode)
    if connection is not None and connection.direct:  # the platform's events have no account
        if account:
            return None, (
                f"event for connected account {account}, but {mode} mode uses the "
                "platform's own account (direct mode)"
            )
        return connection, ""
    if connection is not None and account == connection.account_id:
        return connection, ""
    unlinked = StripeConnection.objects.filter(unlinked_at__isnull=False)
    if account and unlinked.filter(mode=mode, account_id=account).exists():
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


#: Money taken: applied to a request we know even if its account is no longer linked.
MONEY_EVENTS = frozenset({stripe_api.EVENT_COMPLETED, stripe_api.EVENT_ASYNC_SUCCEEDED})


def money_for_own_request(event: WebhookEvent, obj: Any) -> bool:
    """Whether ``event`` reports money taken, given back, disputed or invoiced for a request
    of its own account and mode (not another's): applied even if that account is gone."""
    if event.type in refunds.HANDLERS or event.type in invoices.HANDLERS:
        try:
            if event.type in refunds.HANDLERS:
                refunds.request_for_payment(event, obj)
            else:
                invoices.request_of(event, obj, field_of(obj, "id"))
        except EventIgnored:
            return False
        return True
    session_id = field_of(obj, "id")
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


def account_linked(event: WebhookEvent, request: BillingRequest) -> bool:
    """Whether ``request``'s account is the linked one ``event`` was matched with."""
    linked = event.linked_connection
    return linked is not None and request.account_id == connections.request_account(linked)


def account_updated(event: WebhookEvent, account: Any) -> None:
    connection = connection_for(event)
    if field_of(account, "id") != connection.account_id:
        raise EventIgnored(
            f"the event's account object is {field_of(account, 'id')!r}, "
            f"not the linked account {connection.account_id}"
        )
    connections.apply_account_state(connection, stripe_api.account_state(account))


def account_deauthorized(event: WebhookEvent, application: Any) -> None:
    connections.unlink(connection_for(event), reason="deauthorized at Stripe")


def _request_for_session(event: WebhookEvent, session: Any) -> BillingRequest:
    session_id = field_of(session, "id")
    requests = BillingRequest.objects.filter(checkout_session_id=session_id).select_related("site")
    request = requests.first() if isinstance(session_id, str) else None
    if request is None:
        raise EventIgnored(f"no billing request has checkout session {session_id!r}")
    if request.mode != event.mode:
        raise EventIgnored(f"{event.mode}-mode event for a {request.mode}-mode billing request")
    return request


def checkout_completed(event: WebhookEvent, session: stripe_api.CheckoutSession) -> None:
    """Paid, or processing until a delayed payment settles (async_payment_*)."""
    request = _request_for_session(event, session)
    subscription_id = stripe_api.id_of(field_of(session, "subscription"))
    if stripe_api.is_paid(session, event_type=event.type):
        linked = account_linked(event, request)
        billing.mark_paid(request, session=session, source=event.stripe_id, account_linked=linked)
        return
    BillingRequest.objects.filter(pk=request.pk, status=Status.PENDING).update(
        payment_state=BillingRequest.PaymentState.PROCESSING,
        subscription_id=subscription_id or request.subscription_id,
    )


def async_payment_failed(event: WebhookEvent, session: stripe_api.CheckoutSession) -> None:
    """Recorded and shown; the request stays as it is."""
    request = _request_for_session(event, session)
    failed = BillingRequest.PaymentState.FAILED
    pending = BillingRequest.objects.filter(pk=request.pk, status=Status.PENDING)
    if pending.exclude(payment_state=failed).update(payment_state=failed):
        log(request, billing.ACTION_PAYMENT_FAILED, data={"event": event.stripe_id})


def checkout_expired(event: WebhookEvent, session: stripe_api.CheckoutSession) -> None:
    billing.end_with_expired_session(_request_for_session(event, session), source=event.stripe_id)


def subscription_changed(event: WebhookEvent, subscription: stripe_api.Subscription) -> None:
    subscription_id, status = field_of(subscription, "id"), field_of(subscription, "status") or ""
    if not isinstance(subscription_id, str) or not isinstance(status, str) or not status:
        raise EventIgnored("the subscription object has no valid id or status")
    if len(subscription_id) > 255 or len(status) > 32:
        raise EventIgnored("the subscription object has no valid id or status")
    requests = BillingRequest.objects.filter(subscription_id=subscription_id, mode=event.mode)
    if not requests.exists():
        # Before the session's completion named it: the request its metadata names, of the
        # event's account and mode, paid through no other subscription.
        pk = field_of(field_of(subscription, "metadata"), "wagtail_client_billing_request")
        requests = BillingRequest.objects.filter(
            pk=int(pk) if isinstance(pk, str) and pk.isdigit() else 0,
            mode=event.mode, account_id=event.account or "", subscription_id="",
        )  # fmt: skip
        if not requests.update(subscription_id=subscription_id):
            raise EventIgnored(f"no billing request has subscription {subscription_id!r}")
        requests = BillingRequest.objects.filter(subscription_id=subscription_id, mode=event.mode)
    subscriptions.apply(subscription, requests, event_id=event.stripe_id)
    subscriptions.read_again_soon(requests)


#: ``endpoints`` subscribes to exactly these.
HANDLERS: dict[str, Handler] = {
    "account.updated": account_updated,
    "account.application.deauthorized": account_deauthorized,
    stripe_api.EVENT_COMPLETED: checkout_completed,
    stripe_api.EVENT_ASYNC_SUCCEEDED: checkout_completed,
    "checkout.session.async_payment_failed": async_payment_failed,
    "checkout.session.expired": checkout_expired,
    "customer.subscription.created": subscription_changed,
    "customer.subscription.updated": subscription_changed,
    "customer.subscription.deleted": subscription_changed,
    **refunds.HANDLERS,
    **invoices.HANDLERS,
}
