"""Refunds: money given back for a Paid request's payment, never more than was paid.

A refund made here is first saved ``sending`` with its amount held against what remains
(under the request's row lock), then asked of Stripe with the refund's own idempotency
key, then updated with Stripe's answer: so a double click, two people at once, or a retry
after Stripe timed out make one refund. Refunds made in Stripe's dashboard arrive as
webhooks (``events.refunds``) and are recorded the same way."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from .. import connections, stripe_api
from ..mail.queue import notify
from ..models import BillingRequest, OutgoingEmail, Refund
from ..money import format_money
from .errors import BillingError
from .states import ACTION_REFUND, record

logger = logging.getLogger("wagtail_client_billing.billing")

Status = BillingRequest.Status


@dataclass(frozen=True)
class Payment:
    """The payment a refund gives money back from: a one-time payment, or a subscription's
    latest (``invoice`` names its invoice; its intent may only be known after asking Stripe)."""

    intent: str
    amount: int
    currency: str
    refunded: int
    invoice: str = ""

    @property
    def remaining(self) -> int:
        return max(self.amount - self.refunded, 0)


def held(intent: str) -> int:
    """What refunds of the payment ``intent`` give back or are about to."""
    if not intent:
        return 0
    refunds = Refund.objects.filter(payment_intent_id=intent, status__in=Refund.HELD)
    return refunds.aggregate(total=Sum("amount"))["total"] or 0


def latest_payment(request: BillingRequest) -> Payment | None:
    """The payment of ``request`` that can be refunded, or None (not paid, or not known yet)."""
    if request.status != Status.PAID:
        return None
    if not request.is_recurring:
        if not request.payment_intent_id and not request.checkout_session_id:
            return None
        intent = request.payment_intent_id  # "" if paid before this version kept it
        return Payment(intent, request.amount, request.currency, held(intent))
    invoice = request.invoices.filter(status="paid", amount_paid__gt=0).first()
    if invoice is None:
        return None
    intent = invoice.payment_intent_id
    return Payment(intent, invoice.amount_paid, invoice.currency, held(intent), invoice.stripe_id)


def _payment_intent(request: BillingRequest, payment: Payment) -> Payment:
    """``payment`` with its intent: a subscription invoice's, or a one-time payment's made
    before this version kept it, is asked of Stripe once, then kept."""
    if payment.intent:
        return payment
    if payment.invoice:
        intent = stripe_api.invoice_payment_intent(
            request.mode, account_id=request.account_id, invoice_id=payment.invoice
        )
        request.invoices.filter(stripe_id=payment.invoice).update(payment_intent_id=intent)
    else:
        session = stripe_api.retrieve_checkout_session(
            request.mode,
            account_id=request.account_id,
            session_id=request.checkout_session_id or "",
        )
        intent = stripe_api.id_of(session.payment_intent)
        BillingRequest.objects.filter(pk=request.pk).update(payment_intent_id=intent)
    if not intent:
        raise BillingError(_("Stripe has no payment of this request to refund."))
    return Payment(intent, payment.amount, payment.currency, held(intent), payment.invoice)


def refund(
    request: BillingRequest, *, amount: int, reason: str, key: str, user: Any = None
) -> Refund:
    """Give ``amount`` (minor units) of ``request``'s latest payment back: the refund, as
    Stripe left it. ``key`` (the form's) makes a resubmitted form the same refund."""
    earlier = Refund.objects.filter(key=key).first()
    if earlier is None:
        payment = latest_payment(request)
        if payment is None:
            raise BillingError(_("Only a paid billing request's payment can be refunded."))
        if not connections.account_is_linked(request):
            raise BillingError(
                _("The Stripe account that took this payment is no longer linked: refund it there.")
            )
        payment = _payment_intent(request, payment)
        earlier = _reserve(request, payment, amount=amount, reason=reason, key=key, user=user)
    if earlier.status != Refund.Status.SENDING:
        return earlier  # this form was sent before, and Stripe answered then
    return send(earlier)


def _reserve(
    request: BillingRequest, payment: Payment, *, amount: int, reason: str, key: str, user: Any
) -> Refund:
    """Save the refund ``sending``, if what remains of the payment covers it."""
    with transaction.atomic():
        # A write first: it takes the row's lock (PostgreSQL) or the database's (SQLite), so
        # two refunds of one request are weighed one after the other.
        rows = BillingRequest.objects.filter(pk=request.pk, status=Status.PAID)
        if not rows.update(refunded_amount=F("refunded_amount")):
            raise BillingError(_("Only a paid billing request's payment can be refunded."))
        if earlier := Refund.objects.filter(key=key).first():  # the same form, meanwhile
            return earlier
        remaining = payment.amount - held(payment.intent)
        if amount <= 0 or amount > remaining:
            raise RefundTooLarge(payment, remaining)
        made = Refund.objects.create(
            billing_request=request, key=key, payment_intent_id=payment.intent, amount=amount,
            currency=payment.currency, reason=reason, status=Refund.Status.SENDING,
            created_by=user if getattr(user, "pk", None) else None,
        )  # fmt: skip
        update_total(request)
    return made


class RefundTooLarge(BillingError):
    def __init__(self, payment: Payment, remaining: int) -> None:
        paid = format_money(payment.amount, payment.currency)
        if remaining <= 0:
            message = _("The %(paid)s paid has already been refunded in full.") % {"paid": paid}
        else:
            message = _(
                "At most %(remaining)s can be refunded: %(paid)s was paid, %(refunded)s of it "
                "already refunded."
            ) % {
                "remaining": format_money(remaining, payment.currency),
                "paid": paid,
                "refunded": format_money(payment.amount - remaining, payment.currency),
            }
        super().__init__(message)


def send(refund: Refund) -> Refund:
    """Ask Stripe for a refund saved ``sending`` (again: the same key, so the same refund)."""
    request = refund.billing_request
    try:
        made = stripe_api.create_refund(
            request.mode,
            account_id=request.account_id,
            payment_intent=refund.payment_intent_id,
            amount=refund.amount,
            reason=refund.reason,
            metadata={"wagtail_client_billing_refund": refund.key, **metadata_of(request)},
            idempotency_key=f"wcb-refund-{refund.key}",
        )
    except stripe_api.StripeRefused as error:
        # Nothing was refunded: the amount is free again, the reason kept.
        with transaction.atomic():
            Refund.objects.filter(pk=refund.pk, status=Refund.Status.SENDING).update(
                status=Refund.Status.FAILED, error=error.user_message
            )
            update_total(request)
        raise
    # No answer (StripeUnavailable) leaves it ``sending``: held, shown, sent again on a retry.
    return apply(made, request=request)


def metadata_of(request: BillingRequest) -> dict[str, str]:
    return {"wagtail_client_billing_request": str(request.pk), "site": str(request.site_id)}


def apply(stripe_refund: Any, *, request: BillingRequest, user: Any = None) -> Refund:
    """Record what Stripe says of a refund (ours, or made in its dashboard): its row made or
    updated, the request's refunded total, and once, the audit entry and the notification."""
    field = stripe_api.field_of
    stripe_id, status = field(stripe_refund, "id"), field(stripe_refund, "status") or ""
    key = field(field(stripe_refund, "metadata"), "wagtail_client_billing_refund")
    with transaction.atomic():
        BillingRequest.objects.filter(pk=request.pk).update(refunded_amount=F("refunded_amount"))
        row = Refund.objects.filter(stripe_id=stripe_id).first()
        if row is None and key:
            row = Refund.objects.filter(key=key, billing_request=request).first()
        new = row is None or row.stripe_id is None
        if row is None:  # made in Stripe's dashboard (or by another tool)
            row = Refund.objects.create(
                billing_request=request, key=f"stripe-{stripe_id}", stripe_id=stripe_id,
                payment_intent_id=stripe_api.id_of(field(stripe_refund, "payment_intent")),
                amount=field(stripe_refund, "amount") or 0,
                currency=field(stripe_refund, "currency") or request.currency,
                reason=field(stripe_refund, "reason") or "", status=status,
            )  # fmt: skip
        elif status and (row.status != status or new) and _forward(row.status, status):
            Refund.objects.filter(pk=row.pk).update(stripe_id=stripe_id, status=status, error="")
            row.stripe_id, row.status = stripe_id, status
        update_total(request)
        if new and status in Refund.HELD:
            by_stripe = row.key.startswith("stripe-")
            record(
                request, ACTION_REFUND, user=user or row.created_by, refund=row.stripe_id,
                refunded=row.amount, reason=row.reason, dashboard=by_stripe,
            )  # fmt: skip
            notify(OutgoingEmail.Kind.REFUNDED, request, key=f"refund-{row.pk}")
    return row


#: A refund's statuses in the order Stripe moves them: an older event never takes it back
#: (a failed refund's late "pending" must not hold its amount again).
PROGRESS = {"sending": 0, "pending": 1, "requires_action": 1, "succeeded": 2}


def _forward(current: str, new: str) -> bool:
    return PROGRESS.get(new, 3) >= PROGRESS.get(current, 3)


def update_total(request: BillingRequest) -> int:
    """The request's refunded total, from its refunds (in the caller's transaction)."""
    held_refunds = Refund.objects.filter(billing_request=request, status__in=Refund.HELD)
    total = held_refunds.aggregate(total=Sum("amount"))["total"] or 0
    BillingRequest.objects.filter(pk=request.pk).update(refunded_amount=total)
    request.refunded_amount = total
    return total


#: A refund Stripe has not confirmed by then is looked for at Stripe (never asked again).
UNCONFIRMED_AFTER = timedelta(minutes=5)
NEVER_MADE = gettext_noop("Stripe never confirmed this refund: nothing was refunded.")


def settle_unconfirmed(*, now: datetime | None = None) -> int:
    """Refunds left ``sending`` (Stripe down or slow, the form not sent again): Stripe's own
    refund of that key, if it made one, is recorded; else nothing was refunded and the amount
    is free again. Never makes a refund. How many were settled."""
    cutoff = (now or timezone.now()) - UNCONFIRMED_AFTER
    stale = Refund.objects.filter(status=Refund.Status.SENDING, created_at__lte=cutoff)
    settled = 0
    for refund in stale.select_related("billing_request")[:100]:
        request = refund.billing_request
        try:
            made = stripe_api.list_refunds(
                request.mode, account_id=request.account_id, payment_intent=refund.payment_intent_id
            )
        except stripe_api.StripeFailure as error:
            logger.warning("Could not look up refund %s at Stripe: %s", refund.key, error)
            continue
        key = "wagtail_client_billing_refund"
        found = [r for r in made if stripe_api.field_of(r.metadata, key) == refund.key]
        if found:
            apply(found[0], request=request)
        else:
            with transaction.atomic():
                sending = Refund.objects.filter(pk=refund.pk, status=Refund.Status.SENDING)
                sending.update(status=Refund.Status.FAILED, error=NEVER_MADE)
                update_total(request)
        settled += 1
    return settled
