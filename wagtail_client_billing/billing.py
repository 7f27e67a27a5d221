"""Billing requests' domain operations and their state machine.

Pending -> Paid | Expired | Deleted. Every transition is one conditional UPDATE
(``... WHERE status = 'pending'``), so a webhook, the expiry sweep, a delete and a
duplicate delivery can race and exactly one wins; only the winner writes the audit log
and sends the signal. A payment Stripe confirms for an Expired or Deleted request still
makes it Paid, flagged ``late_payment``: money taken is never hidden.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.dispatch import Signal
from django.utils import timezone
from django.utils.translation import gettext as _
from wagtail.log_actions import log
from wagtail.models import ModelLogEntry, Site

from . import agency, notifications, signals, stripe_api
from .conf import REQUEST_TTL_MAX, REQUEST_TTL_MIN, billing_settings
from .models import BillingRequest, Notification, StripeConnection

logger = logging.getLogger(__name__)

Status = BillingRequest.Status

ACTION_CREATE = "wagtail_client_billing.request.create"
ACTION_PAID = "wagtail_client_billing.request.paid"
ACTION_EXPIRED = "wagtail_client_billing.request.expired"
ACTION_DELETED = "wagtail_client_billing.request.deleted"
ACTION_PAYMENT_FAILED = "wagtail_client_billing.request.payment_failed"

# Stripe allows expires_at up to 24 h after creation, measured on its clock: stay a
# little inside so that a few minutes of skew cannot make Stripe refuse the session.
CLOCK_SKEW_MARGIN = 5 * 60
RECURRING_INTERVAL = {"monthly": "month", "yearly": "year"}


class BillingError(Exception):
    """A billing operation could not be done; ``user_message`` says why in plain words."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


class NotReadyToCharge(BillingError):
    """No linked Stripe account in the active mode can take payments yet."""


class AlreadySubmitted(BillingError):
    """The same form was submitted twice; ``billing_request`` is the first one."""

    def __init__(self, billing_request: BillingRequest) -> None:
        super().__init__(self.describe())
        self.billing_request = billing_request

    def describe(self) -> str:
        return _("This billing request was already sent.")


class AlreadyRenewed(AlreadySubmitted):
    """The request was renewed before; ``billing_request`` is its renewal."""

    def describe(self) -> str:
        return _("This billing request was already renewed: here is its renewal.")


@dataclass(frozen=True)
class RequestDetails:
    """What an editor typed, validated: the amount is in minor units."""

    email: str
    currency: str
    amount: int
    description: str
    success_url: str
    cancel_url: str
    billing_type: str

    @classmethod
    def of(cls, request: BillingRequest) -> RequestDetails:
        """The details an existing request was made with (to renew it)."""
        return cls(**{f.name: getattr(request, f.name) for f in fields(cls)})


def session_lifetime() -> int:
    """Seconds from now to the session's ``expires_at``: the TTL, inside Stripe's range."""
    ttl = billing_settings().request_ttl
    return max(REQUEST_TTL_MIN + 60, min(ttl, REQUEST_TTL_MAX - CLOCK_SKEW_MARGIN))


def ready_connection() -> StripeConnection:
    """The active mode's linked connection if it can charge; else ``NotReadyToCharge``."""
    connection = agency.linked_connection()
    if connection is None:
        raise NotReadyToCharge(
            _("No client billing account is connected, so no billing request can be sent yet.")
        )
    if not connection.charges_enabled:
        raise NotReadyToCharge(
            _(
                "The client billing account cannot take payments yet: "
                "Stripe's onboarding is not complete."
            )
        )
    return connection


def checkout_params(request: BillingRequest) -> dict[str, Any]:
    """The Checkout Session parameters for a request."""
    price_data: dict[str, Any] = {
        "currency": request.currency,
        "unit_amount": request.amount,
        "product_data": {"name": request.description},
    }
    metadata = {
        "wagtail_client_billing_request": str(request.pk),
        "site": str(request.site_id),
    }
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [{"price_data": price_data, "quantity": 1}],
        "customer_email": request.email,
        "client_reference_id": f"wcb-{request.pk}",
        "metadata": metadata,
        "success_url": request.success_url,
        "cancel_url": request.cancel_url,
        "expires_at": int(request.expires_at.timestamp()),
    }
    if request.is_recurring:
        price_data["recurring"] = {"interval": RECURRING_INTERVAL[request.billing_type]}
        params["mode"] = "subscription"
        params["subscription_data"] = {"metadata": metadata}
    else:
        params["payment_intent_data"] = {"metadata": metadata}
    return params


