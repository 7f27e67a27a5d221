"""What goes into the outbox, and the django-q2 tasks that send it after the commit."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.db import connection, transaction
from django.db.models import Model, Q, QuerySet
from django.utils import timezone

from ..conf import billing_settings
from ..db import insert_once
from ..models import AgencyBillingSettings, BillingRequest, OutgoingEmail
from .outbox import DELIVERED_STATES, EMAIL_TASK_GROUP, LOST_AFTER, NOTIFICATION_KINDS

Kind = OutgoingEmail.Kind
EmailStatus = OutgoingEmail.Status


def _orm_broker_here() -> bool:
    """Whether django-q2 queues tasks in its ORM broker on our database (not inline)."""
    from django_q.conf import Conf  # django-q2 reads its settings at import

    return Conf.ORM == connection.alias and not Conf.SYNC


def _async_task(task: str, argument: int, name: str, **options: Any) -> None:
    from django_q.tasks import async_task

    task_name = f"{name}-{timezone.now().timestamp()}"
    path = f"wagtail_client_billing.tasks.{task}"
    async_task(path, argument, task_name=task_name, group=EMAIL_TASK_GROUP, **options)


def _enqueue(task: str, argument: int, name: str) -> None:
    """Hand a task to django-q2 once the caller's transaction commits: with its ORM broker
    on our database, in that transaction (one commit, not two); else after the commit."""
    if _orm_broker_here() and connection.in_atomic_block:
        _async_task(task, argument, name)  # the task's row commits (or rolls back) with ours
    else:
        transaction.on_commit(lambda: _async_task(task, argument, name))


class _Package:
    """A broker for ``async_task`` that keeps the signed package instead of queuing it."""

    def __init__(self) -> None:
        from django_q.conf import Conf

        self.list_key = _list_key(Conf.CLUSTER_NAME, Conf.BROKER_CLASS)
        self.payload = ""

    def enqueue(self, package: str) -> int:
        self.payload = package
        return 0


@cache  # a broker object per task cost more than the task's row
def _list_key(cluster: str, broker_class: str | None) -> str:
    """django-q2's queue for ``cluster`` (``broker_class``: a key of the cache only)."""
    from django_q.brokers import get_broker

    return get_broker(cluster).list_key or cluster


def _task_row(task: str, argument: int, name: str) -> Model | None:
    """The task's row in django-q2's ORM broker (unsaved), built by django-q2's own
    ``async_task``, for a caller to insert with its own writes; None unless that broker is
    on our database."""
    from django_q.models import OrmQ

    if not _orm_broker_here():
        return None
    package = _Package()
    _async_task(task, argument, name, broker=package)
    return OrmQ(key=package.list_key, payload=package.payload, lock=timezone.now())


def email_task(site_id: int) -> Model | None:
    """``enqueue_pending_emails(site_id)``'s row in django-q2's ORM broker (``_task_row``)."""
    return _task_row("send_pending_emails", site_id, _site_task(site_id))


def billing_email_task(request_id: int) -> Model | None:
    """``queue_billing_email``'s task row in django-q2's ORM broker (``_task_row``)."""
    return _task_row("send_billing_email", request_id, _request_task(request_id))


def _request_task(request_id: int) -> str:
    return f"wcb-email-{request_id}"


def _site_task(site_id: int) -> str:
    return f"wcb-emails-site-{site_id}"


def enqueue_pending_emails(site_id: int) -> None:
    _enqueue("send_pending_emails", site_id, _site_task(site_id))


def queue_billing_email(request: BillingRequest) -> None:
    """Queue the request's email now (creation or Resend) and hand it to django-q2: inserted
    once, or (sent or failed before) queued again."""
    email = billing_email(request)
    if not insert_once(email, "key"):
        OutgoingEmail.objects.filter(key=email.key).update(
            recipient=email.recipient, status=EmailStatus.QUEUED, error="", attempts=0, due_at=None
        )
    enqueue_billing_email(request.pk)


