"""Billing requests' domain operations and their state machine.

Pending -> Paid | Expired | Deleted. Every transition is one conditional UPDATE
(``... WHERE status = 'pending'``), so a webhook, the expiry sweep, a delete and a
duplicate delivery can race and exactly one wins; only the winner writes the audit log
and sends the signal. A payment Stripe confirms for an Expired or Deleted request still
makes it Paid, flagged ``late_payment``: money taken is never hidden.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.dispatch import Signal
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from wagtail.log_actions import log
from wagtail.models import ModelLogEntry, Site

from . import agency, signals, stripe_api
from .conf import REQUEST_TTL_MAX, REQUEST_TTL_MIN, billing_settings
from .mail.queue import notify, queue_billing_email
from .models import BillingRequest, OutgoingEmail, StripeConnection

logger = logging.getLogger(__name__)

Status = BillingRequest.Status

ACTION_CREATE = "wagtail_client_billing.request.create"
ACTION_PAID = "wagtail_client_billing.request.paid"
ACTION_EXPIRED = "wagtail_client_billing.request.expired"
ACTION_DELETED = "wagtail_client_billing.request.deleted"
ACTION_PAYMENT_FAILED = "wagtail_client_billing.request.payment_failed"
ACTION_RESEND = "wagtail_client_billing.request.resend"

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


class PendingTwin(BillingError):
    """The very same request is already pending for the site; ``billing_request`` is it."""

    def __init__(self, billing_request: BillingRequest) -> None:
        super().__init__(
            _(
                "The same billing request to %(email)s is already pending (sent %(when)s). "
                "To email it again, use Resend email on it. To bill the client a second "
                "time, tick “Send another one” and send again."
            )
            % {
                "email": billing_request.email,
                "when": date_format(
                    timezone.localtime(billing_request.created_at), "SHORT_DATETIME_FORMAT"
                ),
            }
        )
        self.billing_request = billing_request


class RenewalInProgress(BillingError):
    """Someone else's renewal of the request is waiting for Stripe's session right now."""

    def __init__(self) -> None:
        super().__init__(
            _("This billing request is being renewed at this moment; try again in a minute.")
        )


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
    allow_twin: bool = False,
) -> BillingRequest:
    """Create a request and its Checkout Session, with no transaction open across Stripe.

    First the checks: a form already sent (its nonce is taken) raises
    ``AlreadySubmitted``; a request renewed before raises ``AlreadyRenewed``; the very
    same request already pending for the site raises ``PendingTwin`` unless
    ``allow_twin`` (the editor ticked "Send another one", or a renewal).

    1. The row is saved and committed as ``CREATING``: its id goes into the session's
       metadata, but nothing lists, counts, sweeps or emails it yet.
    2. Stripe is asked for the session, outside any transaction, with an idempotency
       key made of the form's nonce and the row (``checkout_idempotency_key``).
    3. One short transaction stores the session and makes the request Pending; the
       signal and the client's email follow the commit.

    Stripe refuses or fails: the row is removed and the error raised (the form comes
    back as typed). No answer (a timeout, or Stripe still busy with the key): the row
    stays ``CREATING``, so the same form sent again (same nonce) resumes it with the
    same key and gets the same session back: one client, one session. A creation that
    nobody resumes is removed by the sweep (``abandon_stalled_creations``). A form
    whose first submission went through raises ``AlreadySubmitted``.
    """
    earlier = BillingRequest.objects.filter(form_nonce=nonce).first() if nonce else None
    if earlier is not None and earlier.status != BillingRequest.CREATING:
        raise AlreadySubmitted(earlier)  # this very form, sent twice (a timed-out one resumes)
    if renewal := renewal_of(renewed_from):
        raise AlreadyRenewed(renewal)
    # A form being resumed was asked already (its first attempt timed out).
    if earlier is None and not allow_twin and (twin := pending_twin(site, details)):
        raise PendingTwin(twin)
    connection = ready_connection()
    request = _start_creation(site, details, nonce, user, renewed_from, connection)
    try:
        session = stripe_api.create_checkout_session(
            request.mode,
            account_id=request.account_id,
            params=checkout_params(request),
            idempotency_key=checkout_idempotency_key(request),
        )
    except stripe_api.StripeNoAnswer:
        # Stripe may have made the session: keep the row for the form's retry, which
        # sends the same key. Without a nonce nothing can resume it.
        if not nonce:
            _discard_creation(request)
        raise
    except stripe_api.StripeFailure:
        # Refused, or an error Stripe saves under the key: nothing usable was made, and
        # a retry gets a new row (and so a new key).
        _discard_creation(request)
        raise
    return _finish_creation(request, session, user=user)


def checkout_idempotency_key(request: BillingRequest) -> str:
    """The key of a request's Checkout Session create: the form's nonce and the row.

    Retries of the same form resume the same row, so they send the same key and Stripe
    returns the session it made (after a timeout too). The row's id is part of it so
    that a form whose attempt was refused or discarded starts again with a fresh key
    (Stripe would replay a saved error, or refuse other parameters, for the old one).
    The nonce is hashed: it comes from a form and a header takes only plain ASCII.
    """
    if request.form_nonce:
        digest = hashlib.sha256(request.form_nonce.encode("utf-8", "surrogatepass"))
        return f"wcb-checkout-{digest.hexdigest()[:32]}-{request.pk}"
    return f"wcb-checkout-{request.token}"


def _start_creation(
    site: Site,
    details: RequestDetails,
    nonce: str | None,
    user: Any,
    renewed_from: BillingRequest | None,
    connection: StripeConnection,
) -> BillingRequest:
    """The committed ``CREATING`` row to ask Stripe for: this form's earlier one, or new."""
    account_id = "" if connection.direct else connection.account_id
    wanted = {
        "site_id": site.pk,
        "renewed_from_id": getattr(renewed_from, "pk", None),
        "mode": connection.mode,
        "account_id": account_id,
        **asdict(details),
    }
    if nonce and (earlier := BillingRequest.objects.filter(form_nonce=nonce).first()):
        resumed = _resume_creation(earlier, wanted)
        if resumed is not None:
            return resumed
    try:
        with transaction.atomic():  # a savepoint: the unique nonce may be taken meanwhile
            return BillingRequest.objects.create(
                site=site,
                form_nonce=nonce or None,
                renewed_from=renewed_from,
                **asdict(details),
                status=BillingRequest.CREATING,
                mode=connection.mode,
                account_id=account_id,
                created_by=user if getattr(user, "pk", None) else None,
                expires_at=timezone.now() + timedelta(seconds=session_lifetime()),
            )
    except IntegrityError:
        earlier = BillingRequest.objects.filter(form_nonce=nonce).first() if nonce else None
        if earlier is not None:  # the same form, submitted concurrently
            resumed = _resume_creation(earlier, wanted)
            if resumed is not None:
                return resumed
        renewal = renewal_of(renewed_from)
        if renewal:  # renewed concurrently from another form
            raise AlreadyRenewed(renewal) from None
        if renewed_from and BillingRequest.objects.filter(renewed_from=renewed_from).exists():
            raise RenewalInProgress() from None
        raise


