"""The seam to django-q2: the task functions it runs, and the every-minute schedule.

Task functions only call the domain (``billing``, ``reconciliation``, ``mail``); they
are queued by their dotted path after the current transaction commits
(``transaction.on_commit``). Every task is idempotent: the ORM broker delivers at least
once, and a task may run twice."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from . import billing, mail, notifications, reconciliation
from .models import BillingRequest

logger = logging.getLogger(__name__)

SCHEDULE_NAME = "wagtail_client_billing: expire and reconcile billing requests"
SCHEDULE_FUNC = "wagtail_client_billing.tasks.expire_and_reconcile"
EMAIL_TASK_GROUP = "wagtail_client_billing.email"


def enqueue_billing_email(request_id: int) -> None:
    """Queue the email task once the current transaction commits."""
    from django_q.tasks import async_task

    transaction.on_commit(
        lambda: async_task(
            "wagtail_client_billing.tasks.send_billing_email",
            request_id,
            task_name=f"wcb-email-{request_id}-{timezone.now().timestamp()}",
            group=EMAIL_TASK_GROUP,
        )
    )


def enqueue_pending_emails(site_id: int) -> None:
    """Queue one batch task for the site's due emails (after the current commit)."""
    from django_q.tasks import async_task

    transaction.on_commit(
        lambda: async_task(
            "wagtail_client_billing.tasks.send_pending_emails",
            site_id,
            task_name=f"wcb-emails-site-{site_id}-{timezone.now().timestamp()}",
            group=EMAIL_TASK_GROUP,
        )
    )


def send_billing_email(request_id: int) -> bool:
    """Task: send the request's email with its site's other due emails, over one connection.

    True if this call sent it; a repeated delivery finds it claimed and sends nothing.
    """
    site_id = BillingRequest.objects.filter(pk=request_id).values_list("site_id", flat=True).first()
    if site_id is None:
        return False
    return (request_id, mail.REQUEST_EMAIL.name) in _send_batch(site_id).sent


def send_pending_emails(site_id: int) -> int:
    """Task: send one site's due emails (first emails, retries, reminders) in one batch."""
    return len(_send_batch(site_id).sent)


def _send_batch(site_id: int) -> mail.BatchResult:
    result = mail.send_pending_emails(site_id)
    if result.more:  # the batch hit its size or time limit: the rest in a new task
        enqueue_pending_emails(site_id)
    return result


def drain_email_queue() -> int:
    """Queue a batch for every site with emails due (retries, reminders, stragglers).

    Retries are not scheduled one by one: a failed attempt stores when the next is due
    (``email_due_at``) and this drain, run by the every-minute schedule, picks it up;
    notifications likewise (``retry_at``).
    """
    mail.report_lost_sends()
    notifications.enqueue_due_retries()
    site_ids = mail.sites_with_due_emails()
    for site_id in site_ids:
        enqueue_pending_emails(site_id)
    return len(site_ids)


def expire_and_reconcile() -> dict[str, int]:
    """Task, every minute: expire overdue requests, ask Stripe about lost outcomes, queue
    due reminders and send the emails that are due."""
    billing.abandon_stalled_creations()
    expired = billing.expire_overdue()
    reconciled = reconciliation.reconcile(extra_ids=expired)
    reminders = mail.queue_due_reminders()
    drained = drain_email_queue()
    if expired or reconciled or reminders:
        logger.info(
            "Expired %s billing request(s), reconciled %s, queued %s reminder(s).",
            len(expired), reconciled, reminders,
        )  # fmt: skip
    if drained:
        logger.debug("Queued email batches for %s site(s).", drained)
    return {"expired": len(expired), "reconciled": reconciled}


def ensure_schedule(**kwargs: Any) -> None:
    """Create the every-minute schedule once (post_migrate; safe to run again)."""
    # Local: django-q2 may be missing (the system check says so), and its models need
    # the app registry, which is not ready when this module is imported.
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": SCHEDULE_FUNC,
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
        },
    )
