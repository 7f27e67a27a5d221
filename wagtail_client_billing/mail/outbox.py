"""The outbox engine: every email the app sends is an ``OutgoingEmail`` row, sent here.

Claimed (queued -> sending, one conditional UPDATE) just before it goes out, an email goes
out once however many workers try. A failure that may pass is retried with a back-off; one
still "sending" after ``LOST_AFTER`` was lost with its worker: reported, never resent on a
guess. Email state never touches the request's."""

from __future__ import annotations

import contextlib
import functools
import logging
import smtplib
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from anymail.exceptions import AnymailError
from django.conf import settings
from django.core.mail import EmailMessage
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop
from wagtail.log_actions import log

from .. import connections
from ..models import BillingRequest, OutgoingEmail, SiteEmailSettings, StripeConnection
from ..models.outbox import NO_RECIPIENTS
from . import messages, smtp
from .failures import EmailFailed, describe

logger = logging.getLogger(__name__)
Kind = OutgoingEmail.Kind
EmailStatus = OutgoingEmail.Status

ACTION_EMAIL_FAILED = "wagtail_client_billing.email.failed"
EMAIL_TASK_GROUP = "wagtail_client_billing.email"
BILLING_KINDS = (Kind.REQUEST, Kind.REMINDER)
SUBSCRIPTION_KINDS = (Kind.CARD_FAILED, Kind.SUBSCRIPTION_CANCELED)  # to a paying client
NOTIFICATION_KINDS = (
    Kind.PAID, Kind.PAYMENT_FAILED, Kind.NEW_LINK_ASKED, Kind.REFUNDED, Kind.DISPUTED
)  # fmt: skip

# Before attempts 2 to 5; the fifth failure is final.
RETRY_DELAYS = tuple(timedelta(minutes=minutes) for minutes in (1, 5, 15, 60))
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
BATCH_SIZE = 500
LOST_AFTER = timedelta(minutes=15)
# An email in these reached the server (a reminder only follows one).
DELIVERED_STATES = (EmailStatus.SENT, EmailStatus.DELIVERED, EmailStatus.OPENED)


@dataclass
class BatchResult:
    sent: list[tuple[int, str]] = field(default_factory=list)  # (request id, kind)
    more: bool = False  # emails are still due


@dataclass(eq=False)  # hashable, as exceptions are
class _NotSent(Exception):
    """The email is no longer wanted, or has nobody to go to: never retried."""

    reason: str  # stored untranslated (gettext_noop), shown in the reader's language
    status: str = EmailStatus.NOT_SENT


def sites_with_due_emails() -> list[int]:
    due = OutgoingEmail.objects.filter(_due(timezone.now())).values_list("site_id", flat=True)
    return sorted(set(due))


def report_lost_sends(now: datetime | None = None) -> int:
    """Mark failed the emails left "sending" by a worker that died."""
    now = now or timezone.now()
    lost = OutgoingEmail.objects.filter(status=EmailStatus.SENDING, due_at__lte=now)
    reasons = {
        BILLING_KINDS + SUBSCRIPTION_KINDS: gettext_noop(
            "Sending was interrupted (the worker stopped): the email may not have arrived. "
            "Resend it if the client did not get it."
        ),
        NOTIFICATION_KINDS: gettext_noop(
            "Interrupted while sending: it may or may not have gone out."
        ),
    }
    count = sum(
        lost.filter(kind__in=kinds).update(status=EmailStatus.FAILED, error=reason, due_at=None)
        for kinds, reason in reasons.items()
    )
    if count:
        logger.warning("%s email(s) were lost while sending.", count)
    return count


def _due(now: datetime) -> Q:
    return Q(status=EmailStatus.QUEUED) & (Q(due_at__isnull=True) | Q(due_at__lte=now))


def time_budget() -> float:
    """Seconds a batch may start sends: well inside django-q2's timeout and ``LOST_AFTER``."""
    return max(5.0, min(_task_timeout() / 2, LOST_AFTER.total_seconds() / 3))


def time_limit() -> float:
    """Seconds after which a batch's connection is cut, before django-q2 kills the task."""
    return max(time_budget(), min(_task_timeout() * 0.9, LOST_AFTER.total_seconds() / 2))


def _task_timeout() -> float:
    return (getattr(settings, "Q_CLUSTER", None) or {}).get("timeout") or 120


