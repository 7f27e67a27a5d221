"""django-q2 tasks and the schedule. Every task is idempotent: the ORM broker delivers
at least once, and a task may run twice."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from . import billing, stripe_api
from .models import BillingRequest

logger = logging.getLogger(__name__)

SCHEDULE_NAME = "wagtail_client_billing: expire and reconcile billing requests"
SCHEDULE_FUNC = "wagtail_client_billing.tasks.expire_and_reconcile"
# Ask Stripe about requests whose outcome has not arrived after this long.
RECONCILE_AFTER = timedelta(hours=1)
RECONCILE_EVERY = timedelta(hours=1)
RECONCILE_BATCH = 100


def enqueue_billing_email(request_id: int) -> None:
    """Queue the email task once the current transaction commits."""
    from django_q.tasks import async_task

    transaction.on_commit(
        lambda: async_task(
            "wagtail_client_billing.tasks.send_billing_email",
            request_id,
            task_name=f"wcb-email-{request_id}-{timezone.now().timestamp()}",
            group="wagtail_client_billing.email",
        )
    )


def send_billing_email(request_id: int) -> bool:
    """Task: send one queued billing email (a repeated delivery sends nothing)."""
    from . import mail

    return mail.send_billing_email(request_id)


def expire_and_reconcile() -> dict[str, int]:
    """Task, every minute: expire overdue requests, then ask Stripe about lost outcomes."""
    expired = billing.expire_overdue()
    reconciled = reconcile(extra_ids=expired)
    if expired or reconciled:
        logger.info("Expired %s billing request(s), reconciled %s.", len(expired), reconciled)
    return {"expired": len(expired), "reconciled": reconciled}


def reconcile(*, extra_ids: list[int] | None = None, limit: int = RECONCILE_BATCH) -> int:
    """Read from Stripe the sessions whose webhook never came, and apply what it says.

    Pending requests older than an hour (not re-checked within the hour) and the
    requests the sweep just expired: a session Stripe reports complete and paid makes the
    request Paid even if it was marked Expired. Stripe unreachable: try again next run.
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
        except stripe_api.StripeFailure as error:
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
    if session.status == "complete" and session.payment_status in ("paid", "no_payment_required"):
        billing.mark_paid(
            Q(pk=request.pk), subscription_id=session.subscription, source="reconciliation"
        )
    elif session.status == "expired":
        billing.mark_expired(Q(pk=request.pk), source="reconciliation")


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
