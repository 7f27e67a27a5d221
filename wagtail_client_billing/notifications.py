"""Tell people what happened: the agency when money arrives or a subscription payment
fails, the site's reply-to address when a client asks for a new link.

Each notification is a ``Notification`` row under a unique key, created in the same
transaction as the change it reports; a django-q2 task claims and sends it once.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.template.loader import render_to_string
from django.utils import timezone, translation

# A send claimed this long ago and neither done nor failed was lost with its worker
# (killed mid-send): shown as not sent, never resent on a guess. As for billing emails.
from .mail import LOST_AFTER
from .models import AgencyBillingSettings, BillingRequest, Notification, SiteEmailSettings
from .models.notifications import NO_RECIPIENTS

logger = logging.getLogger(__name__)
Kind = Notification.Kind


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


def notify(kind: str, billing_request: BillingRequest, key: str) -> bool:
    """Record a notification once under ``key`` and send it after commit; False if known."""
    if (
        kind in (Kind.PAID, Kind.PAYMENT_FAILED)
        and not AgencyBillingSettings.load().notify_payments
    ):
        return False
    try:
        with transaction.atomic():
            notification = Notification.objects.create(
                key=key, kind=kind, billing_request=billing_request
            )
    except IntegrityError:
        return False  # a retried webhook or a second click: already told
    transaction.on_commit(lambda: _enqueue(notification.pk))
    return True


def _enqueue(notification_id: int) -> None:
    from django_q.tasks import async_task

    async_task(
        "wagtail_client_billing.notifications.send_notification",
        notification_id,
        group="wagtail_client_billing.notifications",
    )


def send_notification(notification_id: int) -> bool:
    """Task: send one notification unless another run already claimed it."""
    claimed = Notification.objects.filter(pk=notification_id, claimed_at__isnull=True).update(
        claimed_at=timezone.now()
    )
    if not claimed:
        return False
    notification = Notification.objects.select_related(
        "billing_request", "billing_request__site"
    ).get(pk=notification_id)
    request = notification.billing_request
    if notification.kind == Kind.NEW_LINK_ASKED:
        email_settings = SiteEmailSettings.for_site_or_default(request.site_id)
        recipients = [email_settings.contact_address]
    else:
        recipients = agency_recipients()
    if not recipients:
        Notification.objects.filter(pk=notification_id).update(error=NO_RECIPIENTS)
        return False
    with translation.override(settings.LANGUAGE_CODE):
        context = {"billing_request": request, "kind": notification.kind, "site": request.site}
        subject = render_to_string("wagtail_client_billing/notifications/subject.txt", context)
        body = render_to_string("wagtail_client_billing/notifications/body.txt", context)
    message = EmailMessage(subject=" ".join(subject.split()), body=body, to=recipients)
    try:
        message.send()
    except Exception as error:  # recorded; the agency can see it, the request is untouched
        Notification.objects.filter(pk=notification_id).update(error=str(error)[:2000])
        logger.warning("Notification %s failed: %r", notification.key, error)
        return False
    Notification.objects.filter(pk=notification_id).update(sent_at=timezone.now(), error="")
    return True


def unsent() -> QuerySet[Notification]:
    """Notifications that did not go out: the send failed, its worker was lost, or no
    worker took it up (the cluster was down) within ``LOST_AFTER``."""
    long_ago = timezone.now() - LOST_AFTER
    lost = Q(error="", claimed_at__lt=long_ago)
    never_taken = Q(claimed_at__isnull=True, created_at__lt=long_ago)
    return Notification.objects.filter(Q(error__gt="") | lost | never_taken, sent_at__isnull=True)


def send_again(notification_id: int) -> bool:
    """Queue an unsent notification once more; False if it was sent or is being sent."""
    with transaction.atomic():
        released = unsent().filter(pk=notification_id).update(claimed_at=None, error="")
        if released:
            transaction.on_commit(lambda: _enqueue(notification_id))
    return bool(released)


def ask_for_new_link(billing_request: BillingRequest) -> bool:
    """The client asks for a new link: remember it and tell the site once per request."""
    with transaction.atomic():
        updated = BillingRequest.objects.filter(
            pk=billing_request.pk,
            status__in=[BillingRequest.Status.EXPIRED, BillingRequest.Status.DELETED],
            client_asked_at__isnull=True,
        ).update(client_asked_at=timezone.now())
        if not updated:
            return False
        return notify(Kind.NEW_LINK_ASKED, billing_request, f"new-link-{billing_request.pk}")
