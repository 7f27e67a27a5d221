"""Compose the emails: billing emails in the site's language (overridable templates under
``wagtail_client_billing/email/``, ``reminder`` in their context), notifications, the test
email. Header values are collapsed to one line: no template or site name injects a header."""

from __future__ import annotations

import re
from email.utils import formataddr, parseaddr

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from wagtail.models import Site

from ..conf import billing_settings
from ..models import AgencyBillingSettings, BillingRequest, OutgoingEmail, SiteEmailSettings
from ..money import format_money
from .failures import server_name

# What Python or a mail client may take for a line break, and spaces and tabs; not the
# no-break spaces that amounts are formatted with ("49,90\xa0€").
BREAKS_AND_SPACES = re.compile(r"[ \t\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+")


def language_of_site(site: Site | None) -> str:
    """The language of a site's client emails and pages (``SiteEmailSettings.language``)."""
    if site is None:
        return settings.LANGUAGE_CODE
    return SiteEmailSettings.for_site_or_default(site.pk).language(site)


def one_line(value: str) -> str:
    return BREAKS_AND_SPACES.sub(" ", str(value)).strip()


def billing_email(
    request: BillingRequest,
    kind: str = OutgoingEmail.Kind.REQUEST,
    *,
    email_settings: SiteEmailSettings,
    links: dict[str, str],
) -> EmailMultiAlternatives:
    """The email for ``request``: subject and both parts in the site's language."""
    name = request.site.site_name or request.site.hostname
    with translation.override(email_settings.language(request.site)):
        context = {
            "billing_request": request,
            "reminder": kind == OutgoingEmail.Kind.REMINDER,
            "site_name": name,
            "amount": format_money(request.amount, request.currency),
            "billing_type": request.get_billing_type_display(),
            "expires_at": timezone.localtime(request.expires_at),
            "payment_url": request.get_payment_url(),
            "contact_email": email_settings.contact_address,
            **links,
        }
        subject, text, html = (
            render_to_string(f"wagtail_client_billing/email/{template}", context)
            for template in ("subject.txt", "body.txt", "body.html")
        )
    message = _from_site(email_settings, name, subject, text, to=request.email)
    message.attach_alternative(html, "text/html")
    # Anymail's (other backends ignore them): ESPs echo them in tracking events (tracking.py).
    message.metadata = {"billing_request": str(request.pk), "billing_email": str(kind)}  # type: ignore[attr-defined]
    message.tags = ["wagtail-client-billing", f"billing-{str(kind)}"]  # type: ignore[attr-defined]
    return message


def subscription_email(
    request: BillingRequest, kind: str, email_settings: SiteEmailSettings
) -> EmailMultiAlternatives:
    """To a paying client: their subscription's renewal failed (with the link to fix the
    card in Stripe's customer portal), or it was canceled; in the site's language."""
    name = request.site.site_name or request.site.hostname
    with translation.override(email_settings.language(request.site)):
        context = {
            "billing_request": request,
            "kind": kind,
            "site_name": name,
            "amount": format_money(request.amount, request.currency),
            "manage_url": request.get_manage_url(),
            "contact_email": email_settings.contact_address,
        }
        subject, text, html = (
            render_to_string(f"wagtail_client_billing/email/subscription/{template}", context)
            for template in ("subject.txt", "body.txt", "body.html")
        )
    message = _from_site(email_settings, name, subject, text, to=request.email)
    message.attach_alternative(html, "text/html")
    message.metadata = {"billing_request": str(request.pk), "billing_email": str(kind)}  # type: ignore[attr-defined]
    message.tags = ["wagtail-client-billing", f"billing-{str(kind)}"]  # type: ignore[attr-defined]
    return message


def test_email(email_settings: SiteEmailSettings, to: str) -> EmailMultiAlternatives:
    """A short test email from the site, as its billing emails are sent."""
    name = email_settings.site.site_name or email_settings.site.hostname
    subject = _("Test email from %(site)s") % {"site": name}
    body = _(
        "This test email from %(site)s shows that billing emails can be sent through %(server)s."
    ) % {"site": name, "server": server_name(email_settings)}
    return _from_site(email_settings, name, subject, body, to=to)


def _from_site(
    email_settings: SiteEmailSettings, name: str, subject: str, body: str, *, to: str
) -> EmailMultiAlternatives:
    return EmailMultiAlternatives(
        subject=one_line(subject),
        body=body,
        from_email=sender(email_settings, name),
        to=[to],
        reply_to=reply_to(email_settings),
    )


def sends_from_own_address(email_settings: SiteEmailSettings) -> bool:
    """Whether the site's From may head its emails: its own server decides; the project's backend
    (the agency's reputation) takes only ``SENDER_DOMAINS``, or editors could send as anyone."""
    if not email_settings.from_email:
        return False
    if email_settings.custom_smtp:
        return True
    domain = email_settings.from_email.rpartition("@")[2].lower()
    return domain in billing_settings().sender_domains


def default_sender_address() -> str:
    """The address of ``DEFAULT_FROM_EMAIL`` (which may carry a display name)."""
    return parseaddr(settings.DEFAULT_FROM_EMAIL)[1] or settings.DEFAULT_FROM_EMAIL


def sender(email_settings: SiteEmailSettings, display_name: str) -> str:
    """The From header: the site's name, with its address if allowed, else the project's
    (decided when sending, so rows saved before the rule cannot send as someone else)."""
    if not email_settings.from_email:
        return settings.DEFAULT_FROM_EMAIL
    own = sends_from_own_address(email_settings)
    address = email_settings.from_email if own else default_sender_address()
    return formataddr((one_line(display_name), address))


def reply_to(email_settings: SiteEmailSettings) -> list[str] | None:
    """Reply-To: the site's Reply-to, else its From when that could not be the From."""
    if email_settings.reply_to:
        return [email_settings.reply_to]
    if email_settings.from_email and not sends_from_own_address(email_settings):
        return [email_settings.from_email]
    return None


def agency_recipients() -> list[str]:
    """The agency's notification addresses, or every active superuser's."""
    configured = AgencyBillingSettings.load().notification_recipients
    addresses = [line.strip() for line in configured.replace(",", "\n").splitlines()]
    if any(addresses):
        return [address for address in addresses if address]
    superusers = get_user_model().objects.filter(is_active=True, is_superuser=True)
    return list(superusers.exclude(email="").order_by("pk").values_list("email", flat=True))


def notification(email: OutgoingEmail, recipients: list[str]) -> EmailMessage:
    """A notification to people (not to the client), in the project's language."""
    request = email.billing_request
    with translation.override(settings.LANGUAGE_CODE):
        context = {"billing_request": request, "kind": email.kind, "site": request.site}
        if email.kind == OutgoingEmail.Kind.REFUNDED:  # its key: "refund-<the refund's pk>"
            refunds = request.refunds.select_related("created_by")
            context["refund"] = refunds.filter(pk=email.key.rpartition("-")[2]).first()
        subject, body = (
            render_to_string(f"wagtail_client_billing/notifications/{template}", context)
            for template in ("subject.txt", "body.txt")
        )
    return EmailMessage(subject=" ".join(subject.split()), body=body, to=recipients)