class _Connection:
    """One connection (a site's, or the default), opened on first use, kept for the batch."""

    def __init__(self, email_settings: SiteEmailSettings | None) -> None:
        self.email_settings = email_settings
        self.backend: Any = None
        self.broken: EmailFailed | None = None  # could not open: applies to the rest

    def send(self, message: EmailMessage) -> None:
        if self.broken is not None:
            raise self.broken
        if self.backend is None:
            try:
                self.backend = smtp.connection_for(self.email_settings)
                self.backend.open()
            except Exception as error:
                self.close()
                self.broken = describe(error, self.email_settings)
                raise self.broken from error
        try:
            self.backend.send_messages([message])
        except Exception as error:
            failure = describe(error, self.email_settings)
            if _connection_lost(error):
                # The server may have the message: never retried; the next one reconnects.
                self.close()
                reason = _(
                    "The connection broke while the email was being sent (%(reason)s): "
                    "it may not have arrived. Resend it if the client did not get it."
                )
                failure = EmailFailed(reason % {"reason": failure.reason}, transient=False)
            raise failure from error

    def close(self) -> None:
        if self.backend is not None:
            smtp.close_quietly(self.backend)
            self.backend = None


def _connection_lost(error: BaseException) -> bool:
    """An SMTP line that broke mid-message (not the server's reply about it)."""
    if isinstance(error, smtp.DeadlineExceeded):  # cut before DATA: it may be retried
        return error.maybe_delivered
    answered = (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused, AnymailError)
    return isinstance(error, OSError) and not isinstance(error, answered)


class _Batch:
    """What one site's emails share (read once): settings, two connections, linked accounts
    and their policy links, the agency's recipients; the last email sent, until saved."""

    def __init__(self, site_id: int, now: datetime) -> None:
        self.now = now
        self.email_settings = SiteEmailSettings.for_site_or_default(site_id)
        self.site = _Connection(self.email_settings)
        self.default = _Connection(None)
        linked = list(StripeConnection.objects.filter(unlinked_at__isnull=True))
        self.accounts = connections.linked_accounts(linked)
        policy = ("privacy_policy_url", "terms_of_service_url")  # each mode's connection's
        self.links = {link.mode: {key: getattr(link, key) for key in policy} for link in linked}
        self.unsaved: tuple[str, list[Any]] | None = None  # the last email's "sent"

    def save(self, claim: tuple[str, list[Any]] | None = None) -> int:
        """Save the last email's "sent" with ``claim`` (an UPDATE and its parameters) in one
        transaction (on PostgreSQL, one statement); the claim's row count."""
        statements = [statement for statement in (self.unsaved, claim) if statement]
        if not statements:
            return 0
        if len(statements) == 2 and connection.vendor == "postgresql":
            (sent, values), (sql, params) = statements
            statements = [(f"WITH sent AS ({sent}) {sql}", values + params)]
        with (
            transaction.atomic() if len(statements) > 1 else contextlib.nullcontext(),
            connection.cursor() as cursor,
        ):
            for statement in statements:
                cursor.execute(*statement)
            count = cursor.rowcount  # read before the cursor closes (psycopg then says -1)
        self.unsaved = None
        return count

    @functools.cached_property
    def agency(self) -> list[str]:
        return messages.agency_recipients()

    def message(self, email: OutgoingEmail) -> tuple[EmailMessage, _Connection]:
        """The message and the connection it goes over; ``_NotSent`` if it must not go."""
        request = email.billing_request
        if email.kind in SUBSCRIPTION_KINDS:  # to the client, whatever the request's status
            message = messages.subscription_email(request, email.kind, self.email_settings)
            return message, self.site
        if email.kind not in BILLING_KINDS:
            # The site's contact for a client's question, else the agency's people.
            ask = email.kind == Kind.NEW_LINK_ASKED
            recipients = [self.email_settings.contact_address] if ask else self.agency
            if not recipients:
                raise _NotSent(NO_RECIPIENTS, EmailStatus.FAILED)
            email.recipient = ", ".join(recipients)
            return messages.notification(email, recipients), self.default
        if not connections.account_is_linked(request, self.accounts):  # its link is dead
            raise _NotSent(gettext_noop(
                "Not sent: the request's Stripe account was unlinked, so its link no longer works."
            ))  # fmt: skip
        if request.status != BillingRequest.Status.PENDING or (
            email.kind == Kind.REMINDER and request.expires_at <= self.now
        ):
            raise _NotSent(gettext_noop("Not sent: the request had ended."))
        message = messages.billing_email(
            request, email.kind, email_settings=self.email_settings, links=self.links[request.mode]
        )
        return message, self.site


