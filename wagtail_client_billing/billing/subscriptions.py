"""A paid monthly or yearly request's subscription: kept as Stripe says it is (status, next
payment, ending), canceled from the admin, a failed renewal told to the client with the
link to their customer portal."""

from __future__ import annotations

import datetime
import logging
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import connections, stripe_api
from ..mail.queue import notify, tell_client
from ..models import BillingRequest, OutgoingEmail
from .errors import BillingError
from .states import ACTION_SUBSCRIPTION_CANCELED, record

logger = logging.getLogger("wagtail_client_billing.billing")
Status = BillingRequest.Status
#: Stripe's statuses after which a subscription never bills again: never moved back from.
ENDED = ("canceled", "incomplete_expired")


def apply(subscription: Any, requests: QuerySet, *, event_id: str = "") -> int:
    """Store what Stripe says of ``subscription`` on its ``requests``; a change into past
    due tells the agency and the client (once per failed invoice). How many it changed."""
    status = stripe_api.field_of(subscription, "status")
    if not isinstance(status, str) or not status:
        raise ValueError("the subscription object has no status")
    values: dict[str, Any] = {
        "subscription_status": status,
        "cancel_at_period_end": bool(stripe_api.field_of(subscription, "cancel_at_period_end")),
    }
    if (end := period_end(subscription)) is not None:
        values["current_period_end"] = datetime.datetime.fromtimestamp(end, tz=datetime.UTC)
    live = requests.exclude(subscription_status__in=ENDED)
    into_past_due = status == "past_due"
    newly_past_due = list(live.exclude(subscription_status="past_due")) if into_past_due else []
    changed = live.update(**values)
    # Once per failed invoice (its id), whether an event or a reading again saw it first.
    failed = stripe_api.id_of(stripe_api.field_of(subscription, "latest_invoice")) or event_id
    for request in newly_past_due:  # only the change into past_due, not Stripe's retries
        key = f"{request.pk}-{failed or 'now'}"
        notify(OutgoingEmail.Kind.PAYMENT_FAILED, request, key=f"past-due-{key}")
        if request.customer_id:
            tell_client(OutgoingEmail.Kind.CARD_FAILED, request, key=f"card-failed-{key}")
    return changed


def read_again_soon(requests: QuerySet) -> None:
    """Have the every-minute task read the subscription of ``requests`` again at Stripe
    (``reconcile_overdue``): two events of one second (a renewal's "active", its failure's
    "past_due") may arrive in either order; Stripe's own word settles it."""
    requests.update(reconciled_at=None)


def refresh(request: BillingRequest) -> None:
    """Apply the subscription as Stripe has it now (the task's: never in a transaction)."""
    if not request.subscription_id:
        return
    subscription = stripe_api.retrieve_subscription(
        request.mode, account_id=request.account_id, subscription_id=request.subscription_id
    )
    with transaction.atomic():
        rows = BillingRequest.objects.filter(pk=request.pk)
        rows.update(reconciled_at=timezone.now())
        apply(subscription, rows)


#: A live subscription whose period ended this long ago without word from Stripe (its
#: renewal's webhooks lost) is read again, at most once per RECONCILE_EVERY.
OVERDUE_AFTER = timedelta(hours=1)
RECONCILE_EVERY = timedelta(hours=1)


def reconcile_overdue(*, now: datetime.datetime | None = None, limit: int = 100) -> int:
    """Read again at Stripe the live subscriptions that just had events, or whose period
    ended with no renewal heard of (``tasks.expire_and_reconcile``); how many were read."""
    now = now or timezone.now()
    live = BillingRequest.objects.filter(
        status=Status.PAID, subscription_status__in=("active", "trialing", "past_due", "unpaid")
    ).exclude(subscription_id="")
    ended = Q(current_period_end__lte=now - OVERDUE_AFTER, reconciled_at__lte=now - RECONCILE_EVERY)
    due = live.filter(Q(reconciled_at__isnull=True) | ended)
    done = 0
    first = (F("reconciled_at").asc(nulls_first=True), "current_period_end", "pk")
    for request in due.order_by(*first)[:limit]:
        try:
            refresh(request)
            done += 1
        except stripe_api.StripeFailure as error:
            logger.warning("Could not read the subscription of request %s: %s", request.pk, error)
            BillingRequest.objects.filter(pk=request.pk).update(reconciled_at=now)
    return done


def period_end(subscription: Any) -> int | None:
    """When the subscription's current period ends (on its item since API 2025-03-31, on the
    subscription itself before): a Unix time, or None."""
    items = stripe_api.field_of(stripe_api.field_of(subscription, "items"), "data")
    items = items if isinstance(items, list) else []
    ends = [stripe_api.field_of(item, "current_period_end") for item in items]
    ends = [*ends, stripe_api.field_of(subscription, "current_period_end")]
    # A Unix time a database can hold (a signed body may carry any number).
    return next((end for end in ends if type(end) is int and 0 < end < 2**37), None)


def cancel(request: BillingRequest, *, at_period_end: bool, user: Any = None) -> BillingRequest:
    """Cancel ``request``'s subscription at Stripe, now or at the end of its period: the
    request as Stripe left it, with the audit entry and the client's email."""
    if request.status != Status.PAID or not request.subscription_id:
        raise BillingError(_("Only a paid subscription can be canceled."))
    if request.subscription_status in ENDED:
        raise BillingError(_("This subscription is already canceled."))
    if at_period_end and request.cancel_at_period_end:
        raise BillingError(_("This subscription already ends at the end of its period."))
    if not connections.account_is_linked(request):
        raise BillingError(
            _("The Stripe account of this subscription is no longer linked: cancel it there.")
        )
    subscription = stripe_api.cancel_subscription(
        request.mode,
        account_id=request.account_id,
        subscription_id=request.subscription_id,
        at_period_end=at_period_end,
    )
    with transaction.atomic():
        rows = BillingRequest.objects.filter(pk=request.pk)
        apply(subscription, rows)
        request.refresh_from_db()
        when = "period_end" if at_period_end else "now"
        record(request, ACTION_SUBSCRIPTION_CANCELED, user=user, when=when)
        tell_client(OutgoingEmail.Kind.SUBSCRIPTION_CANCELED, request, key=f"canceled-{request.pk}")
    return request


def portal_url(request: BillingRequest, *, return_url: str, locale: str) -> str:
    """A Stripe customer portal session for ``request``'s client; ``BillingError`` if the
    subscription cannot be managed here (not paid, no customer, account unlinked)."""
    if request.status != Status.PAID or not request.customer_id or not request.is_recurring:
        raise BillingError(_("There is no subscription to manage here."))
    if not connections.account_is_linked(request):
        raise BillingError(_("This subscription can no longer be managed here."))
    return stripe_api.create_portal_session(
        request.mode,
        account_id=request.account_id,
        customer=request.customer_id,
        return_url=return_url,
        locale=locale,
    )
