"""Invoices: issue (draft, then finalized with a number), pay or fail, and the events.

Functions of the :class:`~.engine.Engine`, called under its lock by the checkout flow
(Checkout's ``invoice_creation`` and a subscription's first invoice), by renewals on
the moved clock and by the hosted billing portal. Each invoice has one payment intent
(its ``invoice_payment``): the checkout's own in payment mode, a new one for a
subscription's invoices, with a charge per attempt, so any paid invoice can be refunded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import objects, objects_invoices, payments
from .objects_invoices import InvoiceDetails, InvoiceLine
from .store import Record, Scope, new_id, random_token

if TYPE_CHECKING:
    from .engine import Engine, RequestInfo

# Stripe retries a failed renewal after a few days (Smart Retries); the simulator only
# shows when it would.
RETRY_SECONDS = 3 * 86400


def new_invoice_id() -> str:
    """An id for an invoice about to be issued (a subscription names it first)."""
    return new_id("in")


def next_number(engine: Engine, scope: Scope) -> str:
    """The next invoice number of the account: ``ABCD1234-0001``, ``ABCD1234-0002``..."""
    prefix, count = engine.store.invoice_numbers.get(scope, (random_token(8).upper(), 0))
    engine.store.invoice_numbers[scope] = (prefix, count + 1)
    return f"{prefix}-{count + 1:04d}"


def _account_country(engine: Engine, scope: Scope) -> str:
    record = scope.account and engine.store.get(scope.account, "account", Scope(scope.livemode))
    return record.data["country"] if record else "US"


def issue(
    engine: Engine, *, scope: Scope, customer: str, currency: str, lines: list[InvoiceLine],
    billing_reason: str, period: tuple[int, int], details: InvoiceDetails,
    subscription: dict[str, Any] | None = None, payment_intent: str | None = None,
    invoice_id: str | None = None, request: RequestInfo | None = None,
) -> Record:  # fmt: skip
    """Create and finalize an invoice (``invoice.created``, ``invoice.finalized``): it
    is ``open``, numbered, with its hosted page, PDF and open payment; ``payment_intent``
    (the checkout's) or a new one pays it."""
    now = engine.now()
    invoice_id = invoice_id or new_id("in")
    data = objects_invoices.invoice(
        invoice_id=invoice_id, livemode=scope.livemode, created=now, currency=currency,
        customer=customer, account_country=_account_country(engine, scope),
        billing_reason=billing_reason, lines=lines, period=period,
        subscription=subscription, details=details,
    )  # fmt: skip
    record = engine.store.add("invoice", data, scope)
    engine.emit("invoice.created", data, scope, request)
    if payment_intent is None:
        intent = objects.payment_intent(
            livemode=scope.livemode,
            created=now,
            amount=data["amount_due"],
            currency=currency,
            status="requires_payment_method",
            customer_id=customer,
            metadata={},
            description="Subscription creation"
            if billing_reason == "subscription_create"
            else "Subscription update",
        )
        intent.update(latest_charge=None, receipt_email=details.email)
        engine.store.add("payment_intent", intent, scope)
        payment_intent = intent["id"]
    payment = objects_invoices.invoice_payment(
        livemode=scope.livemode, created=now, invoice_obj=data, payment_intent=payment_intent
    )
    engine.store.add("invoice_payment", payment, scope)
    record.extra["payment"] = payment["id"]
    base = engine.base_url()
    data.update(
        number=next_number(engine, scope),
        status="open",
        effective_at=now,
        hosted_invoice_url=f"{base}/i/{invoice_id}",
        invoice_pdf=f"{base}/invoice/{invoice_id}/pdf",
        ending_balance=0,
    )
    data["status_transitions"]["finalized_at"] = now
    engine.emit("invoice.finalized", data, scope, request)
    return record


def _intent(engine: Engine, record: Record) -> tuple[dict[str, Any], dict[str, Any]]:
    """The invoice's payment and its payment intent (both made with the invoice)."""
    payment = engine.store.records[record.extra["payment"]]
    intent = engine.store.records[payment.data["payment"]["payment_intent"]]
    return payment.data, intent.data


def pay(engine: Engine, record: Record, request: RequestInfo | None = None) -> dict[str, Any]:
    """The customer's card pays an open invoice (a new succeeded charge unless the
    checkout's already did); emits ``invoice.paid``."""
    data = record.data
    now = engine.now()
    payment, intent = _intent(engine, record)
    if intent["status"] != "succeeded":
        intent.update(status="succeeded", amount_received=intent["amount"], latest_charge=None)
        payments.add_charge(engine, intent, record.scope, email=data["customer_email"])
    data.update(
        status="paid",
        amount_paid=data["amount_due"],
        amount_remaining=0,
        attempted=True,
        attempt_count=data["attempt_count"] + 1,
        next_payment_attempt=None,
    )
    data["status_transitions"]["paid_at"] = now
    payment.update(status="paid", amount_paid=data["amount_due"])
    payment["status_transitions"]["paid_at"] = now
    engine.emit("invoice.paid", data, record.scope, request)
    return data


def fail(engine: Engine, record: Record, request: RequestInfo | None = None) -> dict[str, Any]:
    """The customer's card is declined: a failed charge, the invoice stays ``open``;
    emits ``invoice.payment_failed``."""
    data = record.data
    _payment, intent = _intent(engine, record)
    intent.update(status="requires_payment_method", latest_charge=None)
    payments.add_charge(engine, intent, record.scope, email=data["customer_email"], status="failed")
    data.update(
        attempted=True,
        attempt_count=data["attempt_count"] + 1,
        next_payment_attempt=engine.now() + RETRY_SECONDS,
    )
    engine.emit("invoice.payment_failed", data, record.scope, request)
    return data


def subscription_lines(sub: dict[str, Any], names: dict[str, str]) -> list[InvoiceLine]:
    """A subscription's invoice lines, described as Stripe describes them:
    ``1 × Hosting (at €10.00 / month)``."""
    lines = []
    for item in sub["items"]["data"]:
        price = item["price"]
        amount = payments.stripe_amount(price["unit_amount"], price["currency"])
        name = names.get(price["id"], "Subscription")
        description = (
            f"{item['quantity']} × {name} (at {amount} / {price['recurring']['interval']})"
        )
        period = (item["current_period_start"], item["current_period_end"])
        lines.append(
            InvoiceLine(description, price["unit_amount"], item["quantity"], item["id"], period)
        )
    return lines