def send_pending_emails(site_id: int, *, limit: int = BATCH_SIZE) -> BatchResult:
    """Send the site's due emails (one connection each way)."""
    now = timezone.now()
    result = BatchResult()
    due = list(
        OutgoingEmail.objects.filter(_due(now), site_id=site_id)
        .select_related("billing_request", "billing_request__site__root_page__locale")
        .order_by("due_at", "pk")[:limit]
    )
    if not due:
        return result
    batch = _Batch(site_id, now)
    deadline = time.monotonic() + time_budget()
    with smtp.conversation(time_limit()):
        try:
            for email in due:
                if time.monotonic() > deadline:
                    result.more = True
                    break
                if _claim(email, now, batch) and _send_one(email, batch):
                    result.sent.append((email.billing_request_id, email.kind))
        finally:
            try:
                batch.save()  # the last email's "sent"
            finally:
                batch.site.close()
                batch.default.close()
    result.more = result.more or len(due) >= limit
    return result


def _claim(email: OutgoingEmail, now: datetime, batch: _Batch) -> bool:
    """queued -> sending (``_due``): True for the one caller that wins; saved with the last
    email's "sent": one commit per email, and never two of a batch "sending"."""
    when = connection.ops.adapt_datetimefield_value
    sql = (
        f"UPDATE {_table()} SET status = %s, attempts = attempts + 1, due_at = %s "  # noqa: S608
        "WHERE id = %s AND status = %s AND (due_at IS NULL OR due_at <= %s)"
    )  # due_at: the real clock (the batch may be old)
    params = [EmailStatus.SENDING, when(timezone.now() + LOST_AFTER), email.pk]
    claimed = batch.save((sql, [*params, EmailStatus.QUEUED, when(now)])) > 0
    if claimed:
        email.attempts += 1
    return claimed


def _sent(email: OutgoingEmail, message_id: str) -> tuple[str, list[Any]]:
    """The UPDATE that records ``email`` sent, unless a Resend re-queued it meanwhile."""
    sql = (
        f"UPDATE {_table()} SET status = %s, sent_at = %s, recipient = %s, message_id = %s, "  # noqa: S608
        "error = '', due_at = NULL WHERE id = %s AND status = %s"
    )
    at = connection.ops.adapt_datetimefield_value(timezone.now())
    return sql, [EmailStatus.SENT, at, email.recipient, message_id, email.pk, EmailStatus.SENDING]


def _table() -> str:  # names are ours, values are parameters
    return connection.ops.quote_name(OutgoingEmail._meta.db_table)


def _send_one(email: OutgoingEmail, batch: _Batch) -> bool:
    """Send a claimed email and record the outcome; True if it went out."""
    try:
        message, connection = batch.message(email)
        connection.send(message)
    except _NotSent as skipped:
        _finish(email, skipped.status, error=skipped.reason)
        return False
    except Exception as error:  # EmailFailed, or a template or data problem
        failure = error if isinstance(error, EmailFailed) else describe(error)
        _failed(email, failure, batch.now)
        return False
    message_id = getattr(getattr(message, "anymail_status", None), "message_id", None)
    batch.unsaved = _sent(email, "" if message_id is None else str(message_id)[:255])
    return True


def _failed(email: OutgoingEmail, failure: EmailFailed, now: datetime) -> None:
    reason = failure.reason
    if failure.transient and email.attempts < MAX_ATTEMPTS:
        retry_at = now + RETRY_DELAYS[email.attempts - 1]
        _finish(email, EmailStatus.QUEUED, error=reason, due_at=retry_at)
        logger.info("Email %s will be retried at %s: %s", email.key, retry_at.isoformat(), reason)
        return
    _finish(email, EmailStatus.FAILED, error=reason)
    if email.kind in BILLING_KINDS + SUBSCRIPTION_KINDS:
        data = {"email": str(email.kind), "error": reason}
        log(email.billing_request, ACTION_EMAIL_FAILED, data=data)
    logger.warning("Email %s failed: %s", email.key, reason)


def _finish(email: OutgoingEmail, status: str, **values: Any) -> None:
    """Record an attempt's outcome, unless a Resend re-queued the email meanwhile."""
    values.setdefault("error", "")
    values.setdefault("due_at", None)
    OutgoingEmail.objects.filter(pk=email.pk, status=EmailStatus.SENDING).update(
        status=status, **values
    )


def send_test_email(email_settings: SiteEmailSettings, to: str) -> None:
    """Send a test email (a web worker waits: one deadline); ``EmailFailed`` says why not."""
    message = messages.test_email(email_settings, to)
    with smtp.conversation():
        backend = None
        try:
            backend = smtp.connection_for(email_settings)
            backend.send_messages([message])
        except Exception as error:
            raise describe(error, email_settings) from error
        finally:
            if backend is not None:
                smtp.close_quietly(backend)
