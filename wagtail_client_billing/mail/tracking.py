"""Delivery events from anymail's ``tracking`` signal (SMTP reports none: "Sent" stays)."""

from __future__ import annotations

from typing import Any

from anymail.signals import AnymailTrackingEvent, tracking
from django.dispatch import receiver
from django.utils.translation import gettext as _
from wagtail.log_actions import log

from ..models import BillingRequest, OutgoingEmail

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
# The states each may replace: events arrive out of order, and never move an email back.
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
    """Move the email's state as ``event`` says, if the email is ours."""
    metadata = event.metadata or {}
    request_id = str(metadata.get("billing_request", ""))
    kind = str(metadata.get("billing_email", Kind.REQUEST))
    state = EVENT_STATES.get(event.event_type)
    if state is None or not request_id.isdigit() or kind not in (Kind.REQUEST, Kind.REMINDER):
        return  # not one of ours: anymail serves the whole project
    match: dict[str, Any] = {
        "billing_request_id": int(request_id), "kind": kind, "status__in": REPLACES[state]
    }  # fmt: skip
    if event.message_id:
        # An event about an earlier send (before a Resend) must not move the new one.
        match["message_id__in"] = (str(event.message_id), "")
    values: dict[str, Any] = {"status": state}
    if state in (EmailStatus.BOUNCED, EmailStatus.FAILED):
        values["error"] = _reason(event, esp_name)
    if OutgoingEmail.objects.filter(**match).update(**values) and state in LOGGED:
        request = BillingRequest.objects.get(pk=request_id)
        data = {"email": kind, "event": event.event_type, "esp": esp_name}
        log(request, ACTION_EMAIL_TRACKED, data=data)


def _reason(event: AnymailTrackingEvent, esp_name: str) -> str:
    detail = event.mta_response or event.description or event.reject_reason or ""
    service = esp_name or _("the email service")
    bounced = event.event_type == "bounced"
    text = _("%(service)s reports a bounce") if bounced else _("%(service)s did not send it")
    text %= {"service": service}
    return (f"{text}: {' '.join(str(detail).split())}" if detail else f"{text}.")[:2000]
