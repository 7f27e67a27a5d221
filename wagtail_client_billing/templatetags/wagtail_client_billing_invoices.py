"""How an invoice reads on the request's page and the client's paid page."""

from __future__ import annotations

from django import template
from django.utils.translation import pgettext_lazy

from ..models import Invoice
from ..money import format_money

register = template.Library()

#: Stripe's invoice statuses in words (an invoice is feminine in French: "Payée").
STATUSES = {
    "draft": pgettext_lazy("invoice status", "Draft"),
    "open": pgettext_lazy("invoice status", "Open"),
    "paid": pgettext_lazy("invoice status", "Paid"),
    "void": pgettext_lazy("invoice status", "Void"),
    "uncollectible": pgettext_lazy("invoice status", "Uncollectible"),
}


@register.simple_tag
def invoice_amount(invoice: Invoice) -> str:
    """What was paid, or is still due, in the invoice's currency."""
    if not invoice.currency:
        return ""
    paid = invoice.status == "paid"
    return format_money(invoice.amount_paid if paid else invoice.amount_due, invoice.currency)


@register.filter
def invoice_status(invoice: Invoice) -> str:
    return str(STATUSES.get(invoice.status, invoice.status))