def _resume_creation(earlier: BillingRequest, wanted: dict[str, Any]) -> BillingRequest | None:
    """This form's earlier row, to ask Stripe again with the same key; or None for a
    new row. ``AlreadySubmitted`` if that earlier submission went through."""
    if earlier.status != BillingRequest.CREATING:
        raise AlreadySubmitted(earlier)
    if any(getattr(earlier, name) != value for name, value in wanted.items()):
        # The form was changed before it was sent again: other parameters need another
        # key (Stripe refuses a key reused with different ones). The earlier attempt
        # was never listed nor emailed; a session Stripe may have made for it was never
        # sent to anyone and expires there on its own.
        _discard_creation(earlier)
        return None
    # Touched, so that the sweep leaves it alone while this attempt waits for Stripe.
    if BillingRequest.objects.filter(pk=earlier.pk, status=BillingRequest.CREATING).update(
        created_at=timezone.now()
    ):
        return BillingRequest.objects.select_related("site").get(pk=earlier.pk)
    now = BillingRequest.objects.filter(pk=earlier.pk).first()
    if now is not None:  # a concurrent submission of the form finished it meanwhile
        raise AlreadySubmitted(now)
    return None  # the sweep removed it meanwhile


def _discard_creation(request: BillingRequest) -> None:
    """Remove a row Stripe made no session for (only while it is still ``CREATING``)."""
    BillingRequest.objects.filter(pk=request.pk, status=BillingRequest.CREATING).delete()


