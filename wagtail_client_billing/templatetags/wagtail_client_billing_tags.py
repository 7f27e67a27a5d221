"""Template helpers: amounts formatted for the reader's language."""

from __future__ import annotations

from typing import Any

from django import template

from ..money import format_money

register = template.Library()


@register.simple_tag
def money(billing_request: Any) -> str:
    """A request's amount in the active language's format, e.g. "€1,234.50" / "1 234,50 €"."""
    return format_money(billing_request.amount, billing_request.currency)
