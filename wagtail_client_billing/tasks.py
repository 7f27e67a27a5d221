"""django-q2 tasks and the schedule. Every task is idempotent: the ORM broker delivers
at least once, and a task may run twice."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from . import billing, stripe_api
from .mail import outbox
from .mail.queue import enqueue_pending_emails, queue_due_reminders
from .models import BillingRequest

logger = logging.getLogger(__name__)

SCHEDULE_NAME = "wagtail_client_billing: expire and reconcile billing requests"
SCHEDULE_FUNC = "wagtail_client_billing.tasks.expire_and_reconcile"
# Ask Stripe about requests whose outcome has not arrived after this long.
RECONCILE_AFTER = timedelta(hours=1)
RECONCILE_EVERY = timedelta(hours=1)
RECONCILE_BATCH = 100


def send_billing_email(request_id: int) -> bool:
    """Task: send the request's email with its site's other due emails, over one connection.

    True if this call sent it; a repeated delivery finds it claimed and sends nothing.
    """
    site_id = BillingRequest.objects.filter(pk=request_id).values_list("site_id", flat=True).first()
    if site_id is None:
        return False
    return (request_id, outbox.Kind.REQUEST) in _send_batch(site_id).sent


def send_pending_emails(site_id: int) -> int:
    """Task: send one site's due emails (first emails, retries, reminders, notifications)."""
    return len(_send_batch(site_id).sent)


def _send_batch(site_id: int) -> outbox.BatchResult:
    result = outbox.send_pending_emails(site_id)
    if result.more:  # the batch hit its size or time limit: the rest in a new task
        enqueue_pending_emails(site_id)
    return result


def drain_email_queue() -> int:
    """Queue a batch for every site with emails due (retries, reminders, stragglers).

    Retries are not scheduled one by one: a failed attempt stores when the next is due
    (``OutgoingEmail.due_at``) and this drain, run by the every-minute schedule, picks it up.
    """
    outbox.report_lost_sends()
    site_ids = outbox.sites_with_due_emails()
    for site_id in site_ids:
        enqueue_pending_emails(site_id)
    return len(site_ids)


def expire_and_reconcile() -> dict[str, int]:
    """Task, every minute: expire overdue requests, ask Stripe about lost outcomes, queue
    due reminders and send the emails that are due."""
    billing.abandon_stalled_creations()
    expired = billing.expire_overdue()
    reconciled = reconcile(extra_ids=expired)
    reminders = queue_due_reminders()
    drained = drain_email_queue()
    if expired or reconciled or reminders:
        logger.info(
            "Expired %s billing request(s), reconciled %s, queued %s reminder(s).",
            len(expired), reconciled, reminders,
        )  # fmt: skip
    if drained:
        logger.debug("Queued email batches for %s site(s).", drained)
    return {"expired": len(expired), "reconciled": reconciled}


def reconcile(*, extra_ids: list[int] | None = None, limit: int = RECONCILE_BATCH) -> int:
    """Read from Stripe the sessions whose webhook never came, and apply what it says.

    Pending requests older than an hour (not re-checked within the hour) and the
    requests the sweep just expired: a session Stripe reports complete and paid makes the
    request Paid even if it was marked Expired. Stripe unreachable: try again next run;
    Stripe refusing: try again in ``RECONCILE_EVERY``.
    """
    now = timezone.now()
    stale = Q(status=BillingRequest.Status.PENDING, created_at__lte=now - RECONCILE_AFTER) & (
        Q(reconciled_at__isnull=True) | Q(reconciled_at__lte=now - RECONCILE_EVERY)
    )
    ids = list(extra_ids or [])[:limit]
    ids += list(
        BillingRequest.objects.filter(stale)
        .exclude(pk__in=ids)
        .exclude(checkout_session_id=None)
        .order_by("reconciled_at", "pk")
        .values_list("pk", flat=True)[: max(0, limit - len(ids))]
    )
    done = 0
    for request in BillingRequest.objects.filter(pk__in=ids).exclude(checkout_session_id=None):
        try:
            reconcile_one(request)
        except stripe_api.StripeUnavailable as error:
            # Stripe down or slow: every request fails alike; try again next run.
            logger.warning("Could not reconcile billing request %s: %s", request.pk, error)
            continue
        except stripe_api.StripeFailure as error:
            # Stripe answered and refused (an account deauthorized at Stripe, a session
            # it no longer has): asking every minute would get the same answer and keep
            # the other requests of the batch waiting. Ask again in RECONCILE_EVERY.
            BillingRequest.objects.filter(pk=request.pk).update(reconciled_at=timezone.now())
            logger.warning("Could not reconcile billing request %s: %s", request.pk, error)
            continue
        done += 1
    return done


def reconcile_one(request: BillingRequest) -> None:
    """Apply Stripe's current view of one request's session."""
    session = stripe_api.retrieve_checkout_session(
        request.mode, account_id=request.account_id, session_id=request.checkout_session_id
    )
    BillingRequest.objects.filter(pk=request.pk).update(reconciled_at=timezone.now())
    if stripe_api.is_paid(session):
        billing.mark_paid(
            Q(pk=request.pk), subscription_id=session.subscription, source="reconciliation"
        )
    elif session.status == "expired":
        # A delete whose process died after Stripe expired the session ends as Deleted.
        billing.end_with_expired_session(request, source="reconciliation")


def ensure_schedule(**kwargs: Any) -> None:
    """Create the every-minute schedule once (post_migrate; safe to run again)."""
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
