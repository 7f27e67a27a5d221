"""Compose and send the billing emails (the request's email and its optional reminder).

Sending goes through django-q2 (``tasks``) after the request's row commits. Every email
is *claimed* with a conditional UPDATE (queued -> sending) just before it goes out, so
the at-least-once ORM broker, the every-minute drain and a second worker can all try
and the client still gets it once. A site's due emails go out together over one
connection (``send_pending_emails``), through the site's own SMTP server or the
project's default backend (``mailers``); ``compose`` writes them.

Opening the connection has one deadline (``SMTP_DEADLINE``) and each message sent over
it its own; the whole batch is cut at ``time_limit()``, before django-q2 would kill it.

A failure that may pass (connection refused, timeout, SMTP 4xx) puts the email back in
the queue with a back-off (``RETRY_DELAYS``) until ``MAX_ATTEMPTS``; the every-minute
drain picks it up when due. Anything else fails at once with the reason. Email state
never touches the request's own status.
"""

from __future__ import annotations

import logging
import smtplib
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _
from wagtail.log_actions import log

from . import agency, compose, mailers
from .compose import KINDS, REMINDER_EMAIL, REQUEST_EMAIL, EmailKind
from .conf import billing_settings
from .models import BillingRequest, SiteEmailSettings

logger = logging.getLogger(__name__)
EmailStatus = BillingRequest.EmailStatus
Status = BillingRequest.Status

ACTION_EMAIL_FAILED = "wagtail_client_billing.email.failed"

# Back-off before attempts 2, 3, 4 and 5; the fifth failure is final.
RETRY_DELAYS = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
BATCH_SIZE = 500
# A claimed email still "sending" after this long was lost with its worker: it is
# reported, never sent again on a guess (it may have gone out).
LOST_AFTER = timedelta(minutes=15)
# States of an email that reached the server: a reminder only follows one of these.
DELIVERED_STATES = (EmailStatus.SENT, EmailStatus.DELIVERED, EmailStatus.OPENED)


@dataclass
class BatchResult:
    """What one batch did: emails sent, put back for a retry, failed; more still due."""

    sent: list[tuple[int, str]] = field(default_factory=list)
    retrying: int = 0
    failed: int = 0
    more: bool = False


