"""Refund and dispute events: refunds made here or in Stripe's dashboard, disputes opened
and closed by the client's bank. Applied to the request whose payment they concern, in
the event's mode and account, linked or not (money moved is never hidden)."""

from __future__ import annotations

from typing import Any

from django.db.models import Q

from ..billing import refunds
from ..billing.states import ACTION_DISPUTED, record
from ..mail.queue import notify
from ..models import BillingRequest, OutgoingEmail, Refund, WebhookEvent
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


def checked_refund(refund: Any) -> Any:
    """``refund`` if it is shaped as Stripe's (a signed body may hold anything); else the
    event is ignored, saying what is wrong, rather than failing on the database's refusal."""
    stripe_id, amount = field_of(refund, "id"), field_of(refund, "amount")
    currency, reason = field_of(refund, "currency"), field_of(refund, "reason") or ""
    valid = {
        "id": isinstance(stripe_id, str) and 3 <= len(stripe_id) <= 200,
        "amount": type(amount) is int and 0 <= amount < 10**15,
        "currency": isinstance(currency, str) and len(currency) == 3,
        "status": field_of(refund, "status") in Refund.Status.values,
        "reason": reason in ("", *Refund.Reason.values),
    }
    if wrong := [name for name, ok in valid.items() if not ok]:
        raise EventIgnored(f"the refund object has no valid {', '.join(wrong)}")
    return refund


def refund_changed(event: WebhookEvent, refund: Any) -> None:
    """``refund.created`` / ``refund.updated`` / ``refund.failed``: the refund as Stripe has it."""
    refunds.apply(checked_refund(refund), request=request_for_payment(event, refund))


def charge_refunded(event: WebhookEvent, charge: Any) -> None:
    """``charge.refunded``: each refund the charge lists (each also has its own event)."""
    listed = field_of(field_of(charge, "refunds"), "data")
    if not listed or not isinstance(listed, list):
        raise EventIgnored("the charge lists no refunds: they come with refund.* events")
    request = request_for_payment(event, charge)
    for refund in listed:
        refunds.apply(checked_refund(refund), request=request)


def dispute_changed(event: WebhookEvent, dispute: Any) -> None:
    """``charge.dispute.*``: the request shows it; the first event of it (whichever arrives
    first) is recorded and told once; an ended dispute is never reopened by a late event."""
    status, dispute_id = field_of(dispute, "status"), field_of(dispute, "id")
    if not isinstance(status, str) or not 0 < len(status) <= 32:
        raise EventIgnored("the dispute object has no valid status")
    if not isinstance(dispute_id, str) or not 0 < len(dispute_id) <= 200:
        raise EventIgnored("the dispute object has no valid id")
    request = request_for_payment(event, dispute)
    rows = BillingRequest.objects.filter(pk=request.pk)
    if rows.filter(dispute_status="").update(dispute_status=status):  # the first word of it
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
