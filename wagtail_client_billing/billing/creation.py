"""Making a billing request: a committed row, the Checkout Session outside any
transaction, then Pending under the connection's lock; renewing one."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from wagtail.log_actions import log
from wagtail.models import Site

from .. import agency, signals, stripe_api
from ..conf import REQUEST_TTL_MAX, REQUEST_TTL_MIN, billing_settings
from ..mail.queue import queue_billing_email
from ..models import BillingRequest, StripeConnection
from .errors import (
    AlreadyRenewed,
    AlreadySubmitted,
    BillingError,
    NotReadyToCharge,
    PendingTwin,
    RenewalInProgress,
)
from .states import ACTION_CREATE, ACTION_RENEW, announce, log_data

logger = logging.getLogger("wagtail_client_billing.billing")

Status = BillingRequest.Status


# Stripe allows expires_at up to 24 h after creation, measured on its clock: stay a
# little inside so that a few minutes of skew cannot make Stripe refuse the session.
CLOCK_SKEW_MARGIN = 5 * 60
RECURRING_INTERVAL = {"monthly": "month", "yearly": "year"}


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
            log(request, ACTION_CREATE, user=user, data=log_data(request))
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


def _created(request: BillingRequest) -> None:
    announce(signals.billing_request_created, request)
    queue_billing_email(request)


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