class EmailFailed(Exception):
    """A send failed; ``failure`` says why and whether trying again may help."""

    def __init__(self, failure: mailers.Failure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


# Queueing ---------------------------------------------------------------------------------


def queue_billing_email(request: BillingRequest) -> None:
    """Queue the request's email now (creation or Resend) and hand it to django-q2."""
    from . import tasks

    BillingRequest.objects.filter(pk=request.pk).update(
        email_status=EmailStatus.QUEUED, email_error="", email_attempts=0, email_due_at=None
    )
    tasks.enqueue_billing_email(request.pk)


def queue_due_reminders(now: datetime | None = None) -> int:
    """Queue one reminder for each Pending request entering the reminder window.

    Off unless ``REMINDER_HOURS_BEFORE_EXPIRY`` is set. One set-based conditional
    UPDATE (``reminder_status = ''``), so a request is reminded at most once however
    often the schedule runs. Only requests whose first email reached the server.
    """
    hours = billing_settings().reminder_hours_before_expiry
    if not hours:
        return 0
    now = now or timezone.now()
    return BillingRequest.objects.filter(
        status=Status.PENDING,
        reminder_status=EmailStatus.NOT_SENT,
        email_status__in=DELIVERED_STATES,
        expires_at__gt=now,
        expires_at__lte=now + timedelta(hours=hours),
    ).update(reminder_status=EmailStatus.QUEUED, reminder_due_at=None, reminder_attempts=0)


def _due(kind: EmailKind, now: datetime) -> Q:
    return Q(**{kind.field("status"): EmailStatus.QUEUED}) & (
        Q(**{f"{kind.field('due_at')}__isnull": True}) | Q(**{f"{kind.field('due_at')}__lte": now})
    )


def sites_with_due_emails(now: datetime | None = None) -> list[int]:
    """The sites that have emails due now (one batch each)."""
    now = now or timezone.now()
    due = _due(REQUEST_EMAIL, now) | _due(REMINDER_EMAIL, now)
    return sorted(set(BillingRequest.objects.filter(due).values_list("site_id", flat=True)))


def report_lost_sends(now: datetime | None = None) -> int:
    """Mark failed the emails left "sending" by a worker that died; never resend them."""
    now = now or timezone.now()
    reason = _(
        "Sending was interrupted (the worker stopped): the email may not have arrived. "
        "Resend it if the client did not get it."
    )
    lost = 0
    for kind in KINDS.values():
        lost += BillingRequest.objects.filter(
            **{kind.field("status"): EmailStatus.SENDING, f"{kind.field('due_at')}__lte": now}
        ).update(
            **{
                kind.field("status"): EmailStatus.FAILED,
                kind.field("error"): reason,
                kind.field("due_at"): None,
            }
        )
    if lost:
        logger.warning("%s billing email(s) were lost while sending.", lost)
    return lost


# Sending ----------------------------------------------------------------------------------


def time_budget() -> float:
    """Seconds one batch may run: half the django-q2 task timeout, so it never gets killed,
    and well inside ``LOST_AFTER``, so no email it claims can be reported lost."""
    return max(5.0, min(_task_timeout() / 2, LOST_AFTER.total_seconds() / 3))


def time_limit() -> float:
    """Seconds after which a batch's connection is cut whatever it is doing (each SMTP
    step has its own deadline, but a last message may start just inside the budget):
    before django-q2 kills the task, which would leave its email "sending", lost."""
    return max(time_budget(), min(_task_timeout() * 0.9, LOST_AFTER.total_seconds() / 2))


def _task_timeout() -> float:
    return (getattr(settings, "Q_CLUSTER", None) or {}).get("timeout") or 120


class _Connection:
    """One site's connection, opened on first use and reused for the whole batch."""

    def __init__(self, email_settings: SiteEmailSettings) -> None:
        self.email_settings = email_settings
        self.backend: Any = None
        self.broken: mailers.Failure | None = None  # could not open: applies to the rest

    def send(self, message: EmailMultiAlternatives) -> None:
        """Send one message or raise ``EmailFailed``."""
        if self.broken is not None:
            raise EmailFailed(self.broken)
        if self.backend is None:
            try:
                self.backend = mailers.connection_for(self.email_settings)
                self.backend.open()
            except Exception as error:
                self.close()
                self.broken = mailers.describe(error, self.email_settings)
                raise EmailFailed(self.broken) from error
        try:
            self.backend.send_messages([message])
        except Exception as error:
            failure = mailers.describe(error, self.email_settings)
            if _connection_lost(error):
                # The server may have taken the message before the line broke: report it
                # and do not retry (never two emails); the next message reconnects.
                self.close()
                failure = mailers.Failure(
                    _(
                        "The connection broke while the email was being sent (%(reason)s): "
                        "it may not have arrived. Resend it if the client did not get it."
                    )
                    % {"reason": failure.reason},
                    transient=False,
                )
            raise EmailFailed(failure) from error

    def close(self) -> None:
        if self.backend is not None:
            mailers.close_quietly(self.backend)  # a dead connection must not fail the batch
            self.backend = None


def _connection_lost(error: BaseException) -> bool:
    """An SMTP line that broke mid-message (not a reply from the server about it)."""
    from anymail.exceptions import AnymailError

    if isinstance(error, mailers.DeadlineExceeded):
        # Cut before DATA began: the server cannot have the message, it may be retried.
        return error.maybe_delivered
    answered = (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused, AnymailError)
    return isinstance(error, OSError) and not isinstance(error, answered)


def _account_gone() -> str:
    """Why an email of a request whose account is gone was not sent."""
    return _("Not sent: the request's Stripe account was unlinked, so its link no longer works.")


def send_pending_emails(
    site_id: int, *, limit: int = BATCH_SIZE, now: datetime | None = None
) -> BatchResult:
    """Send the site's due emails over one connection; ``more`` if some are left."""
    now = now or timezone.now()
    result = BatchResult()
    due = _due_emails(site_id, now, limit)
    if not due:
        return result
    email_settings = SiteEmailSettings.for_site_or_default(site_id)
    connection = _Connection(email_settings)
    links: dict[str, dict[str, str]] = {}
    accounts = agency.linked_accounts()  # once per batch: a gone account's links are dead
    deadline = time.monotonic() + time_budget()
    with mailers.conversation(time_limit()):
        try:
            for request, kind in due:
                if time.monotonic() > deadline:
                    result.more = True
                    break
                if not _claim(request, kind, now):
                    continue
                if request.mode not in links:
                    links[request.mode] = compose.agency_links(request)
                if not agency.account_is_linked(request, accounts):
                    # Its link says "no longer works" (the account was deauthorized at
                    # Stripe, say): an email inviting the client to pay would mislead.
                    _finish(request, kind, EmailStatus.NOT_SENT, error=_account_gone())
                    continue
                _send_one(request, kind, connection, links[request.mode], now, result)
        finally:
            connection.close()
    result.more = result.more or len(due) >= limit
    return result


def _due_emails(site_id: int, now: datetime, limit: int) -> list[tuple[BillingRequest, EmailKind]]:
    due: list[tuple[BillingRequest, EmailKind]] = []
    for kind in KINDS.values():
        requests = (
            BillingRequest.objects.filter(_due(kind, now), site_id=site_id)
            .select_related("site", "site__root_page__locale")
            .order_by(kind.field("due_at"), "pk")[: limit - len(due)]
        )
        due += [(request, kind) for request in requests]
    return due


def _claim(request: BillingRequest, kind: EmailKind, now: datetime) -> bool:
    """queued -> sending in one conditional UPDATE: True for the one caller that wins."""
    claimed = (
        BillingRequest.objects.filter(_due(kind, now), pk=request.pk).update(
            **{
                kind.field("status"): EmailStatus.SENDING,
                kind.field("attempts"): F(kind.field("attempts")) + 1,
                # From the real clock: a batch may have started a while ago.
                kind.field("due_at"): timezone.now() + LOST_AFTER,
            }
        )
        == 1
    )
    if claimed:
        setattr(request, kind.field("attempts"), getattr(request, kind.field("attempts")) + 1)
    return claimed


def _send_one(
    request: BillingRequest,
    kind: EmailKind,
    connection: _Connection,
    links: dict[str, str],
    now: datetime,
    result: BatchResult,
) -> None:
    still_wanted = request.status == Status.PENDING and (
        kind is REQUEST_EMAIL or request.expires_at > now
    )
    if not still_wanted:
        _finish(request, kind, EmailStatus.NOT_SENT, error=_("Not sent: the request had ended."))
        return
    try:
        message = compose.billing_email(
            request, kind, email_settings=connection.email_settings, links=links
        )
        connection.send(message)
    except EmailFailed as error:
        _failed(request, kind, error.failure, now, result)
        return
    except Exception as error:  # a template or data problem: retrying will not fix it
        _failed(request, kind, mailers.describe(error), now, result)
        return
    message_id = getattr(getattr(message, "anymail_status", None), "message_id", None)
    _finish(
        request,
        kind,
        EmailStatus.SENT,
        sent_at=timezone.now(),
        message_id="" if message_id is None else str(message_id)[:255],
    )
    result.sent.append((request.pk, kind.name))


def _failed(
    request: BillingRequest,
    kind: EmailKind,
    failure: mailers.Failure,
    now: datetime,
    result: BatchResult,
) -> None:
    attempts = getattr(request, kind.field("attempts"))
    if failure.transient and attempts < MAX_ATTEMPTS:
        retry_at = now + RETRY_DELAYS[attempts - 1]
        _finish(request, kind, EmailStatus.QUEUED, error=failure.reason, due_at=retry_at)
        logger.info(
            "Billing %s email for request %s will be retried at %s: %s",
            kind.name, request.pk, retry_at.isoformat(), failure.reason,
        )  # fmt: skip
        result.retrying += 1
        return
    _finish(request, kind, EmailStatus.FAILED, error=failure.reason)
    log(request, ACTION_EMAIL_FAILED, data={"email": kind.name, "error": failure.reason})
    logger.warning(
        "Billing %s email for request %s failed: %s", kind.name, request.pk, failure.reason
    )
    result.failed += 1


def _finish(request: BillingRequest, kind: EmailKind, status: str, **values: Any) -> None:
    """Record an attempt's outcome, unless a Resend re-queued the email meanwhile."""
    values.setdefault("error", "")
    values.setdefault("due_at", None)
    BillingRequest.objects.filter(
        pk=request.pk, **{kind.field("status"): EmailStatus.SENDING}
    ).update(
        **{kind.field("status"): status}, **{kind.field(name): v for name, v in values.items()}
    )


def send_test_email(email_settings: SiteEmailSettings, to: str) -> None:
    """Send a short test email through the settings as saved; ``EmailFailed`` says why not.

    The whole SMTP conversation has one deadline: a web worker waits at most that long.
    """
    failure = mailers.send_message(compose.test_email(email_settings, to), email_settings)
    if failure is not None:
        raise EmailFailed(failure)
