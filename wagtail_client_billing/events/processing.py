"""Apply an event once: a new one is stored with its handler's writes in one transaction;
a stored one that failed is claimed, applied and its outcome recorded."""

from __future__ import annotations

import logging
import traceback
from typing import Any, NoReturn

from django.db import DataError, IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from .. import stripe_api
from ..db import insert_once
from ..models import WebhookEvent
from .handlers import HANDLERS, EventIgnored, match_connection, money_for_own_request

logger = logging.getLogger("wagtail_client_billing.webhooks")

MAX_ERROR_LENGTH = 20_000
STATUS = WebhookEvent.Status
IGNORED = "ignored by its handler"
UNSETTLED = (STATUS.RECEIVED, STATUS.FAILED)  # a delivery may (re)apply these


class EventProcessingFailed(Exception):
    pass


class StorageRefused(Exception):
    """The database refused the event's own values (not Stripe's: see ``events.view``)."""


def stored_status(stripe_id: str) -> str | None:
    """The status of the stored event ``stripe_id``, if any: one column of one index entry
    (a raw query: the ORM's compiling would cost more than the query, on every delivery)."""
    table = connection.ops.quote_name(WebhookEvent._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT status FROM {table} WHERE stripe_id = %s", [stripe_id])  # noqa: S608
        row = cursor.fetchone()
    return row and row[0]


def store_and_apply(event: WebhookEvent, obj: Any) -> bool:
    """Insert a new event as processed in the transaction of its handler's writes (both
    commit or neither: a concurrent delivery waits on the id, then finds it); False if
    its id is known. A handler's ``EventIgnored`` undoes its writes; the event is then
    stored as ignored. A handler that raises leaves it failed (``EventProcessingFailed``)."""
    event.status, event.processed_at, event.attempts = STATUS.PROCESSED, timezone.now(), 1
    try:
        with transaction.atomic():
            if not _insert(event):
                return False
            if note := _apply(event, obj):
                event.status, event.note = STATUS.IGNORED, note
                WebhookEvent.objects.filter(pk=event.pk).update(status=STATUS.IGNORED, note=note)
    except EventIgnored as ignored:
        event.pk, event.status, event.note = None, STATUS.IGNORED, str(ignored) or IGNORED
        if not _insert(event):
            return False
    except StorageRefused:
        raise
    except Exception as error:
        event.pk, event.status, event.attempts, event.processed_at = None, STATUS.RECEIVED, 0, None
        if not _insert(event):  # a concurrent delivery stored it meanwhile
            event = WebhookEvent.objects.get(stripe_id=event.stripe_id)
        _fail(event, error)
    logger.info("%s: %s%s", describe(event), event.status, f" ({event.note})" if event.note else "")
    return True


def _insert(event: WebhookEvent) -> bool:
    try:
        return insert_once(event, "stripe_id")
    except (DataError, IntegrityError, UnicodeEncodeError) as error:
        # Not Stripe's: \u0000 (PostgreSQL), NaN/Infinity (SQLite), a lone surrogate (both).
        raise StorageRefused("The event cannot be stored.") from error


def process_event(event: WebhookEvent) -> None:
    """Apply a stored event once; ``event`` is refreshed with the outcome. A handler that
    raises leaves it failed with its traceback, and raises ``EventProcessingFailed``."""
    unsettled = WebhookEvent.objects.filter(pk=event.pk, status__in=UNSETTLED)
    done = {"processed_at": timezone.now(), "attempts": F("attempts") + 1, "error": ""}
    try:
        with transaction.atomic():
            # The claim commits with the handler's writes: a concurrent delivery blocks on
            # the row and finds nothing to claim; if the handler raises, both roll back.
            if not unsettled.update(status=STATUS.PROCESSED, note="", **done):
                event.refresh_from_db()
                logger.info("%s: already %s, nothing to do", describe(event), event.status)
                return
            if note := _apply(event):
                WebhookEvent.objects.filter(pk=event.pk).update(status=STATUS.IGNORED, note=note)
    except EventIgnored as ignored:  # its writes and the claim undone; still unsettled?
        unsettled.update(status=STATUS.IGNORED, note=str(ignored) or IGNORED, **done)
    except Exception as error:
        _fail(event, error)
    event.refresh_from_db()
    logger.info("%s: %s%s", describe(event), event.status, f" ({event.note})" if event.note else "")


def _apply(event: WebhookEvent, obj: Any = None) -> str:
    """Run the event's handler; a note if the event is ignored instead. A handler's
    ``EventIgnored`` is raised: the caller's rollback undoes its writes (no savepoint)."""
    handler = HANDLERS.get(event.type)
    if handler is None:
        return "no handler"
    obj = obj if obj is not None else stripe_api.construct_event(event.payload).data.object
    event.linked_connection, note = match_connection(event)
    if event.linked_connection is None and not money_for_own_request(event, obj):
        return note
    handler(event, obj)
    return ""


def _fail(event: WebhookEvent, error: Exception) -> NoReturn:
    text = "".join(traceback.format_exception(error))
    if len(text) > MAX_ERROR_LENGTH:
        text = "…\n" + text[-MAX_ERROR_LENGTH:]
    # Conditional: if a concurrent delivery applied the event meanwhile, it stays applied.
    WebhookEvent.objects.filter(pk=event.pk, status__in=UNSETTLED).update(
        status=STATUS.FAILED, error=text, attempts=F("attempts") + 1
    )
    event.refresh_from_db()
    logger.error("%s: failed (attempt %s): %r", describe(event), event.attempts, error)
    raise EventProcessingFailed(str(error)) from error


def describe(event: WebhookEvent) -> str:
    account = f" {event.account}" if event.account else ""
    return f"Stripe event {event.stripe_id} {event.type} ({event.mode}{account})"
