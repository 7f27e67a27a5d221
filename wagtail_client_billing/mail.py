"""Compose and send the billing emails.

Sending goes through django-q2 (``tasks.send_billing_email``) after the request's row
commits. Each send first *claims* the email with a conditional UPDATE, so the at-least-
once ORM broker can deliver a task twice without the client getting two emails.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db.models import F
from django.template.loader import render_to_string
from django.utils import timezone, translation

from .models import BillingRequest

logger = logging.getLogger(__name__)
EmailStatus = BillingRequest.EmailStatus

SMTP_TIMEOUT = 20


def site_language(request: BillingRequest) -> str:
    """The language of the request's site (its root page's locale), else the default."""
    try:
        return request.site.root_page.locale.language_code
    except Exception:  # a site without locale data falls back, never fails
        return settings.LANGUAGE_CODE


def queue_billing_email(request: BillingRequest) -> None:
    """Mark the email queued and hand it to django-q2 (after the current commit)."""
    from . import tasks

    BillingRequest.objects.filter(pk=request.pk).update(
        email_status=EmailStatus.QUEUED, email_error=""
    )
    tasks.enqueue_billing_email(request.pk)


def render_billing_email(request: BillingRequest) -> EmailMultiAlternatives:
    """The email for ``request``: subject and both parts in the site's language."""
    with translation.override(site_language(request)):
        context = {
            "billing_request": request,
            "site_name": request.site.site_name or request.site.hostname,
            "payment_url": request.get_payment_url(),
        }
        subject = render_to_string("wagtail_client_billing/email/subject.txt", context)
        text = render_to_string("wagtail_client_billing/email/body.txt", context)
        html = render_to_string("wagtail_client_billing/email/body.html", context)
    # A subject is one line: never let a template (or a site name) inject headers.
    subject = " ".join(subject.split())
    message = EmailMultiAlternatives(
        subject=subject,
        body=text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[request.email],
    )
    message.attach_alternative(html, "text/html")
    return message


def send_billing_email(request_id: int) -> bool:
    """Send a queued billing email once; return True if this call sent it."""
    claimed = BillingRequest.objects.filter(pk=request_id, email_status=EmailStatus.QUEUED).update(
        email_status=EmailStatus.SENDING, email_attempts=F("email_attempts") + 1
    )
    if not claimed:
        return False
    request = BillingRequest.objects.select_related("site").get(pk=request_id)
    try:
        message = render_billing_email(request)
        message.connection = get_connection(timeout=SMTP_TIMEOUT)
        message.send()
    except Exception as error:  # every failure is recorded and shown
        BillingRequest.objects.filter(pk=request_id).update(
            email_status=EmailStatus.FAILED, email_error=str(error)[:2000] or repr(error)
        )
        logger.warning("Billing email for request %s failed: %r", request_id, error)
        return False
    BillingRequest.objects.filter(pk=request_id).update(
        email_status=EmailStatus.SENT, email_sent_at=timezone.now(), email_error=""
    )
    return True
