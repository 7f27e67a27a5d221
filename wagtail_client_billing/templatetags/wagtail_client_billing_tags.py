from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import template
from django.utils import timezone
from django.utils.html import avoid_wrapping
from django.utils.translation import gettext, ngettext
from wagtail.admin.templatetags.wagtailadmin_tags import timesince_simple

from ..models.site import language_name
from ..money import format_money

register = template.Library()


@register.simple_tag
def money(value: Any, currency: str | None = None) -> str:
    """Anything with an ``amount`` and a ``currency`` (or an amount in minor units and its
    currency), formatted for the active language."""
    if currency is not None:
        return format_money(value, currency)
    return format_money(value.amount, value.currency)


@register.filter
def money_in(amount: int, currency: str) -> str:
    """An amount in minor units and its currency, formatted for the active language."""
    return format_money(amount, currency)


@register.filter
def since(value: datetime) -> str:
    """Wagtail's "3 hours ago", but "Just now" under a minute in every language."""
    # Wagtail says "just now" only when Django's "0 minutes" equals its own translation of
    # it; in French they differ ("0 minute" / "0 minutes"): "Il y a 0 minute".
    if timezone.now() - value < timedelta(minutes=1):
        return gettext("Just now")
    return timesince_simple(value)


@register.filter
def until(value: datetime) -> str:
    """The time left, one unit, rounded: "24 hours" right after sending, as the product
    promises (Django's ``timeuntil`` says "23 hours, 54 minutes"); minutes under an hour,
    days beyond two."""
    left = max((value - timezone.now()).total_seconds(), 0)
    if left >= 2 * 86400:
        days = round(left / 86400)
        return avoid_wrapping(ngettext("%(num)d day", "%(num)d days", days) % {"num": days})
    if left >= 3570:  # 59.5 minutes: "1 hour", not "60 minutes"
        hours = round(left / 3600)
        return avoid_wrapping(ngettext("%(num)d hour", "%(num)d hours", hours) % {"num": hours})
    minutes = max(round(left / 60), 1)
    text = ngettext("%(num)d minute", "%(num)d minutes", minutes) % {"num": minutes}
    return avoid_wrapping(text)


@register.simple_tag
def form_alerts(form: Any) -> list[str]:
    """The errors a form's fields cannot show: its own and its hidden fields' (none: no box)."""
    hidden = [error for field in form.hidden_fields() for error in field.errors]
    return [*form.non_field_errors(), *hidden]


@register.filter
def site_address(site: Any) -> str:
    """A site's address as people type it: its hostname, with its port if unusual."""
    return site.hostname if site.port in (80, 443) else f"{site.hostname}:{site.port}"


@register.filter
def client_language(site: Any) -> str:
    """The language of the site's client emails and pages, in its own name ("français")."""
    from ..mail.messages import language_of_site

    return language_name(language_of_site(site))
