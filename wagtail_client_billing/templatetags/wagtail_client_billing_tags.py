from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import template
from django.utils import timezone
from django.utils.translation import gettext
from wagtail.admin.templatetags.wagtailadmin_tags import timesince_simple

from ..money import format_money

register = template.Library()


@register.simple_tag
def money(value: Any) -> str:
    """Anything with an ``amount`` and a ``currency``, formatted for the active language."""
    return format_money(value.amount, value.currency)


@register.filter
def since(value: datetime) -> str:
    """Wagtail's "3 hours ago", but "Just now" under a minute in every language."""
    # Wagtail says "just now" only when Django's "0 minutes" equals its own translation of
    # it; in French they differ ("0 minute" / "0 minutes"): "Il y a 0 minute".
    if timezone.now() - value < timedelta(minutes=1):
        return gettext("Just now")
    return timesince_simple(value)
