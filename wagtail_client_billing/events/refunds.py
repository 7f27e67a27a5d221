"""Refund and dispute events: refunds made here or in Stripe's dashboard, disputes opened
and closed by the client's bank. Applied to the request whose payment they concern, in
the event's mode and account, linked or not (money moved is never hidden)."""

from __future__ import annotations

from typing import Any

from django.db.models import Q

from ..billing import refunds
from ..billing.states import ACTION_DISPUTED, record
from ..mail.queue import notify
from ..models import BillingRequest, OutgoingEmail, WebhookEvent
from ..stripe_api import field_of, id_of
from .ignored import EventIgnored

#: Stripe's dispute statuses that end it: a late event of an open one never undoes them.
DISPUTE_ENDED = frozenset({"won", "lost", "warning_closed", "prevented"})


def request_for_payment(event: WebhookEvent, obj: Any) -> BillingRequest:
    """The request whose payment ``obj`` (a refund, charge or dispute) concerns."""
    intent, customer = id_of(field_of(obj, "payment_intent")), id_of(field_of(obj, "customer"))
    ours = BillingRequest.objects.filter(mode=event.mode, account_id=event.account or "")
    match = Q()
    if intent:
        match |= Q(payment_intent_id=intent) | Q(invoices__payment_intent_id=intent)
        match |= Q(refunds__payment_intent_id=intent)
    if customer:  # a subscription's renewal, whose intent we may not have seen
        match |= Q(customer_id=customer, subscription_id__gt="")
    request = (
        ours.filter(match).select_related("site").order_by("-paid_at").first() if match else None
    )
    if request is None:
        raise EventIgnored(
            f"no billing request of this account has payment {intent or '(none)'} "
            f"or customer {customer or '(none)'}"
        )
    return request


def refund_changed(event: WebhookEvent, refund: Any) -> None:
    """``refund.created`` / ``refund.updated`` / ``refund.failed``: the refund as Stripe has it."""
    if not isinstance(field_of(refund, "id"), str):
        raise EventIgnored("the refund object has no id")
    refunds.apply(refund, request=request_for_payment(event, refund))


def charge_refunded(event: WebhookEvent, charge: Any) -> None:
    """``charge.refunded``: each refund the charge lists (each also has its own event)."""
    listed = field_of(field_of(charge, "refunds"), "data")
    if not listed:
        raise EventIgnored("the charge lists no refunds: they come with refund.* events")
    request = request_for_payment(event, charge)
    for refund in listed:
        refunds.apply(refund, request=request)


def dispute_changed(event: WebhookEvent, dispute: Any) -> None:
    """``charge.dispute.*``: the request shows it; the first event of it (whichever arrives
    first) is recorded and told once; an ended dispute is never reopened by a late event."""
    status = field_of(dispute, "status")
    if not isinstance(status, str) or not status:
        raise EventIgnored("the dispute object has no status")
    request = request_for_payment(event, dispute)
    rows = BillingRequest.objects.filter(pk=request.pk)
    if rows.filter(dispute_status="").update(dispute_status=status):  # the first word of it
        dispute_id = field_of(dispute, "id")
        record(request, ACTION_DISPUTED, dispute=dispute_id, reason=field_of(dispute, "reason"))
        notify(OutgoingEmail.Kind.DISPUTED, request, key=f"dispute-{dispute_id}")
    else:
        rows.exclude(dispute_status__in=DISPUTE_ENDED).update(dispute_status=status)


HANDLERS = {
    "refund.created": refund_changed,
    "refund.updated": refund_changed,
    "refund.failed": refund_changed,
    "charge.refunded": charge_refunded,
    "charge.dispute.created": dispute_changed,
    "charge.dispute.updated": dispute_changed,
    "charge.dispute.closed": dispute_changed,
}