def create_request(
    *,
    site: Site,
    details: RequestDetails,
    nonce: str | None = None,
    user: Any = None,
    renewed_from: BillingRequest | None = None,
) -> BillingRequest:
    """Create a request and its Checkout Session together, or neither.

    The row is inserted and the session created inside one transaction: if Stripe
    refuses or cannot be reached, the row is rolled back and nothing is saved. The
    idempotency key comes from the row's own random token, so an SDK retry returns the
    same session; ``nonce`` (from the form) makes a double submission return the first
    request instead of billing the client twice.
    """
    connection = ready_connection()
    if nonce:
        existing = BillingRequest.objects.filter(form_nonce=nonce).first()
        if existing:
            raise AlreadySubmitted(existing)
    try:
        with transaction.atomic():
            request = BillingRequest.objects.create(
                site=site,
                form_nonce=nonce or None,
                renewed_from=renewed_from,
                **asdict(details),
                mode=connection.mode,
                account_id="" if connection.direct else connection.account_id,
                created_by=user if getattr(user, "pk", None) else None,
                expires_at=timezone.now() + timedelta(seconds=session_lifetime()),
            )
            session = stripe_api.create_checkout_session(
                request.mode,
                account_id=request.account_id,
                params=checkout_params(request),
                idempotency_key=f"wcb-checkout-{request.token}",
            )
            request.checkout_session_id = session.id
            request.checkout_url = session.url
            request.expires_at = datetime.fromtimestamp(session.expires_at, tz=UTC)
            request.save(update_fields=["checkout_session_id", "checkout_url", "expires_at"])
            log(request, ACTION_CREATE, user=user, data=_log_data(request))
            transaction.on_commit(lambda: _created(request))
    except IntegrityError:
        existing = BillingRequest.objects.filter(form_nonce=nonce).first() if nonce else None
        if existing:  # the same form, submitted concurrently
            raise AlreadySubmitted(existing) from None
        renewal = renewal_of(renewed_from)
        if renewal:  # renewed concurrently from another form
            raise AlreadyRenewed(renewal) from None
        raise
    return request


def pending_twin(site: Site, details: RequestDetails) -> BillingRequest | None:
    """A Pending request of ``site`` with the very same details, if any: sending
    another one is most often a mistake (a form sent again after Back, a colleague
    billing the same thing), and "Resend email" is what re-sends the first one."""
    return (
        BillingRequest.objects.filter(
            site=site, status=Status.PENDING, expires_at__gt=timezone.now(), **asdict(details)
        )
        .order_by("-created_at")
        .first()
    )


def _announce(signal: Signal, request: BillingRequest, **kwargs: Any) -> None:
    """Send one of our signals; a receiver that fails is logged, never propagated.

    The transition has committed by then: an integrator's failing receiver must not
    turn it into an error page or a failed webhook, skip the client's email, or keep
    the other receivers (and, in the sweep, the other requests) from hearing of it.
    """
    for receiver, result in signal.send_robust(
        sender=BillingRequest, billing_request=request, **kwargs
    ):
        if isinstance(result, Exception):
            logger.error(
                "A receiver of a billing request signal failed (%r, request %s).",
                receiver,
                request.pk,
                exc_info=result,
            )


def _created(request: BillingRequest) -> None:
    from . import mail

    _announce(signals.billing_request_created, request)
    mail.queue_billing_email(request)


def _log_data(request: BillingRequest, **extra: Any) -> dict[str, Any]:
    return {
        "site": request.site_id,
        "email": request.email,
        "amount": request.amount,
        "currency": request.currency,
        "billing_type": request.billing_type,
        **extra,
    }


def _transition(
    request_filter: Q, *, to: str, from_statuses: tuple[str, ...], **values: Any
) -> BillingRequest | None:
    """One conditional UPDATE; the request if this call made the change, else None."""
    with transaction.atomic():
        ids = list(
            BillingRequest.objects.filter(request_filter, status__in=from_statuses).values_list(
                "pk", flat=True
            )[:2]
        )
        if len(ids) != 1:
            return None
        updated = BillingRequest.objects.filter(pk=ids[0], status__in=from_statuses).update(
            status=to, **values
        )
        if not updated:
            return None
        return BillingRequest.objects.select_related("site").get(pk=ids[0])


def mark_paid(
    request_filter: Q, *, subscription_id: str = "", source: str, user: Any = None
) -> BillingRequest | None:
    """Pending (or, late, Expired/Deleted) -> Paid; the request if this call won."""
    now = timezone.now()
    extra: dict[str, Any] = {"paid_at": now, "payment_state": ""}
    if subscription_id:
        extra["subscription_id"] = subscription_id
        extra["subscription_status"] = "active"
    with transaction.atomic():
        request = _transition(
            request_filter, to=Status.PAID, from_statuses=(Status.PENDING,), **extra
        )
        late = False
        if request is None:
            request = _transition(
                request_filter,
                to=Status.PAID,
                from_statuses=(Status.EXPIRED, Status.DELETED),
                late_payment=True,
                **extra,
            )
            late = request is not None
        if request is None:
            return None
        # Money taken for a request whose account is gone (unlinked, replaced,
        # deauthorized) is applied all the same, and flagged for the agency to look at.
        gone = not agency.account_is_linked(request)
        if gone and not late:
            BillingRequest.objects.filter(pk=request.pk).update(late_payment=True)
            request.late_payment = late = True
        log(request, ACTION_PAID, user=user, data=_log_data(request, source=source, late=late))
        notifications.notify(Notification.Kind.PAID, request, key=f"paid-{request.pk}")
        transaction.on_commit(lambda: _announce(signals.billing_request_paid, request, late=late))
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
    """Pending -> Expired; the request if this call won."""
    with transaction.atomic():
        request = _transition(
            request_filter,
            to=Status.EXPIRED,
            from_statuses=(Status.PENDING,),
            expired_at=timezone.now(),
        )
        if request is None:
            return None
        log(request, ACTION_EXPIRED, data=_log_data(request, source=source))
        transaction.on_commit(lambda: _announce(signals.billing_request_expired, request))
    return request


