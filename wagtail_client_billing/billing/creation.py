"""Making a billing request: a committed row, the Checkout Session outside any
transaction, then Pending under the connection's lock; renewing one."""

from __future__ import annotations

import hashlib
import logging
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from django.db import IntegrityError, transaction
from django.db import connection as database
from django.db.models import Model
from django.utils import timezone
from django.utils.translation import gettext as _
from wagtail.log_actions import log
from wagtail.models import Site

from .. import connections, signals, stripe_api
from ..conf import REQUEST_TTL_MAX, REQUEST_TTL_MIN, billing_settings
from ..db import insert_select
from ..mail.queue import (
    billing_email,
    billing_email_task,
    enqueue_billing_email,
    queue_billing_email,
)
from ..models import AgencyBillingSettings, BillingRequest, StripeConnection
from . import errors
from .invoicing import COLUMNS as INVOICING_COLUMNS
from .invoicing import Invoicing
from .states import ACTION_CREATE, ACTION_RENEW, announce, log_entry

logger = logging.getLogger("wagtail_client_billing.billing")

Status = BillingRequest.Status
CREATING = BillingRequest.CREATING

# Stripe allows expires_at up to 24 h after creation on its clock: stay inside by the skew.
CLOCK_SKEW_MARGIN = 5 * 60
RECURRING_INTERVAL = {"monthly": "month", "yearly": "year"}
CONNECTIONS, SETTINGS = StripeConnection._meta.db_table, AgencyBillingSettings._meta.db_table
SESSION = ("status", "checkout_session_id", "checkout_url", "expires_at")  # set when Pending


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
        return cls(**{f.name: getattr(request, f.name) for f in fields(cls)})


def session_lifetime() -> int:
    """Seconds from now to the session's ``expires_at``: the TTL, inside Stripe's range."""
    ttl = billing_settings().request_ttl
    return max(REQUEST_TTL_MIN + 60, min(ttl, REQUEST_TTL_MAX - CLOCK_SKEW_MARGIN))


def ready_connection() -> StripeConnection:
    """The active mode's linked connection if it can charge; else ``NotReadyToCharge``."""
    connection = connections.linked_connection()
    if connection is None:
        raise errors.NotReadyToCharge(
            _("No client billing account is connected, so no billing request can be sent yet.")
        )
    if not connection.charges_enabled:
        raise errors.NotReadyToCharge(
            _(
                "The client billing account cannot take payments yet: "
                "Stripe's onboarding is not complete."
            )
        )
    return connection


def checkout_params(request: BillingRequest, invoicing: Invoicing | None = None) -> dict[str, Any]:
    """The Checkout Session's parameters; ``invoicing`` None: the settings as they are now."""
    invoicing = invoicing or Invoicing.current()
    price_data: dict[str, Any] = {
        "currency": request.currency,
        "unit_amount": request.amount,
        "product_data": {"name": request.description},
    }
    metadata = {"wagtail_client_billing_request": str(request.pk), "site": str(request.site_id)}
    object_data = "subscription_data" if request.is_recurring else "payment_intent_data"
    if request.is_recurring:
        price_data["recurring"] = {"interval": RECURRING_INTERVAL[request.billing_type]}
    return {
        "mode": "subscription" if request.is_recurring else "payment",
        "line_items": [{"price_data": price_data, "quantity": 1}],
        "customer_email": request.email,
        "client_reference_id": f"wcb-{request.pk}",
        "metadata": metadata,
        "success_url": request.success_url,
        "cancel_url": request.cancel_url,
        "expires_at": int(request.expires_at.timestamp()),
        object_data: {"metadata": metadata},
        **invoicing.checkout_params(recurring=request.is_recurring, metadata=metadata),
    }