def _finish_creation(
    request: BillingRequest, session: stripe_api.CheckoutSession, *, user: Any
) -> BillingRequest:
    """Store the session and make the request Pending: one short transaction."""
    expires_at = datetime.fromtimestamp(session.expires_at, tz=UTC)
    with transaction.atomic():
        if not _lock_own_connection(request):
            unlinked = True
            finished = 0
        else:
            unlinked = False
            finished = BillingRequest.objects.filter(
                pk=request.pk, status=BillingRequest.CREATING
            ).update(
                status=Status.PENDING,
                checkout_session_id=session.id,
                checkout_url=session.url,
                expires_at=expires_at,
            )
        if finished:
            request.refresh_from_db()
            log(request, ACTION_CREATE, user=user, data=_log_data(request))
            transaction.on_commit(lambda: _created(request))
            return request
    if unlinked:
        # The account was unlinked while Stripe made the session: the unlink withdrew
        # every request it could see, and this one was not Pending yet. Withdraw its
        # session too, so no link to an unlinked account ever goes out.
        _expire_unsent_session(request, session)
        _discard_creation(request)
        raise NotReadyToCharge(
            _(
                "The client billing account was unlinked while this billing request was "
                "being sent: nothing was sent."
            )
        )
    current = BillingRequest.objects.filter(pk=request.pk).first()
    if current is not None and current.checkout_session_id == session.id:
        raise AlreadySubmitted(current)  # the same form, sent twice at once: it won
    # The sweep gave up on this creation while Stripe took its time: withdraw the
    # session nobody will hear of, and let the editor send the form again.
    logger.warning("Billing request %s was abandoned before Stripe answered.", request.pk)
    _expire_unsent_session(request, session)
    raise stripe_api.StripeUnavailable(
        _("Stripe took too long to answer. Nothing was sent; please send the form again.")
    )


def _lock_own_connection(request: BillingRequest) -> bool:
    """Whether the request's account is still linked, locking that connection's row.

    ``agency.unlink_unless_pending`` counts the Pending requests under the same lock:
    either this request becomes Pending first (and the unlink withdraws it), or the
    unlink commits first (and this request never becomes Pending).
    """
    return any(
        agency.request_account(linked) == request.account_id
        for linked in StripeConnection.objects.select_for_update().filter(
            mode=request.mode, unlinked_at__isnull=True
        )
    )


def _expire_unsent_session(request: BillingRequest, session: stripe_api.CheckoutSession) -> None:
    """Withdraw a session that no client was sent (best effort: it expires anyway)."""
    try:
        stripe_api.expire_checkout_session(
            request.mode, account_id=request.account_id, session_id=session.id
        )
    except stripe_api.StripeFailure as error:
        logger.warning("Could not expire the unsent session %s: %s", session.id, error)


def stalled_creation_age() -> timedelta:
    """How long a ``CREATING`` row may wait for Stripe before the sweep removes it: far
    longer than one create can take (timeout times attempts), and at least 15 minutes."""
    conf = billing_settings()
    longest = conf.stripe_timeout * (conf.stripe_max_network_retries + 1)
    return timedelta(seconds=max(15 * 60, 2 * longest + 60))


def abandon_stalled_creations(*, now: datetime | None = None) -> int:
    """Remove the ``CREATING`` rows whose Stripe call never came back (the process died).

    They were never listed nor emailed; a session Stripe may have made for one was never
    sent to anyone and expires at Stripe on its own. The editor saw an error, not a
    sent request: finishing them now would bill a client they think was not billed.
    """
    cutoff = (now or timezone.now()) - stalled_creation_age()
    _total, deleted = BillingRequest.objects.filter(
        status=BillingRequest.CREATING, created_at__lte=cutoff
    ).delete()
    count = deleted.get(BillingRequest._meta.label, 0)
    if count:
        logger.warning("Removed %s billing request(s) Stripe never answered for.", count)
    return count


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
    _announce(signals.billing_request_created, request)
    queue_billing_email(request)


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
        notify(OutgoingEmail.Kind.PAID, request, key=f"paid-{request.pk}")
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