class _PaidMeanwhile(Exception):
    """Stripe says the session being deleted was paid: undo the delete, confirm the payment."""

    def __init__(self, session: stripe_api.CheckoutSession) -> None:
        super().__init__(session.id)
        self.session = session


def delete_request(request: BillingRequest, *, user: Any = None) -> BillingRequest:
    """Mark Deleted and expire the session at Stripe (so the link dies), together.

    The row is marked Deleted first and the session expired in the same transaction:
    the ``checkout.session.expired`` webhook that Stripe sends for it (which can arrive
    before this commits) then finds nothing pending and cannot make the request Expired
    instead. If Stripe says the session was already paid, the request becomes Paid
    instead. Stripe unreachable: ``stripe_api.StripeFailure`` and nothing changes.
    """
    if request.status != Status.PENDING:
        raise BillingError(_("Only pending billing requests can be deleted."))
    try:
        with transaction.atomic():
            deleted = _transition(
                Q(pk=request.pk),
                to=Status.DELETED,
                from_statuses=(Status.PENDING,),
                deleted_at=timezone.now(),
            )
            if deleted is None:  # something else ended it meanwhile
                return BillingRequest.objects.get(pk=request.pk)
            if request.checkout_session_id:
                session = stripe_api.expire_checkout_session(
                    request.mode,
                    account_id=request.account_id,
                    session_id=request.checkout_session_id,
                )
                if session.status == "complete" and session.payment_status == "paid":
                    raise _PaidMeanwhile(session)  # rolls the delete back
            log(deleted, ACTION_DELETED, user=user, data=_log_data(deleted))
            transaction.on_commit(lambda: _announce(signals.billing_request_deleted, deleted))
    except _PaidMeanwhile as paid:
        result = mark_paid(
            Q(pk=request.pk), subscription_id=paid.session.subscription, source="delete", user=user
        )
        return result or BillingRequest.objects.get(pk=request.pk)
    return deleted


def expire_overdue(*, now: datetime | None = None, batch_size: int = 5000) -> list[int]:
    """Flip every Pending request past ``expires_at`` to Expired, set-based, in batches.

    Each batch is one ``UPDATE ... WHERE status = 'pending' ... RETURNING id``, so only
    the rows this sweep really flipped get an audit entry and a signal, even while
    webhooks change others at the same moment.
    """
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
    flipped: list[int] = []
    while True:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(
                    sql, [Status.EXPIRED, now, Status.PENDING, now, batch_size, Status.PENDING]
                )
                ids = [row[0] for row in cursor.fetchall()]
            if ids:
                _after_sweep(ids)
        flipped.extend(ids)
        if len(ids) < batch_size:
            return flipped


def _after_sweep(ids: list[int]) -> None:
    """One audit entry per flipped request (bulk), and each one's signal after commit."""
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
                data=_log_data(request, source="sweep"),
            )
            for request in requests
        ],
        batch_size=1000,
    )

    def send() -> None:
        for request in requests:
            _announce(signals.billing_request_expired, request)

    transaction.on_commit(send)


ACTION_RENEW = "wagtail_client_billing.request.renew"


def renew_request(
    request: BillingRequest, *, nonce: str | None = None, user: Any = None
) -> BillingRequest:
    """A new Pending request with the same details as an Expired or Deleted one.

    The new request gets its own Checkout Session, token and email, and points at the
    old one (``renewed_from``); the old one is kept as it is, with a "renewed" entry in
    its audit log. A request is renewed once: a second try raises ``AlreadyRenewed``
    with the renewal, even when two people renew at the same moment.
    """
    if request.status not in (Status.EXPIRED, Status.DELETED):
        raise BillingError(_("Only expired or deleted billing requests can be renewed."))
    if nonce and (first := BillingRequest.objects.filter(form_nonce=nonce).first()):
        raise AlreadySubmitted(first)  # this very form, sent twice
    renewal = renewal_of(request)
    if renewal:
        raise AlreadyRenewed(renewal)
    renewed = create_request(
        site=request.site,
        details=RequestDetails.of(request),
        nonce=nonce,
        user=user,
        renewed_from=request,
    )
    log(request, ACTION_RENEW, user=user, data={"renewed_as": renewed.pk})
    return renewed


def renewal_of(request: BillingRequest | None) -> BillingRequest | None:
    """The request that renewed ``request``, if any (there is at most one)."""
    if request is None:
        return None
    return BillingRequest.objects.filter(renewed_from=request).first()
