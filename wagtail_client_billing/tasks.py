"""django-q2's task functions (queued by dotted path after the commit) and its schedule.
Every task is idempotent: the ORM broker delivers at least once."""

from __future__ import annotations

import logging
from typing import Any

from . import billing
from .billing import subscriptions
from .mail import outbox
from .mail.queue import enqueue_pending_emails, queue_due_reminders
from .models import BillingRequest

logger = logging.getLogger(__name__)

SCHEDULE_NAME = "wagtail_client_billing: expire and reconcile billing requests"
SCHEDULE_FUNC = "wagtail_client_billing.tasks.expire_and_reconcile"


def send_billing_email(request_id: int) -> bool:
    """Task: send the request's email with its site's others; True if this call sent it."""
    site_id = BillingRequest.objects.filter(pk=request_id).values_list("site_id", flat=True).first()
    return site_id is not None and (request_id, outbox.Kind.REQUEST) in _send_batch(site_id).sent


def send_pending_emails(site_id: int) -> int:
    return len(_send_batch(site_id).sent)


def _send_batch(site_id: int) -> outbox.BatchResult:
    result = outbox.send_pending_emails(site_id)
    if result.more:  # the batch hit its size or time limit: the rest in a new task
        enqueue_pending_emails(site_id)
    return result


def expire_and_reconcile() -> dict[str, int]:
    """Task, every minute: expire, ask Stripe about lost outcomes, queue reminders, send."""
    billing.abandon_stalled_creations()
    expired = billing.expire_overdue()
    reconciled = billing.reconcile(extra_ids=expired)
    billing.settle_unconfirmed()  # refunds Stripe never confirmed
    subscriptions.reconcile_overdue()  # after their events, or renewals never heard of
    reminders = queue_due_reminders()
    outbox.report_lost_sends()
    site_ids = outbox.sites_with_due_emails()  # retries too: their ``due_at`` has come
    for site_id in site_ids:
        enqueue_pending_emails(site_id)
    if expired or reconciled or reminders:
        logger.info(
            "Expired %s billing request(s), reconciled %s, queued %s reminder(s).",
            len(expired), reconciled, reminders,
        )  # fmt: skip
    if site_ids:
        logger.debug("Queued email batches for %s site(s).", len(site_ids))
    return {"expired": len(expired), "reconciled": reconciled}


def ensure_schedule(**kwargs: Any) -> None:
    """Create the every-minute schedule once (post_migrate; safe to run again)."""
    # Imported here: django-q2 may be missing (a check says so); its models need the registry.
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