def create_request(
    *,
    site: Site,
    details: RequestDetails,
    nonce: str | None = None,
    user: Any = None,
    renewed_from: BillingRequest | None = None,
    allow_twin: bool = False,
) -> BillingRequest:
    """A request and its Checkout Session, no transaction open across Stripe: the row is
    committed as ``CREATING`` (not listed, swept or emailed), then made Pending. Stripe refusing:
    the row goes. No answer: the same form (nonce) resumes it with the same idempotency key."""
    # The active mode's linked account (as requests store it) and whether it can charge, this
    # form's row's status, the latest pending twin's pk, the invoice settings: one query when
    # all is well.
    mode, account_id, ready, earlier, twin, *invoicing = _looked_up(
        site, details, nonce, allow_twin
    )
    if earlier not in (None, CREATING):  # this very form, sent twice (a timed-out one resumes)
        raise errors.AlreadySubmitted(BillingRequest.objects.get(form_nonce=nonce))
    if renewal := renewal_of(renewed_from):
        raise errors.AlreadyRenewed(renewal)
    if earlier is None and twin is not None:  # the very same request: most often a mistake
        raise errors.PendingTwin(BillingRequest.objects.get(pk=twin))
    if not ready:  # none linked, or not ready: why (or ready meanwhile)
        connection = ready_connection()
        mode, account_id = connection.mode, connections.request_account(connection)
    values = {"mode": mode, "account_id": account_id, **asdict(details)}
    request = _start_creation(site, values, nonce, user, renewed_from, earlier == CREATING)
    try:
        session = stripe_api.create_checkout_session(
            request.mode,
            account_id=request.account_id,
            params=checkout_params(request, Invoicing.of_row(invoicing)),
            idempotency_key=checkout_idempotency_key(request),
        )
    except stripe_api.StripeNoAnswer:
        # Stripe may have made the session: keep the row for the form's retry (same key).
        if not nonce:
            _discard_creation(request)
        raise
    except stripe_api.StripeFailure:
        # Nothing usable was made; a retry gets a new row, so a new key (Stripe saves errors).
        _discard_creation(request)
        raise
    return _finish_creation(request, session, user=user)


def _looked_up(site: Site, details: RequestDetails, nonce: str | None, allow_twin: bool) -> Any:
    """One row, linked connection or not (NULLs); the twin unless allowed ("Send another one");
    the invoice settings (NULLs without a settings row). Names are ours, values are parameters."""
    quote, table = database.ops.quote_name, BillingRequest._meta.db_table
    same = {"site_id": site.pk, "status": Status.PENDING, **asdict(details)}
    twin = "expires_at > %s" + "".join(f" AND {quote(name)} = %s" for name in same)
    invoicing = ", ".join(f"s.{quote(name)}" for name in INVOICING_COLUMNS)
    sql = (
        "SELECT c.mode, CASE WHEN c.direct THEN '' ELSE c.account_id END, c.charges_enabled, "  # noqa: S608
        f"(SELECT status FROM {quote(table)} WHERE form_nonce = %s), "
        f"(SELECT id FROM {quote(table)} WHERE %s AND {twin} ORDER BY created_at DESC LIMIT 1), "
        f"{invoicing} FROM (SELECT 1) AS one LEFT JOIN {quote(SETTINGS)} AS s "
        f"ON s.id = (SELECT MIN(id) FROM {quote(SETTINGS)}) "
        f"LEFT JOIN {quote(CONNECTIONS)} AS c ON c.unlinked_at IS NULL AND c.mode = s.active_mode"
    )
    now = database.ops.adapt_datetimefield_value(timezone.now())
    with database.cursor() as cursor:
        cursor.execute(sql, [nonce, not allow_twin, now, *same.values()])
        return cursor.fetchone()


def checkout_idempotency_key(request: BillingRequest) -> str:
    """Nonce and row: a retried form resumes its row (Stripe returns the session it made), a
    discarded row's successor gets a fresh key. Hashed: a header takes only plain ASCII."""
    if request.form_nonce:
        digest = hashlib.sha256(request.form_nonce.encode("utf-8", "surrogatepass"))
        return f"wcb-checkout-{digest.hexdigest()[:32]}-{request.pk}"
    return f"wcb-checkout-{request.token}"


