"""The state machine: Pending -> Paid | Expired | Deleted, one conditional UPDATE each, so
racing webhooks, sweeps and deletes have exactly one winner, who alone logs and signals.
A payment for an Expired or Deleted request still makes it Paid, flagged ``late_payment``."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone
from wagtail.log_actions import get_active_log_context
from wagtail.models import ModelLogEntry

from .. import connections, signals, stripe_api
from ..mail.queue import notify, paid_key
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
ACTION_REFUND = "wagtail_client_billing.request.refund"
ACTION_DISPUTED = "wagtail_client_billing.request.disputed"
ACTION_SUBSCRIPTION_CANCELED = "wagtail_client_billing.request.subscription_canceled"


def announce(signal: Signal, request: BillingRequest, **kwargs: Any) -> None:
    """Send a signal of ours; a failing receiver is logged, not raised: the change committed."""
    results = signal.send_robust(sender=BillingRequest, billing_request=request, **kwargs)
    for receiver, result in results:
        if isinstance(result, Exception):
            message = "A receiver of a billing request signal failed (%r, request %s)."
            logger.error(message, receiver, request.pk, exc_info=result)


LOGGED = ("email", "amount", "currency", "billing_type")  # with the site, in every entry


def log_data(request: BillingRequest, **extra: Any) -> dict[str, Any]:
    return {"site": request.site_id, **{name: getattr(request, name) for name in LOGGED}, **extra}


def _transition(pk: int, to: str, from_statuses: tuple[str, ...], **values: Any) -> bool:
    """One conditional UPDATE: whether this call moved request ``pk`` to ``to``."""
    rows = BillingRequest.objects.filter(pk=pk, status__in=from_statuses)
    return bool(rows.update(status=to, **values))


def log_entry(
    request: BillingRequest, action: str, *, user: Any = None, **data: Any
) -> ModelLogEntry:
    """The request's audit entry, unsaved, as Wagtail's ``log`` would write it."""
    context = get_active_log_context()
    return ModelLogEntry(
        content_type=ContentType.objects.get_for_model(BillingRequest),
        object_id=str(request.pk), label=str(request), action=action,
        timestamp=timezone.now(), data=log_data(request, **data),
        user=user or context.user, uuid=context.uuid,
    )  # fmt: skip


def record(request: BillingRequest, action: str, *, user: Any = None, **data: Any) -> None:
    """Write ``log_entry`` without Wagtail's per-entry ``full_clean`` query (our actions
    are registered: tests/test_architecture.py)."""
    ModelLogEntry.objects.bulk_create([log_entry(request, action, user=user, **data)])


def paid_values(session: Any = None) -> dict[str, Any]:
    """What becoming Paid writes besides its status and late flag (also ``events.paid``):
    the payment, customer and subscription of Stripe's Checkout ``session``, if known (the
    payment is what a refund gives back)."""
    values: dict[str, Any] = {"paid_at": timezone.now(), "payment_state": ""}
    found = {name: stripe_api.id_of(stripe_api.field_of(session, name)) for name in PAID_REFERENCES}
    values |= {f"{name}_id": found[name] for name in PAID_REFERENCES if found[name]}
    if found["subscription"]:
        values["subscription_status"] = "active"
    return values


PAID_REFERENCES = ("payment_intent", "customer", "subscription")


def mark_paid(
    request: BillingRequest,
    *,
    session: Any = None,
    source: str,
    user: Any = None,
    account_linked: bool | None = None,
) -> BillingRequest | None:
    """Pending (or, late, Expired/Deleted) -> Paid: ``request`` with what was written, if
    this call won. ``session``: Stripe's Checkout Session that says so. ``account_linked``:
    whether its account is linked, if the caller knows."""
    extra = paid_values(session)
    if account_linked is None:
        account_linked = connections.account_is_linked(request)
    # Money taken for a request whose account is gone is applied, and flagged.
    gone = not account_linked
    with transaction.atomic(savepoint=False):
        late = not _transition(
            request.pk, Status.PAID, (Status.PENDING,), **extra, late_payment=gone
        )
        ended = (Status.EXPIRED, Status.DELETED)
        if late and not _transition(request.pk, Status.PAID, ended, late_payment=True, **extra):
            return None
        for name, value in {**extra, "status": Status.PAID, "late_payment": late or gone}.items():
            setattr(request, name, value)
        record(request, ACTION_PAID, user=user, source=source, late=late or gone)
        notify(OutgoingEmail.Kind.PAID, request, key=paid_key(request.pk))
        transaction.on_commit(
            lambda: announce(signals.billing_request_paid, request, late=late or gone)
        )
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


def mark_expired(pk: int, *, source: str) -> BillingRequest | None:
    return _end(pk, Status.EXPIRED, source=source)


def mark_deleted(pk: int, *, source: str) -> BillingRequest | None:
    return _end(pk, Status.DELETED, source=source)


def _end(pk: int, to: str, *, source: str) -> BillingRequest | None:
    """Pending -> Expired or Deleted; the request (read again) if this call won."""
    deleted = to == Status.DELETED
    stamp = "deleted_at" if deleted else "expired_at"
    with transaction.atomic(savepoint=False):
        if not _transition(pk, to, (Status.PENDING,), **{stamp: timezone.now()}):
            return None
        request = BillingRequest.objects.select_related("site").get(pk=pk)
        # A deletion names who asked, whichever wins: the delete or the event it caused.
        user = request.delete_requested_by if deleted else None
        record(request, ACTION_DELETED if deleted else ACTION_EXPIRED, user=user, source=source)
        signal = signals.billing_request_deleted if deleted else signals.billing_request_expired
        transaction.on_commit(lambda: announce(signal, request))
    return request


def end_with_expired_session(request: BillingRequest, *, source: str) -> BillingRequest | None:
    """Stripe expired the session: Deleted if a deletion was asked (our call), else Expired."""
    if request.delete_requested_at is not None:
        return mark_deleted(request.pk, source=source)
    return mark_expired(request.pk, source=source)
