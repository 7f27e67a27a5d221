"""Compose the emails: billing emails (subject, plain text and HTML in the site's
language), notifications to people, the test email.

Templates under ``wagtail_client_billing/email/`` (``subject.txt``, ``body.txt``,
``body.html``) can be overridden in the usual Django way; ``reminder`` in their context
tells the reminder from the first email. Header values are collapsed to one line, so
neither a template nor a site name can inject a header.
"""

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

from .. import connections
from ..conf import billing_settings
from ..models import AgencyBillingSettings, BillingRequest, OutgoingEmail, SiteEmailSettings
from ..money import format_money
from .failures import server_name

TEMPLATES = "wagtail_client_billing/email/"


def site_language(request: BillingRequest) -> str:
    """The language of the request's site (its root page's locale), else the default."""
    return language_of_site(request.site)


def language_of_site(site: Site | None) -> str:
    """A site's language: its root page's locale, else ``LANGUAGE_CODE``."""
    try:
        return site.root_page.locale.language_code
    except Exception:  # no site, or a site without locale data: the default, never fails
        return settings.LANGUAGE_CODE


# Every character Python or a mail client may take for a line break, plus spaces and
# tabs; not the no-break spaces that amounts are formatted with ("49,90\xa0€").
BREAKS_AND_SPACES = re.compile(r"[ \t\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+")


def one_line(value: str) -> str:
    """Collapse a header value to one line: no template or name can inject headers."""
    return BREAKS_AND_SPACES.sub(" ", str(value)).strip()


def site_name(request: BillingRequest) -> str:
    """The site's name as clients know it (its hostname if it has none)."""
    return request.site.site_name or request.site.hostname


def agency_links(request: BillingRequest) -> dict[str, str]:
    """The privacy-policy and terms URLs of the Stripe connection the request was made on."""
    connection = connections.linked_connection(request.mode)
    if connection is None:
        return {"privacy_policy_url": "", "terms_of_service_url": ""}
    return {
        "privacy_policy_url": connection.privacy_policy_url,
        "terms_of_service_url": connection.terms_of_service_url,
    }


def billing_email(
    request: BillingRequest,
    kind: str = OutgoingEmail.Kind.REQUEST,
    *,
    email_settings: SiteEmailSettings | None = None,
    links: dict[str, str] | None = None,
) -> EmailMultiAlternatives:
    """The email for ``request``: subject and both parts in the site's language."""
    email_settings = email_settings or SiteEmailSettings.for_site_or_default(request.site_id)
    links = links if links is not None else agency_links(request)
    name = site_name(request)
    with translation.override(site_language(request)):
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
        subject = render_to_string(TEMPLATES + "subject.txt", context)
        text = render_to_string(TEMPLATES + "body.txt", context)
        html = render_to_string(TEMPLATES + "body.html", context)
    message = EmailMultiAlternatives(
        subject=one_line(subject),
        body=text,
        from_email=sender(email_settings, name),
        to=[request.email],
        reply_to=reply_to(email_settings),
    )
    message.attach_alternative(html, "text/html")
    # Anymail ESPs echo these back in tracking events (``tracking.py`` matches on them);
    # other backends ignore them.
    message.metadata = {"billing_request": str(request.pk), "billing_email": str(kind)}
    message.tags = ["wagtail-client-billing", f"billing-{str(kind)}"]
    return message


def sends_from_own_address(email_settings: SiteEmailSettings) -> bool:
    """Whether the site's From address may head its emails.

    Through the site's own SMTP server, its server decides. Through the project's
    backend, which the agency's domain reputation stands behind, only an address on one
    of ``SENDER_DOMAINS`` (exact domain, any case) may: otherwise any editor could send
    as anyone (the agency's CEO) through it.
    """
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
    """The From header: the site's name, with its address if allowed, else the project's.

    Decided here, when the message is built, so rows saved before the rule still cannot
    send as someone else.
    """
    if not email_settings.from_email:
        return settings.DEFAULT_FROM_EMAIL
    if sends_from_own_address(email_settings):
        address = email_settings.from_email
    else:
        address = default_sender_address()
    return formataddr((one_line(display_name), address))


def reply_to(email_settings: SiteEmailSettings) -> list[str] | None:
    """Reply-To: the site's Reply-to, else its From when that could not be the From."""
    if email_settings.reply_to:
        return [email_settings.reply_to]
    if email_settings.from_email and not sends_from_own_address(email_settings):
        return [email_settings.from_email]
    return None


def test_email(email_settings: SiteEmailSettings, to: str) -> EmailMultiAlternatives:
    """A short test email from the site, as its billing emails are sent."""
    name = email_settings.site.site_name or email_settings.site.hostname
    subject = _("Test email from %(site)s") % {"site": name}
    body = _(
        "This test email from %(site)s shows that billing emails can be sent through %(server)s."
    ) % {"site": name, "server": server_name(email_settings)}
    return EmailMultiAlternatives(
        subject=one_line(subject),
        body=body,
        from_email=sender(email_settings, name),
        to=[to],
        reply_to=reply_to(email_settings),
    )


def agency_recipients() -> list[str]:
    """The agency's notification addresses, or every active superuser's."""
    configured = AgencyBillingSettings.load().notification_recipients
    addresses = [line.strip() for line in configured.replace(",", "\n").splitlines()]
    addresses = [address for address in addresses if address]
    if addresses:
        return addresses
    return list(
        get_user_model()
        .objects.filter(is_active=True, is_superuser=True)
        .exclude(email="")
        .order_by("pk")
        .values_list("email", flat=True)
    )


def notification_recipients(email: OutgoingEmail) -> list[str]:
    """Who a notification goes to: the site's reply-to address for a client's question,
    else the connections."""
    if email.kind == OutgoingEmail.Kind.NEW_LINK_ASKED:
        return [SiteEmailSettings.for_site_or_default(email.site_id).contact_address]
    return agency_recipients()


def notification(email: OutgoingEmail, recipients: list[str]) -> EmailMessage:
    """A notification to people (not to the client), in the project's language."""
    request = email.billing_request
    with translation.override(settings.LANGUAGE_CODE):
        context = {"billing_request": request, "kind": email.kind, "site": request.site}
        subject = render_to_string("wagtail_client_billing/notifications/subject.txt", context)
        body = render_to_string("wagtail_client_billing/notifications/body.txt", context)
    return EmailMessage(subject=" ".join(subject.split()), body=body, to=recipients)
