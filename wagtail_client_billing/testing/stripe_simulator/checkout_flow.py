"""What paying a Checkout Session creates: the payment intent and its charge, or the
customer, subscription and its first invoice; and, with ``invoice_creation``, the paid
invoice of a one-time payment.

Functions of the :class:`~.engine.Engine`, run under its lock by ``complete_checkout``
and ``settle_async``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import invoices, objects, objects_invoices, payments
from .objects_invoices import InvoiceDetails, InvoiceLine
from .store import Record, new_id

if TYPE_CHECKING:
    from .engine import Engine, RequestInfo


def _customer(engine: Engine, record: Record) -> str:
    """The session's customer, created from what the payer typed if it has none."""
    data = record.data
    if data["customer"]:
        return data["customer"]
    details = data["customer_details"]
    customer = objects.customer(
        livemode=record.scope.livemode,
        created=engine.now(),
        email=details["email"],
        currency=data["currency"],
    )
    customer["name"] = details["name"]
    if any(details["address"].values()):
        customer["address"] = dict(details["address"])
    engine.store.add("customer", customer, record.scope)
    data["customer"] = customer["id"]
    return customer["id"]


def _details(record: Record, invoice_data: dict[str, Any] | None = None) -> InvoiceDetails:
    """What the invoice prints about the buyer (and, from ``invoice_data``, the seller)."""
    payer = record.data["customer_details"]
    invoice_data = invoice_data or {}
    return InvoiceDetails(
        email=payer["email"],
        name=payer["name"],
        address=payer["address"] if any(payer["address"].values()) else None,
        tax_ids=payer["tax_ids"],
        footer=invoice_data.get("footer"),
        custom_fields=invoice_data.get("custom_fields"),
        description=invoice_data.get("description"),
        metadata=invoice_data.get("metadata") or {},
    )


def complete(engine: Engine, record: Record, *, delayed: bool, info: RequestInfo) -> None:
    """Create what a paid (or, ``delayed``, processing) session creates, before its
    ``checkout.session.completed``."""
    data, scope, params = record.data, record.scope, record.extra["params"]
    now = engine.now()
    if data["mode"] == "payment":
        invoicing = (params.get("invoice_creation") or {}).get("enabled")
        # Post-payment invoices need a customer (Stripe's customer_creation=if_required).
        customer = _customer(engine, record) if invoicing else data["customer"]
        intent_data = params.get("payment_intent_data") or {}
        intent = objects.payment_intent(
            livemode=scope.livemode,
            created=now,
            amount=data["amount_total"],
            currency=data["currency"],
            status="processing" if delayed else "succeeded",
            customer_id=customer,
            metadata=intent_data.get("metadata") or {},
            description=intent_data.get("description"),
        )
        intent["receipt_email"] = data["customer_details"]["email"]
        engine.store.add("payment_intent", intent, scope)
        payments.add_charge(engine, intent, scope, email=data["customer_details"]["email"])
        data["payment_intent"] = intent["id"]
        if invoicing and not delayed:
            _one_time_invoice(engine, record, info)
        return
    customer = _customer(engine, record)
    sub = objects.subscription(
        livemode=scope.livemode,
        created=now,
        customer_id=customer,
        items=record.extra["line_items"],
        metadata=(params.get("subscription_data") or {}).get("metadata") or {},
    )
    names = {item["price"]["id"]: item["description"] for item in record.extra["line_items"]}
    invoice_id = new_id("in")
    sub["latest_invoice"] = invoice_id
    sub_record = engine.store.add(
        "subscription", sub, scope, api_version=info.api_version, names=names
    )
    data.update(subscription=sub["id"], invoice=invoice_id)
    engine.emit("customer.subscription.created", sub, scope, info)
    item = sub["items"]["data"][0]
    invoice = invoices.issue(
        engine, scope=scope, customer=customer, currency=sub["currency"],
        lines=invoices.subscription_lines(sub, names), billing_reason="subscription_create",
        period=(item["current_period_start"], item["current_period_start"]),
        details=_details(record), subscription=sub, invoice_id=invoice_id, request=info,
    )  # fmt: skip
    sub_record.extra["renewal_details"] = _details(record)
    if not delayed:
        invoices.pay(engine, invoice, info)


def _one_time_invoice(engine: Engine, record: Record, info: RequestInfo) -> None:
    """The paid invoice of a one-time payment made with ``invoice_creation``."""
    data = record.data
    invoice_data = record.extra["params"]["invoice_creation"]["invoice_data"]
    lines = [
        InvoiceLine(item["description"], item["price"]["unit_amount"], item["quantity"])
        for item in record.extra["line_items"]
    ]
    now = engine.now()
    invoice = invoices.issue(
        engine, scope=record.scope, customer=data["customer"], currency=data["currency"],
        lines=lines, billing_reason="manual", period=(now, now),
        details=_details(record, invoice_data), payment_intent=data["payment_intent"],
        request=info,
    )  # fmt: skip
    data["invoice"] = invoice.id
    invoices.pay(engine, invoice, info)


def settle(engine: Engine, record: Record, succeed: bool, info: RequestInfo) -> None:
    """A delayed payment settled: its charge, and the invoice it pays, follow."""
    data = record.data
    intent = data["payment_intent"] and engine.store.find(data["payment_intent"], "payment_intent")
    if intent:
        if succeed:
            intent.data.update(status="succeeded", amount_received=intent.data["amount"])
        else:
            intent.data.update(status="requires_payment_method")
        payments.settle_charge(engine, intent.data, succeed)
        invoicing = (record.extra["params"].get("invoice_creation") or {}).get("enabled")
        if succeed and invoicing:
            _one_time_invoice(engine, record, info)
    elif data["invoice"]:
        invoice = engine.store.find(data["invoice"], "invoice")
        if invoice is not None and invoice.data["status"] == "open":
            (invoices.pay if succeed else invoices.fail)(engine, invoice, info)


def payer_details(
    email: str, *, name: str | None = None, address: dict[str, Any] | None = None,
    tax_id: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The session's ``customer_details`` from what the payer typed."""
    tax_ids = [{"type": "eu_vat", "value": tax_id}] if tax_id else []
    return objects_invoices.customer_details(
        email, name=name or None, address=address, tax_ids=tax_ids
    )