def _start_creation(
    site: Site,
    values: dict[str, Any],
    nonce: str | None,
    user: Any,
    renewed_from: BillingRequest | None,
    resuming: bool,
) -> BillingRequest:
    wanted = {"site_id": site.pk, "renewed_from_id": getattr(renewed_from, "pk", None), **values}
    if resuming and (resumed := _resume_creation(nonce, wanted)):
        return resumed
    try:
        # A savepoint only in a caller's transaction: the unique nonce may be taken meanwhile.
        with transaction.atomic() if database.in_atomic_block else nullcontext():
            return BillingRequest.objects.create(
                site=site,
                form_nonce=nonce or None,
                renewed_from=renewed_from,
                **values,
                status=CREATING,
                created_by=user if getattr(user, "pk", None) else None,
                expires_at=timezone.now() + timedelta(seconds=session_lifetime()),
            )
    except IntegrityError:
        if resumed := _resume_creation(nonce, wanted):  # the same form, submitted concurrently
            return resumed
        if renewal := renewal_of(renewed_from):  # renewed concurrently from another form
            raise errors.AlreadyRenewed(renewal) from None
        if renewed_from and BillingRequest.objects.filter(renewed_from=renewed_from).exists():
            raise errors.RenewalInProgress() from None
        raise


def _resume_creation(nonce: str | None, wanted: dict[str, Any]) -> BillingRequest | None:
    """This form's earlier row, to ask Stripe again with the same key; or None for a new row."""
    earlier = BillingRequest.objects.filter(form_nonce=nonce).first() if nonce else None
    if earlier is None:
        return None
    if earlier.status != CREATING:
        raise errors.AlreadySubmitted(earlier)
    if any(getattr(earlier, name) != value for name, value in wanted.items()):
        # Changed form, new key; a session made for the old row was never sent and expires.
        _discard_creation(earlier)
        return None
    still_creating = BillingRequest.objects.filter(pk=earlier.pk, status=CREATING)
    if still_creating.update(created_at=timezone.now()):  # the sweep spares it while we wait
        return BillingRequest.objects.select_related("site").get(pk=earlier.pk)
    finished = BillingRequest.objects.filter(pk=earlier.pk).first()
    if finished is not None:  # a concurrent submission of the form finished it meanwhile
        raise errors.AlreadySubmitted(finished)
    return None  # the sweep removed it meanwhile


def _discard_creation(request: BillingRequest) -> None:
    BillingRequest.objects.filter(pk=request.pk, status=CREATING).delete()


def _finish_creation(
    request: BillingRequest, session: stripe_api.CheckoutSession, *, user: Any
) -> BillingRequest:
    """Store the session and make the request Pending with its audit entry; the signal and
    the email after the commit."""
    request.status, request.checkout_session_id = Status.PENDING, session.id
    request.checkout_url = cast(str, session.url)  # Stripe gives an open session's
    request.expires_at = datetime.fromtimestamp(session.expires_at, tz=UTC)
    made, queued = _make_pending(request, log_entry(request, ACTION_CREATE, user=user))
    if made:
        transaction.on_commit(lambda: announce(signals.billing_request_created, request))
        if queued is None:
            transaction.on_commit(lambda: queue_billing_email(request))
        elif not queued:  # its outbox row went in with it: only django-q2's task now
            transaction.on_commit(lambda: enqueue_billing_email(request.pk))
        return request
    if not connections.account_is_linked(request):
        # Unlinked while Stripe made the session, too early for the unlink to withdraw it.
        _expire_unsent_session(request, session)
        _discard_creation(request)
        raise errors.NotReadyToCharge(
            _(
                "The client billing account was unlinked while this billing request was "
                "being sent: nothing was sent."
            )
        )
    current = BillingRequest.objects.filter(pk=request.pk).first()
    if current is not None and current.checkout_session_id == session.id:
        raise errors.AlreadySubmitted(current)  # the same form, sent twice at once: it won
    # The sweep removed this creation while Stripe took its time.
    logger.warning("Billing request %s was abandoned before Stripe answered.", request.pk)
    _expire_unsent_session(request, session)
    raise stripe_api.StripeUnavailable(
        _("Stripe took too long to answer. Nothing was sent; please send the form again.")
    )


