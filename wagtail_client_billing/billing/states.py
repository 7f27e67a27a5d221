"""The state machine: Pending -> Paid | Expired | Deleted, one conditional UPDATE each, so
racing webhooks, sweeps and deletes have exactly one winner, who alone logs and signals.
A payment for an Expired or Deleted request still makes it Paid, flagged ``late_payment``."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django.db.models import Q
from django.dispatch import Signal
from django.utils import timezone
from wagtail.log_actions import log
from wagtail.models import ModelLogEntry

from .. import connections, signals
from ..mail.queue import notify
from ..models import BillingRequest, OutgoingEmail

logger = logging.getLogger("wagtail_client_billing.billing")

Status = BillingRequest.Status

ACTION_CREATE = "wagtail_client_billing.request.create"
ACTION_PAID = "wagtail_client_billing.request.paid"
ACTION_EXPIRED = "wagtail_client_billing.request.expired"
ACTION_DELETED = "wagtail_client_billing.request.deleted"
ACTION_PAYMENT_FAILED = "wagtail_client_billing.request.payment_failed"
ACTION_RESEND = "wagtail_client_billing.request.resend"
ACTION_RENEW = "wagtail_client_billing.request.renew"


def announce(signal: Signal, request: BillingRequest, **kwargs: Any) -> None:
    """Send a signal of ours; a failing receiver is logged, not raised: the change committed."""
    results = signal.send_robust(sender=BillingRequest, billing_request=request, **kwargs)
    for receiver, result in results:
        if isinstance(result, Exception):
            message = "A receiver of a billing request signal failed (%r, request %s)."
            logger.error(message, receiver, request.pk, exc_info=result)


def log_data(request: BillingRequest, **extra: Any) -> dict[str, Any]:
    fields = ("email", "amount", "currency", "billing_type")
    return {"site": request.site_id, **{name: getattr(request, name) for name in fields}, **extra}


def _transition(
    request_filter: Q, to: str, from_statuses: tuple[str, ...], **values: Any
) -> BillingRequest | None:
    """One conditional UPDATE of the one matching request; the request if this call won."""
    candidates = BillingRequest.objects.filter(status__in=from_statuses)
    with transaction.atomic():
        ids = list(candidates.filter(request_filter).values_list("pk", flat=True)[:2])
        if len(ids) != 1 or not candidates.filter(pk=ids[0]).update(status=to, **values):
            return None
        return BillingRequest.objects.select_related("site").get(pk=ids[0])


def mark_paid(
    request_filter: Q, *, subscription_id: str = "", source: str, user: Any = None
) -> BillingRequest | None:
    """Pending (or, late, Expired/Deleted) -> Paid; the request if this call won."""
    extra: dict[str, Any] = {"paid_at": timezone.now(), "payment_state": ""}
    if subscription_id:
        extra["subscription_id"] = subscription_id
        extra["subscription_status"] = "active"
    with transaction.atomic():
        request = _transition(request_filter, Status.PAID, (Status.PENDING,), **extra)
        late = False
        if request is None:
            ended = (Status.EXPIRED, Status.DELETED)
            request = _transition(request_filter, Status.PAID, ended, late_payment=True, **extra)
            late = request is not None
        if request is None:
            return None
        # Money taken for a request whose account is gone is applied, and flagged.
        gone = not connections.account_is_linked(request)
        if gone and not late:
            BillingRequest.objects.filter(pk=request.pk).update(late_payment=True)
            request.late_payment = late = True
        log(request, ACTION_PAID, user=user, data=log_data(request, source=source, late=late))
        notify(OutgoingEmail.Kind.PAID, request, key=f"paid-{request.pk}")
        transaction.on_commit(lambda: announce(signals.billing_request_paid, request, late=late))
    if gone:
        logger.warning(
            "Billing request %s was paid after its %s-mode Stripe account %s was unlinked (late).",
            request.pk,
            request.mode,
            request.account_id or "(direct mode)",
        )
    elif late:
        logger.warning("Billing request %s was paid after it had ended (late).", request.pk)
    return request


def mark_expired(request_filter: Q, *, source: str) -> BillingRequest | None:
    return _end(request_filter, Status.EXPIRED, source=source)


def mark_deleted(request_filter: Q, *, source: str) -> BillingRequest | None:
    return _end(request_filter, Status.DELETED, source=source)


def _end(request_filter: Q, to: str, *, source: str) -> BillingRequest | None:
    """Pending -> Expired or Deleted; the request if this call won."""
    deleted = to == Status.DELETED
    stamp = "deleted_at" if deleted else "expired_at"
    with transaction.atomic():
        request = _transition(request_filter, to, (Status.PENDING,), **{stamp: timezone.now()})
        if request is None:
            return None
        # A deletion names who asked, whichever wins: the delete or the event it caused.
        user = request.delete_requested_by if deleted else None
        action = ACTION_DELETED if deleted else ACTION_EXPIRED
        log(request, action, user=user, data=log_data(request, source=source))
        signal = signals.billing_request_deleted if deleted else signals.billing_request_expired
        transaction.on_commit(lambda: announce(signal, request))
    return request


def end_with_expired_session(request: BillingRequest, *, source: str) -> BillingRequest | None:
    """Stripe expired the session: Deleted if a deletion was asked (our call), else Expired."""
    if request.delete_requested_at is not None:
        return mark_deleted(Q(pk=request.pk), source=source)
    return mark_expired(Q(pk=request.pk), source=source)


def expire_overdue(*, now: datetime | None = None, batch_size: int = 5000) -> list[int]:
    """Flip every Pending request past ``expires_at`` to Expired, in batches of one
    ``UPDATE ... RETURNING id``: only the rows this sweep flipped get an entry and a signal."""
    now = now or timezone.now()
    table = BillingRequest._meta.db_table
    quote = connection.ops.quote_name
    # Names are ours, values are parameters.
    sql = (
        f"UPDATE {quote(table)} SET {quote('status')} = %s, {quote('expired_at')} = %s "  # noqa: S608
        f"WHERE {quote('id')} IN (SELECT {quote('id')} FROM {quote(table)} "
        f"WHERE {quote('status')} = %s AND {quote('expires_at')} <= %s "
        f"ORDER BY {quote('id')} LIMIT %s) AND {quote('status')} = %s "
        f"RETURNING {quote('id')}"
    )
    params: list[Any] = [Status.EXPIRED, now, Status.PENDING, now, batch_size, Status.PENDING]
    flipped: list[int] = []
    while True:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                ids = [row[0] for row in cursor.fetchall()]
            if ids:
                _after_sweep(ids)
        flipped.extend(ids)
        if len(ids) < batch_size:
            return flipped


def _after_sweep(ids: list[int]) -> None:
    content_type = ContentType.objects.get_for_model(BillingRequest)
    requests = list(BillingRequest.objects.filter(pk__in=ids))
    now = timezone.now()
    ModelLogEntry.objects.bulk_create(
        [
            ModelLogEntry(
                content_type=content_type,
                object_id=str(request.pk),
                label=str(request),
                action=ACTION_EXPIRED,
                timestamp=now,
                data=log_data(request, source="sweep"),
            )
            for request in requests
        ],
        batch_size=1000,
    )

    def send() -> None:  # one callback per batch, not one per row
        for request in requests:
            announce(signals.billing_request_expired, request)

    transaction.on_commit(send)
