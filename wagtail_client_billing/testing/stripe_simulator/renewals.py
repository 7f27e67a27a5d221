"""Subscriptions on the moved clock: renew (invoice, pay or fail) or end at the period's end.

Run by :meth:`~.engine.Engine.tick` under the engine's lock, so ``advance_clock`` and
``set_clock`` apply every renewal that became due before they return. A card fails
when ``fail_renewals`` named its customer or subscription; updating the payment method
(the billing portal) makes it succeed again and pays what is still open.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from . import invoices
from .objects import PERIOD_SECONDS
from .objects_invoices import InvoiceDetails
from .store import Record

if TYPE_CHECKING:
    from .engine import Engine

# At most this many periods are caught up in one tick (a jump of years stays bounded).
MAX_PERIODS_PER_TICK = 120
LIVE_STATUSES = ("active", "past_due")


def card_fails(engine: Engine, sub: dict[str, Any]) -> bool:
    """Whether the subscription's customer's card is declined (``fail_renewals``)."""
    failing = engine.store.failing_cards
    return sub["id"] in failing or sub["customer"] in failing


def due(engine: Engine) -> None:
    """Renew, or cancel at the period's end, every subscription whose period is over."""
    now = engine.now()
    for record in list(engine.store.iter("subscription")):
        for _ in range(MAX_PERIODS_PER_TICK):
            data = record.data
            if data["status"] not in LIVE_STATUSES or _period_end(data) > now:
                break
            if data["cancel_at_period_end"]:
                end_at_period_end(engine, record)
            else:
                renew(engine, record)


def _period_end(sub: dict[str, Any]) -> int:
    return min(item["current_period_end"] for item in sub["items"]["data"])


def end_at_period_end(engine: Engine, record: Record) -> None:
    """A subscription set to cancel at the period's end ends; ``customer.subscription.deleted``."""
    data = record.data
    data.update(status="canceled", ended_at=_period_end(data))
    data["cancellation_details"]["reason"] = "cancellation_requested"
    engine.emit("customer.subscription.deleted", data, record.scope)


def renew(engine: Engine, record: Record) -> None:
    """Start the next period and bill it: ``customer.subscription.updated`` (with
    ``previous_attributes``), the invoice's events, then ``invoice.paid`` or
    ``invoice.payment_failed`` (and the subscription ``past_due``)."""
    data = record.data
    previous = {"items": copy.deepcopy(data["items"]), "latest_invoice": data["latest_invoice"]}
    old_start = data["items"]["data"][0]["current_period_start"]
    old_end = _period_end(data)
    for item in data["items"]["data"]:
        recurring = item["price"]["recurring"]
        start = item["current_period_end"]
        length = PERIOD_SECONDS[recurring["interval"]] * recurring.get("interval_count", 1)
        item.update(current_period_start=start, current_period_end=start + length)
    invoice_id = invoices.new_invoice_id()
    data["latest_invoice"] = invoice_id
    engine.emit("customer.subscription.updated", data, record.scope, None, previous)
    details = record.extra.get("renewal_details") or InvoiceDetails()
    invoice = invoices.issue(
        engine, scope=record.scope, customer=data["customer"], currency=data["currency"],
        lines=invoices.subscription_lines(data, record.extra.get("names", {})),
        billing_reason="subscription_cycle", period=(old_start, old_end), details=details,
        subscription=data, invoice_id=invoice_id,
    )  # fmt: skip
    if card_fails(engine, data):
        invoices.fail(engine, invoice)
        set_status(engine, record, "past_due")
    else:
        invoices.pay(engine, invoice)
        set_status(engine, record, "active")


def cancel_at_period_end(engine: Engine, sub: dict[str, Any], flag: bool) -> dict[str, Any]:
    """Set (or undo) ``cancel_at_period_end``; return the ``previous_attributes``.

    As at Stripe, ``canceled_at`` is when the cancellation was asked for; the
    subscription ends (status ``canceled``) when the clock passes ``cancel_at``.
    """
    previous = {key: sub[key] for key in ("cancel_at_period_end", "cancel_at", "canceled_at")}
    previous["cancellation_details"] = dict(sub["cancellation_details"])
    sub.update(
        cancel_at_period_end=flag,
        cancel_at=_period_end(sub) if flag else None,
        canceled_at=engine.now() if flag else None,
    )
    sub["cancellation_details"]["reason"] = "cancellation_requested" if flag else None
    return previous


def set_status(engine: Engine, record: Record, status: str) -> None:
    """Change a subscription's status, with ``customer.subscription.updated``."""
    data = record.data
    if data["status"] != status:
        previous = {"status": data["status"]}
        data["status"] = status
        engine.emit("customer.subscription.updated", data, record.scope, None, previous)


def update_payment_method(engine: Engine, customer: str) -> list[dict[str, Any]]:
    """The customer gives a card that works: renewals succeed again, and each open
    invoice of its subscriptions is paid at once (``invoice.paid``), the subscriptions
    back to ``active``. Returns the invoices paid."""
    failing = engine.store.failing_cards
    subs = [r for r in engine.store.iter("subscription") if r.data["customer"] == customer]
    failing.discard(customer)
    for record in subs:
        failing.discard(record.id)
    paid = []
    for record in subs:

        def owed(invoice: Record, sub_id: str = record.id) -> bool:
            return invoice.data["subscription"] == sub_id and invoice.data["status"] == "open"

        open_invoices = engine.store.iter("invoice", record.scope, owed)
        for invoice in reversed(list(open_invoices)):  # oldest first
            paid.append(invoices.pay(engine, invoice))
        if record.data["status"] == "past_due":
            set_status(engine, record, "active")
    return paid
