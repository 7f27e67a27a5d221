"""Asking Stripe about the requests whose webhook never came (``tasks.expire_and_reconcile``)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from .. import stripe_api
from ..models import BillingRequest
from . import states

logger = logging.getLogger(__name__)

RECONCILE_AFTER = timedelta(hours=1)
RECONCILE_EVERY = timedelta(hours=1)
RECONCILE_BATCH = 100


def reconcile(*, extra_ids: list[int] | None = None, limit: int = RECONCILE_BATCH) -> int:
    """Apply Stripe's word on ``extra_ids`` (just swept) and on hour-old, unchecked Pending ones."""
    now = timezone.now()
    stale = Q(status=BillingRequest.Status.PENDING, created_at__lte=now - RECONCILE_AFTER) & (
        Q(reconciled_at__isnull=True) | Q(reconciled_at__lte=now - RECONCILE_EVERY)
    )
    ids = list(extra_ids or [])[:limit]
    due = BillingRequest.objects.filter(stale).exclude(pk__in=ids).exclude(checkout_session_id=None)
    room = max(0, limit - len(ids))
    ids += list(due.order_by("reconciled_at", "pk").values_list("pk", flat=True)[:room])
    done = 0
    for request in BillingRequest.objects.filter(pk__in=ids).exclude(checkout_session_id=None):
        try:
            reconcile_one(request)
            done += 1
        except stripe_api.StripeFailure as error:
            if not isinstance(error, stripe_api.StripeUnavailable):  # down or slow: next run
                # Refused (deauthorized, session gone): ask in RECONCILE_EVERY, not each minute.
                BillingRequest.objects.filter(pk=request.pk).update(reconciled_at=timezone.now())
            logger.warning("Could not reconcile billing request %s: %s", request.pk, error)
    return done


def reconcile_one(request: BillingRequest) -> None:
    session = stripe_api.retrieve_checkout_session(
        request.mode, account_id=request.account_id, session_id=request.checkout_session_id or ""
    )
    BillingRequest.objects.filter(pk=request.pk).update(reconciled_at=timezone.now())
    if stripe_api.is_paid(session):
        states.mark_paid(request, session=session, source="reconciliation")
    elif session.status == "expired":
        # A delete whose process died after Stripe expired the session ends as Deleted.
        states.end_with_expired_session(request, source="reconciliation")
