"""Stripe's invoices of a request: the ``invoice.*`` events keep its ``Invoice`` rows.

A one-time payment's invoice carries the request's metadata (Checkout's ``invoice_data``,
``billing.invoicing``); a subscription's names its subscription (and, on the first one,
before Checkout's own event may have told us the subscription, its metadata). Events come
in any order: an older one never takes an invoice back (a paid invoice stays paid)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from .. import stripe_api
from ..models import BillingRequest, Invoice, WebhookEvent
from ..stripe_api import field_of
from .ignored import EventIgnored

REQUEST_KEY = "wagtail_client_billing_request"  # billing.checkout_params's metadata
#: How far along an invoice is (Stripe: draft -> open -> paid, void or uncollectible).
PROGRESS = {"draft": 0, "open": 1, "uncollectible": 2, "paid": 3, "void": 3}
MAX_BIGINT = 2**63 - 1


def invoice_changed(event: WebhookEvent, invoice: Any) -> None:
    """``invoice.created``, ``finalized``, ``paid``, ``payment_failed``, ``updated``,
    ``voided``: make or update the invoice's row for the request it belongs to."""
    invoice_id = field_of(invoice, "id")
    if not isinstance(invoice_id, str) or not invoice_id.startswith("in_"):
        raise EventIgnored("the invoice object has no valid id")
    request = request_of(event, invoice, invoice_id)
    values = invoice_values(invoice)
    rows = Invoice.objects.filter(stripe_id=invoice_id, billing_request=request)
    rank = PROGRESS.get(values["status"], 0)
    behind = [status for status, later in PROGRESS.items() if later <= rank]
    moving = rows.filter(Q(status__in=behind) | ~Q(status__in=list(PROGRESS)))
    # What an event lacks is kept (a number, a link, the intent ``billing.refunds`` asked for).
    known = {name: value for name, value in values.items() if value not in ("", None)}
    if moving.update(**known):
        return
    try:
        with transaction.atomic():  # a savepoint: another delivery may make it meanwhile
            Invoice.objects.create(billing_request=request, stripe_id=invoice_id, **values)
        return
    except IntegrityError:  # made (and committed: the unique index waited) since the UPDATE
        if moving.update(**known):
            return
    stored = Invoice.objects.filter(stripe_id=invoice_id).values_list("billing_request", "status")
    for owner, status in stored:
        if owner != request.pk:
            raise EventIgnored(f"invoice {invoice_id} belongs to billing request {owner}")
        raise EventIgnored(
            f"invoice {invoice_id} is already {status}: this {values['status'] or 'unknown'} "
            "invoice is older"
        )


def request_of(event: WebhookEvent, invoice: Any, invoice_id: str) -> BillingRequest:
    """The request of the event's account and mode that ``invoice`` belongs to."""
    account = event.account or ""  # as requests store it ("" in direct mode)
    requests = BillingRequest.objects.exclude(status=BillingRequest.CREATING).filter(
        mode=event.mode, account_id=account
    )
    one_time = requests.filter(billing_type=BillingRequest.BillingType.ONE_TIME)
    recurring = requests.exclude(billing_type=BillingRequest.BillingType.ONE_TIME)
    details = field_of(field_of(invoice, "parent"), "subscription_details")
    details = details or field_of(invoice, "subscription_details")  # older API versions
    subscription = stripe_api.id_of(field_of(details, "subscription")) or stripe_api.id_of(
        field_of(invoice, "subscription")
    )
    if subscription:
        found = recurring.filter(subscription_id=subscription).first()
        pk = metadata_id(field_of(field_of(details, "metadata"), REQUEST_KEY))
        if found is None and pk:
            # The first invoice may come before checkout.session.completed names the subscription.
            found = recurring.filter(pk=pk, subscription_id__in=("", subscription)).first()
        what = f"subscription {subscription}"
    else:
        pk = metadata_id(field_of(field_of(invoice, "metadata"), REQUEST_KEY))
        found = one_time.filter(pk=pk).first() if pk else None
        what = f"one-time billing request {pk}" if pk else "no billing request in its metadata"
    if found is None:
        raise EventIgnored(
            f"invoice {invoice_id} ({what}) is of no {event.mode}-mode billing request "
            f"of account {account or '(the platform)'}"
        )
    return found


def metadata_id(value: Any) -> int | None:
    """A row id in Checkout's metadata (text, ours), if a database can hold it; else None."""
    ok = isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19
    return int(value) if ok else None


def invoice_values(invoice: Any) -> dict[str, Any]:
    """The row's columns from Stripe's invoice; what is missing or malformed is left blank."""
    transitions = field_of(invoice, "status_transitions")
    lines = field_of(field_of(invoice, "lines"), "data")
    period = field_of(lines[0], "period") if isinstance(lines, list) and lines else None
    return {
        "number": text(field_of(invoice, "number"), 64),
        "status": text(field_of(invoice, "status"), 16),
        "billing_reason": text(field_of(invoice, "billing_reason"), 40),
        "currency": text(field_of(invoice, "currency"), 3).lower(),
        "amount_due": amount(field_of(invoice, "amount_due")),
        "amount_paid": amount(field_of(invoice, "amount_paid")),
        "hosted_invoice_url": web_address(field_of(invoice, "hosted_invoice_url")),
        "invoice_pdf": web_address(field_of(invoice, "invoice_pdf")),
        "payment_intent_id": text(payment_intent(invoice), 255),
        "created": moment(field_of(invoice, "created")) or timezone.now(),
        "paid_at": moment(field_of(transitions, "paid_at")),
        # A subscription's line says the period paid for; the invoice's own, when it was made.
        "period_start": moment(field_of(period, "start") or field_of(invoice, "period_start")),
        "period_end": moment(field_of(period, "end") or field_of(invoice, "period_end")),
    }


def payment_intent(invoice: Any) -> str:
    """The payment that paid it: ``payments`` (API 2025-03-31 on) or ``payment_intent``."""
    payments = field_of(field_of(invoice, "payments"), "data")
    for entry in payments if isinstance(payments, list) else []:
        if found := stripe_api.id_of(field_of(field_of(entry, "payment"), "payment_intent")):
            return found
    return stripe_api.id_of(field_of(invoice, "payment_intent"))


def text(value: Any, limit: int) -> str:
    return value if isinstance(value, str) and len(value) <= limit else ""


def amount(value: Any) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_BIGINT
    return value if ok else 0


def web_address(value: Any) -> str:
    """An http(s) address, or "": our pages link it (never a ``javascript:`` one)."""
    if isinstance(value, str) and len(value) <= 2000 and value.startswith(("https://", "http://")):
        return value
    return ""


def moment(value: Any) -> datetime | None:
    """A Unix timestamp as an aware datetime; None if there is none (or it is absurd)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 253402300800:
        return datetime.fromtimestamp(value, tz=UTC)
    return None


HANDLERS = {
    "invoice.created": invoice_changed,
    "invoice.finalized": invoice_changed,
    "invoice.paid": invoice_changed,
    "invoice.payment_failed": invoice_changed,
    "invoice.updated": invoice_changed,
    "invoice.voided": invoice_changed,
}