def _make_pending(request: BillingRequest, entry: Model) -> tuple[bool, bool | None]:
    """Whether this call stored the session and made the ``CREATING`` row Pending, its account
    still linked (that connection's row locked: ``connections.unlink_unless_pending`` counts
    under the lock), and inserted the audit ``entry`` with it; and whether the request's
    email went with them: on PostgreSQL one statement, the ``UPDATE ... RETURNING`` feeding
    the audit entry's, the email's outbox row's and (with django-q2's ORM broker on this
    database) its task's INSERTs (True: all in; False: the outbox row in, the task still to
    hand over); elsewhere one transaction and None (the email queued after the commit)."""
    quote, postgres = database.ops.quote_name, database.vendor == "postgresql"
    fields = [field for field in BillingRequest._meta.concrete_fields if field.name in SESSION]
    lock, made = (" FOR UPDATE", " FROM made") if postgres else ("", "")
    sets = ", ".join(f"{quote(str(field.column))} = %s" for field in fields)
    update = (  # names are ours, values are parameters
        f"UPDATE {quote(BillingRequest._meta.db_table)} SET {sets} WHERE id = %s AND status = %s "  # noqa: S608
        f"AND EXISTS (SELECT 1 FROM {quote(CONNECTIONS)} WHERE mode = %s AND unlinked_at IS NULL "
        f"AND CASE WHEN direct THEN '' ELSE account_id END = %s{lock}) RETURNING id"
    )
    insert, values = insert_select(entry, made)
    params = [field.get_db_prep_save(getattr(request, field.attname), database) for field in fields]
    params += [request.pk, CREATING, request.mode, request.account_id]
    with database.cursor() as cursor:
        if not postgres:
            with transaction.atomic():
                cursor.execute(update, params)
                if cursor.fetchone() is None:
                    return False, None
                cursor.execute(insert, values)
            return True, None
        email_sql, email_values = insert_select(billing_email(request), made)
        sql = (
            f"WITH made AS ({update}), logged AS ({insert}), "
            f"email AS ({email_sql} ON CONFLICT (key) DO NOTHING RETURNING id)"
        )
        params += values + email_values
        if (task := billing_email_task(request.pk)) is not None:
            task_sql, task_values = insert_select(task, " WHERE EXISTS (SELECT 1 FROM email)")
            sql += f", task AS ({task_sql})"
            params += task_values
        sql += " SELECT (SELECT count(*) FROM email) FROM made"  # names ours, values parameters
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return False, None
    # The email's key was taken (never for a new row): queued again the usual way.
    return True, (task is not None) if row[0] else None


def _expire_unsent_session(request: BillingRequest, session: stripe_api.CheckoutSession) -> None:
    try:  # best effort: it expires anyway
        stripe_api.expire_checkout_session(
            request.mode, account_id=request.account_id, session_id=session.id
        )
    except stripe_api.StripeFailure as error:
        logger.warning("Could not expire the unsent session %s: %s", session.id, error)


def stalled_creation_age() -> timedelta:
    """How long a ``CREATING`` row may wait for Stripe before the sweep removes it."""
    conf = billing_settings()
    longest = conf.stripe_timeout * (conf.stripe_max_network_retries + 1)
    return timedelta(seconds=max(15 * 60, 2 * longest + 60))


def abandon_stalled_creations(*, now: datetime | None = None) -> int:
    """Remove ``CREATING`` rows whose Stripe call never returned: the editor saw an error."""
    cutoff = (now or timezone.now()) - stalled_creation_age()
    stalled = BillingRequest.objects.filter(status=CREATING, created_at__lte=cutoff)
    count = stalled.delete()[1].get(BillingRequest._meta.label, 0)
    if count:
        logger.warning("Removed %s billing request(s) Stripe never answered for.", count)
    return count


def renew_request(
    request: BillingRequest, *, nonce: str | None = None, user: Any = None
) -> BillingRequest:
    """A new request with the same details as an Expired or Deleted one, renewed once."""
    if request.status not in (Status.EXPIRED, Status.DELETED):
        raise errors.BillingError(_("Only expired or deleted billing requests can be renewed."))
    renewed = create_request(
        site=request.site,
        details=RequestDetails.of(request),
        nonce=nonce,
        user=user,
        renewed_from=request,
        allow_twin=True,
    )
    log(request, ACTION_RENEW, user=user, data={"renewed_as": renewed.pk})
    return renewed


def renewal_of(request: BillingRequest | None) -> BillingRequest | None:
    if request is None:  # not a renewal: no queryset to build
        return None
    return BillingRequest.objects.filter(renewed_from=request).exclude(status=CREATING).first()
