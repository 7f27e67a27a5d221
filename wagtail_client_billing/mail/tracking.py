"""Delivery tracking from an anymail ESP: delivered, opened, bounced, complained.

Anymail's webhook views turn each ESP's events into its ``tracking`` signal. Our emails
carry ``metadata = {"billing_request": id, "billing_email": "request"|"reminder"}``
(``messages.billing_email``), which ESPs echo back; a raw SMTP server reports
nothing, so a site with Custom SMTP stays at "Sent".
"""

from __future__ import annotations

import logging
from typing import Any

from anymail.signals import AnymailTrackingEvent, tracking
from django.dispatch import receiver
from django.utils.translation import gettext as _
from wagtail.log_actions import log

from ..models import BillingRequest, OutgoingEmail

logger = logging.getLogger(__name__)
EmailStatus = OutgoingEmail.Status
Kind = OutgoingEmail.Kind

ACTION_EMAIL_TRACKED = "wagtail_client_billing.email.tracked"

EVENT_STATES = {
    "delivered": EmailStatus.DELIVERED,
    "opened": EmailStatus.OPENED,
    "clicked": EmailStatus.OPENED,  # a click implies the email was opened
    "bounced": EmailStatus.BOUNCED,
    "complained": EmailStatus.COMPLAINED,
    "rejected": EmailStatus.FAILED,  # the ESP refused to send (suppression list...)
    "failed": EmailStatus.FAILED,
}
# The states each one may replace. Events arrive out of order: a late "delivered" must
# not hide an "opened", and nothing moves an email back to a state it has passed.
REPLACES = {
    EmailStatus.DELIVERED: (EmailStatus.SENT,),
    EmailStatus.OPENED: (EmailStatus.SENT, EmailStatus.DELIVERED),
    EmailStatus.BOUNCED: (EmailStatus.SENT, EmailStatus.DELIVERED),
    EmailStatus.COMPLAINED: (EmailStatus.SENT, EmailStatus.DELIVERED, EmailStatus.OPENED),
    EmailStatus.FAILED: (EmailStatus.SENT,),
}
# Worth a line in the request's history: the agency may have to act on these.
LOGGED = (EmailStatus.BOUNCED, EmailStatus.COMPLAINED, EmailStatus.FAILED)


@receiver(tracking, dispatch_uid="wagtail_client_billing.tracking")
def record_tracking_event(
    sender: Any, event: AnymailTrackingEvent, esp_name: str = "", **kwargs: Any
) -> None:
    """anymail's ``tracking`` signal: update the email's state if the event is ours."""
    apply_tracking_event(event, esp_name=esp_name)


def apply_tracking_event(event: AnymailTrackingEvent, *, esp_name: str = "") -> bool:
    """Move one email's state as ``event`` says; True if it changed."""
    state = EVENT_STATES.get(event.event_type)
    found = _email_of(event)
    if state is None or found is None:
        return False
    request_id, kind = found
    match: dict[str, Any] = {
        "billing_request_id": request_id, "kind": kind, "status__in": REPLACES[state]
    }  # fmt: skip
    if event.message_id:
        # An event about an earlier send (before a Resend) must not move the new one.
        match["message_id__in"] = (str(event.message_id), "")
    values: dict[str, Any] = {"status": state}
    if state in (EmailStatus.BOUNCED, EmailStatus.FAILED):
        values["error"] = _reason(event, esp_name)
    if not OutgoingEmail.objects.filter(**match).update(**values):
        return False
    if state in LOGGED:
        request = BillingRequest.objects.get(pk=request_id)
        log(
            request,
            ACTION_EMAIL_TRACKED,
            data={"email": kind, "event": event.event_type, "esp": esp_name},
        )
    return True


def _email_of(event: AnymailTrackingEvent) -> tuple[int, str] | None:
    metadata = event.metadata or {}
    request_id = str(metadata.get("billing_request", ""))
    kind = str(metadata.get("billing_email", Kind.REQUEST))
    if not request_id.isdigit() or kind not in (Kind.REQUEST, Kind.REMINDER):
        return None  # not one of ours: anymail serves the whole project
    return int(request_id), kind


def _reason(event: AnymailTrackingEvent, esp_name: str) -> str:
    detail = event.mta_response or event.description or event.reject_reason or ""
    service = esp_name or _("the email service")
    if event.event_type == "bounced":
        text = _("%(service)s reports a bounce") % {"service": service}
    else:
        text = _("%(service)s did not send it") % {"service": service}
    return (f"{text}: {' '.join(str(detail).split())}" if detail else f"{text}.")[:2000]