def mark_deleted(request_filter: Q, *, source: str) -> BillingRequest | None:
    """Pending -> Deleted (its deletion was asked for); the request if this call won.

    The audit log names who asked (``delete_requested_by``), whichever path wins: the
    delete itself, or the ``checkout.session.expired`` event its Stripe call caused.
    """
    with transaction.atomic():
        request = _transition(
            request_filter,
            to=Status.DELETED,
            from_statuses=(Status.PENDING,),
            deleted_at=timezone.now(),
        )
        if request is None:
            return None
        log(
            request,
            ACTION_DELETED,
            user=request.delete_requested_by,
            data=_log_data(request, source=source),
        )
        transaction.on_commit(lambda: _announce(signals.billing_request_deleted, request))
    return request


def end_with_expired_session(request: BillingRequest, *, source: str) -> BillingRequest | None:
    """Stripe reports the request's session expired: Deleted if its deletion was asked
    for (our own expire call caused it), else Expired. The request if this call won."""
    if request.delete_requested_at is not None:
        return mark_deleted(Q(pk=request.pk), source=source)
    return mark_expired(Q(pk=request.pk), source=source)


def delete_request(request: BillingRequest, *, user: Any = None) -> BillingRequest:
    """Withdraw a Pending request: expire its session at Stripe (so the link dies), then
    mark it Deleted; no transaction is open while Stripe is called.

    The wish to delete is committed on the row first (``delete_requested_at``), so the
    ``checkout.session.expired`` event our expire call causes (which can arrive before
    this returns) makes the request Deleted, not Expired: whichever of the two comes
    first wins and the other finds nothing to do. If Stripe says the session was paid,
    the request becomes Paid instead. Stripe unreachable: ``stripe_api.StripeFailure``,
    and the request stays Pending (the wish stays recorded: if Stripe did expire the
    session after all, its event makes the request Deleted).
    """
    if request.status != Status.PENDING:
        raise BillingError(_("Only pending billing requests can be deleted."))
    asked = BillingRequest.objects.filter(pk=request.pk, status=Status.PENDING).update(
        delete_requested_at=timezone.now(),
        delete_requested_by=user if getattr(user, "pk", None) else None,
    )
    if not asked:  # something else ended it meanwhile
        return BillingRequest.objects.get(pk=request.pk)
    if request.checkout_session_id:
        session = stripe_api.expire_checkout_session(
            request.mode, account_id=request.account_id, session_id=request.checkout_session_id
        )
        if stripe_api.is_paid(session):
            paid = mark_paid(
                Q(pk=request.pk), subscription_id=session.subscription, source="delete", user=user
            )
            return paid or BillingRequest.objects.get(pk=request.pk)
    deleted = mark_deleted(Q(pk=request.pk), source="delete")
    return deleted or BillingRequest.objects.get(pk=request.pk)


def resend(request: BillingRequest, *, user: Any = None) -> None:
    """Queue a Pending request's email again ("Resend email"), with an audit entry."""
    if request.status != Status.PENDING:
        raise BillingError(_("Only pending billing requests can be sent again."))
    if not agency.account_is_linked(request):
        raise BillingError(
            _(
                "This billing request's Stripe account was unlinked, so its payment link no "
                "longer works: the email was not sent again."
            )
        )
    log(request, ACTION_RESEND, user=user, data=_log_data(request))
    queue_billing_email(request)


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
    renewed = create_request(
        site=request.site,
        details=RequestDetails.of(request),
        nonce=nonce,
        user=user,
        renewed_from=request,
        allow_twin=True,  # renewing is asking for the same request again
    )
    log(request, ACTION_RENEW, user=user, data={"renewed_as": renewed.pk})
    return renewed


def renewal_of(request: BillingRequest | None) -> BillingRequest | None:
    """The request that renewed ``request``, if any (there is at most one)."""
    if request is None:
        return None
    return (
        BillingRequest.objects.filter(renewed_from=request)
        .exclude(status=BillingRequest.CREATING)
        .first()
    )
