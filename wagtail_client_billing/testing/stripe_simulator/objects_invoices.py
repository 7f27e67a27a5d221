"""Builders of invoices, their lines and payments, and billing portal sessions.

Like :mod:`.objects`, each starts from Stripe's own example object
(``testing/stripe_objects/*.json``) and fills in the simulated state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .objects import ADDRESS_KEYS, build
from .store import new_id


@dataclass
class InvoiceLine:
    """One line to bill: a description, a unit amount and a quantity (a subscription
    item's when ``subscription_item`` is set)."""

    description: str
    unit_amount: int
    quantity: int = 1
    subscription_item: str | None = None
    period: tuple[int, int] | None = None  # the invoice's when None

    @property
    def amount(self) -> int:
        """The line's total."""
        return self.unit_amount * self.quantity


@dataclass
class InvoiceDetails:
    """What the invoice prints beyond its lines: the seller's footer and fields, and what
    Checkout collected from the buyer."""

    email: str | None = None
    name: str | None = None
    address: dict[str, Any] | None = None
    tax_ids: list[dict[str, str]] = field(default_factory=list)
    footer: str | None = None
    custom_fields: list[dict[str, str]] | None = None
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def customer_details(
    email: str, *, name: str | None = None, address: dict[str, Any] | None = None,
    tax_ids: list[dict[str, str]] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """What Checkout collected from the payer (address and tax ids when it asked)."""
    return {
        "address": {**dict.fromkeys(ADDRESS_KEYS), **(address or {})},
        "email": email,
        "name": name,
        "phone": None,
        "tax_exempt": "none",
        "tax_ids": list(tax_ids or []),
        "business_name": None,
        "individual_name": None,
    }


def invoice(
    *, invoice_id: str, livemode: bool, created: int, currency: str, customer: str,
    account_country: str, billing_reason: str, lines: list[InvoiceLine],
    period: tuple[int, int], subscription: dict[str, Any] | None, details: InvoiceDetails,
) -> dict[str, Any]:  # fmt: skip
    """A draft invoice (``finalize`` and ``pay`` it with :mod:`.invoices`)."""
    total = sum(line.amount for line in lines)
    parent = None
    if subscription is not None:
        parent = {
            "quote_details": None,
            "subscription_details": {
                "metadata": dict(subscription["metadata"]),
                "subscription": subscription["id"],
            },
            "type": "subscription_details",
        }
    address = details.address
    obj = build(
        "invoice",
        id=invoice_id,
        livemode=livemode,
        created=created,
        currency=currency,
        customer=customer,
        account_country=account_country,
        billing_reason=billing_reason,
        amount_due=total,
        amount_paid=0,
        amount_remaining=total,
        subtotal=total,
        subtotal_excluding_tax=total,
        total=total,
        total_excluding_tax=total,
        customer_email=details.email,
        customer_name=details.name,
        customer_address={**dict.fromkeys(ADDRESS_KEYS), **address} if address else None,
        customer_tax_ids=[{"type": t["type"], "value": t["value"]} for t in details.tax_ids],
        footer=details.footer,
        custom_fields=[dict(f) for f in details.custom_fields] if details.custom_fields else None,
        description=details.description,
        metadata=dict(details.metadata),
        period_start=period[0],
        period_end=period[1],
        starting_balance=0,
        ending_balance=None,
        status="draft",
        subscription=subscription["id"] if subscription else None,
        parent=parent,
        hosted_invoice_url=None,
        invoice_pdf=None,
        webhooks_delivered_at=created,
        automatically_finalizes_at=None,
    )
    obj["lines"].update(
        data=[_line(invoice_id, obj, line, period, subscription) for line in lines],
        url=f"/v1/invoices/{invoice_id}/lines",
    )
    return obj


def _line(
    invoice_id: str, invoice_obj: dict[str, Any], line: InvoiceLine, period: tuple[int, int],
    subscription: dict[str, Any] | None,
) -> dict[str, Any]:  # fmt: skip
    if line.subscription_item and subscription is not None:
        parent = {
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": None,
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": subscription["id"],
                "subscription_item": line.subscription_item,
            },
            "type": "subscription_item_details",
        }
    else:
        parent = {
            "invoice_item_details": {
                "invoice_item": new_id("ii"),
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": None,
            },
            "subscription_item_details": None,
            "type": "invoice_item_details",
        }
    obj = build(
        "line_item",
        id=new_id("il"),
        invoice=invoice_id,
        livemode=invoice_obj["livemode"],
        amount=line.amount,
        subtotal=line.amount,
        currency=invoice_obj["currency"],
        description=line.description,
        quantity=line.quantity,
        subscription=subscription["id"] if subscription else None,
        parent=parent,
    )
    start, end = line.period or period
    obj["period"] = {"start": start, "end": end}
    obj["pricing"]["unit_amount_decimal"] = str(line.unit_amount)
    return obj


def invoice_payment(
    *, livemode: bool, created: int, invoice_obj: dict[str, Any], payment_intent: str
) -> dict[str, Any]:  # fmt: skip
    """The (default, open) payment of an invoice by a payment intent."""
    obj = build(
        "invoice_payment",
        id=new_id("inpay"),
        livemode=livemode,
        created=created,
        amount_requested=invoice_obj["amount_due"],
        amount_paid=None,
        currency=invoice_obj["currency"],
        invoice=invoice_obj["id"],
        status="open",
    )
    obj["payment"] = {"payment_intent": payment_intent, "type": "payment_intent"}
    return obj


def portal_session(
    *, session_id: str, livemode: bool, created: int, customer: str, return_url: str | None,
    locale: str | None, url: str, configuration: str,
) -> dict[str, Any]:  # fmt: skip
    """A customer portal session (``url`` is the simulator's hosted portal)."""
    return build(
        "billing_portal.session",
        id=session_id,
        livemode=livemode,
        created=created,
        customer=customer,
        return_url=return_url,
        locale=locale,
        url=url,
        configuration=configuration,
    )
