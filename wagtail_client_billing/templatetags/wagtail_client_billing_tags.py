from __future__ import annotations

from typing import Any

from django import template

from ..money import format_money

register = template.Library()


@register.simple_tag
def money(value: Any) -> str:
    """Anything with an ``amount`` and a ``currency``, formatted for the active language."""
    return format_money(value.amount, value.currency)
