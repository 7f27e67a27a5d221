"""Tell people what happened: the agency when money arrives or a subscription payment
fails, the site's reply-to address when a client asks for a new link.

Each notification is a ``Notification`` row under a unique key, created in the same
transaction as the change it reports; a django-q2 task claims and sends it once,
through the project's default backend as ``mailers`` builds it (timeout, deadline,
failure in plain words). A failure that may pass is tried again with the billing
emails' back-off (``mail.RETRY_DELAYS``, at most ``mail.MAX_ATTEMPTS``), picked up by
the every-minute drain; the agency sees the reason meanwhile.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet
from django.template.loader import render_to_string
from django.utils import timezone, translation

from . import mailers

# A send claimed this long ago and neither done nor failed was lost with its worker
# (killed mid-send): shown as not sent, never resent on a guess. As for billing emails,
# and with their back-off for failures that may pass.
from .mail import LOST_AFTER, MAX_ATTEMPTS, RETRY_DELAYS
from .models import AgencyBillingSettings, BillingRequest, Notification, SiteEmailSettings
from .models.notifications import NO_RECIPIENTS

logger = logging.getLogger(__name__)
Kind = Notification.Kind
RETRY_BATCH = 500


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
    """Task: send one notification unless another run already claimed it or it is not due."""
    now = timezone.now()
    claimed = Notification.objects.filter(
        Q(retry_at__isnull=True) | Q(retry_at__lte=now),
        pk=notification_id,
        claimed_at__isnull=True,
        sent_at__isnull=True,
    ).update(claimed_at=now, attempts=F("attempts") + 1, error="", retry_at=None)
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
    failure = mailers.send_message(message)
    if failure is None:
        Notification.objects.filter(pk=notification_id).update(sent_at=timezone.now(), error="")
        return True
    # Recorded; the agency sees it, the request is untouched.
    if failure.transient and notification.attempts < MAX_ATTEMPTS:
        retry_at = timezone.now() + RETRY_DELAYS[notification.attempts - 1]
        # Released (claimed_at cleared) for the drain to pick up once due.
        Notification.objects.filter(pk=notification_id).update(
            error=failure.reason, retry_at=retry_at, claimed_at=None
        )
        logger.info(
            "Notification %s will be retried at %s: %s",
            notification.key, retry_at.isoformat(), failure.reason,
        )  # fmt: skip
    else:
        Notification.objects.filter(pk=notification_id).update(error=failure.reason)
        logger.warning("Notification %s failed: %s", notification.key, failure.reason)
    return False


def enqueue_due_retries(now: datetime | None = None) -> int:
    """Queue the notifications whose next attempt is due (run by the every-minute drain).

    A notification queued twice is still sent once: the task claims it first.
    """
    now = now or timezone.now()
    due = list(
        Notification.objects.filter(
            claimed_at__isnull=True, sent_at__isnull=True, retry_at__lte=now
        ).values_list("pk", flat=True)[:RETRY_BATCH]
    )
    for notification_id in due:
        _enqueue(notification_id)
    return len(due)


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
        released = (
            unsent()
            .filter(pk=notification_id)
            .update(claimed_at=None, error="", retry_at=None, attempts=0)
        )
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