def billing_email(request: BillingRequest) -> OutgoingEmail:
    """The request's email's outbox row, unsaved (its key makes it once per request)."""
    return OutgoingEmail(
        key=f"request-{request.pk}", kind=Kind.REQUEST, site_id=request.site_id,
        billing_request=request, recipient=request.email, status=EmailStatus.QUEUED,
    )  # fmt: skip


def enqueue_billing_email(request_id: int) -> None:
    _enqueue("send_billing_email", request_id, _request_task(request_id))


def tell_client(kind: str, request: BillingRequest, key: str) -> bool:
    """Queue an email to the client about their subscription, once under ``key``."""
    email = OutgoingEmail(
        key=key, kind=kind, site_id=request.site_id, billing_request=request,
        recipient=request.email, status=EmailStatus.QUEUED,
    )  # fmt: skip
    if not insert_once(email, "key"):
        return False
    enqueue_pending_emails(request.site_id)
    return True


def queue_due_reminders(now: datetime | None = None) -> int:
    """Queue one reminder (once: its key) per Pending request near expiry whose email went out."""
    hours = billing_settings().reminder_hours_before_expiry
    if not hours:
        return 0
    now = now or timezone.now()
    due = (
        BillingRequest.objects.filter(
            status=BillingRequest.Status.PENDING,
            expires_at__gt=now,
            expires_at__lte=now + timedelta(hours=hours),
            emails__kind=Kind.REQUEST,
            emails__status__in=DELIVERED_STATES,
        )
        .exclude(emails__kind=Kind.REMINDER)
        .values_list("pk", "site_id", "email")
    )
    reminders = [
        OutgoingEmail(
            key=f"reminder-{pk}",
            kind=Kind.REMINDER,
            site_id=site_id,
            billing_request_id=pk,
            recipient=email,
            status=EmailStatus.QUEUED,
        )  # fmt: skip
        for pk, site_id, email in due
    ]
    OutgoingEmail.objects.bulk_create(reminders, ignore_conflicts=True)
    return len(reminders)


def notification(kind: str, billing_request: BillingRequest, key: str) -> OutgoingEmail:
    """A notification's outbox row, unsaved: ``key`` makes it once."""
    return OutgoingEmail(
        key=key, kind=kind, site_id=billing_request.site_id,
        billing_request=billing_request, status=EmailStatus.QUEUED,
    )  # fmt: skip


def paid_key(pk: int) -> str:
    """The Paid notification's key: one per request, whichever event or click paid it."""
    return f"paid-{pk}"


def notify(kind: str, billing_request: BillingRequest, key: str) -> bool:
    """Record a notification once under ``key`` and send it after commit; False if known."""
    payment = kind in (Kind.PAID, Kind.PAYMENT_FAILED, Kind.REFUNDED, Kind.DISPUTED)
    if payment and not AgencyBillingSettings.load().notify_payments:
        return False
    if not insert_once(notification(kind, billing_request, key), "key"):
        return False  # a retried webhook or a second click: already told
    enqueue_pending_emails(billing_request.site_id)
    return True


def unsent() -> QuerySet[OutgoingEmail]:
    """Notifications that failed, were lost, or not taken up within ``LOST_AFTER``."""
    now = timezone.now()
    lost = Q(status=EmailStatus.SENDING, due_at__lte=now)
    never_taken = Q(status=EmailStatus.QUEUED, created_at__lt=now - LOST_AFTER)
    return OutgoingEmail.objects.filter(
        Q(error__gt="") | lost | never_taken,
        kind__in=NOTIFICATION_KINDS,
        status__in=(EmailStatus.QUEUED, EmailStatus.SENDING, EmailStatus.FAILED),
    )


def send_again(email_id: int) -> bool:
    """Queue an unsent notification once more; False if it was sent or is being sent."""
    email = unsent().filter(pk=email_id)
    site_id = email.values_list("site_id", flat=True).first()
    if site_id is None or not email.update(
        status=EmailStatus.QUEUED, error="", due_at=None, attempts=0
    ):
        return False
    enqueue_pending_emails(site_id)
    return True


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
