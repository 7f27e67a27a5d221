"""Reconciliation: asking Stripe about the requests whose webhook never came.

Run by the every-minute schedule (``tasks.expire_and_reconcile``). What Stripe says is
applied through ``billing``'s transitions, so a webhook arriving at the same moment and
this can race and exactly one wins.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from .. import stripe_api
from ..models import BillingRequest
from . import states

logger = logging.getLogger(__name__)

# Ask Stripe about requests whose outcome has not arrived after this long.
RECONCILE_AFTER = timedelta(hours=1)
RECONCILE_EVERY = timedelta(hours=1)
RECONCILE_BATCH = 100


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
        states.mark_paid(
            Q(pk=request.pk),
            subscription_id=stripe_api.id_of(session.subscription),
            source="reconciliation",
        )
    elif session.status == "expired":
        # A delete whose process died after Stripe expired the session ends as Deleted.
        states.end_with_expired_session(request, source="reconciliation")
