"""Apply a stored event once: claim its row, run its handler, record the outcome.

The claim (a conditional UPDATE) and the handler's writes commit together, so fifty
concurrent deliveries of one event apply it once (the pattern of dj-stripe's
``Event.process``); a handler that raises leaves the event failed, with its traceback,
for Stripe's retry or the admin's "Reprocess".
"""

from __future__ import annotations

import logging
import traceback

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .. import stripe_api
from ..models import WebhookEvent
from .handlers import HANDLERS, EventIgnored, match_connection, money_for_own_request

# The name the docs give for the webhook's log lines.
logger = logging.getLogger("wagtail_client_billing.webhooks")

NOTE_NO_HANDLER = "no handler"
# Tracebacks can be long (a chain of causes); the admin only needs the useful part.
MAX_ERROR_LENGTH = 20_000
STATUS = WebhookEvent.Status


class EventProcessingFailed(Exception):
    """A handler raised; the event is stored as failed with the traceback."""


def process_event(event: WebhookEvent) -> None:
    """Apply a stored event once; ``event`` is refreshed with the outcome.

    Raises ``EventProcessingFailed`` (after storing the traceback) if its handler raised.
    Events already processed or ignored, or claimed by a concurrent delivery, are left
    as they are.
    """
    try:
        with transaction.atomic():
            # The claim and the handler's writes commit together: a concurrent delivery
            # blocks on the row until then and finds nothing to claim; if the handler
            # raises, both roll back and the event can be claimed again.
            claimed = WebhookEvent.objects.filter(
                pk=event.pk, status__in=[STATUS.RECEIVED, STATUS.FAILED]
            ).update(
                status=STATUS.PROCESSED,
                processed_at=timezone.now(),
                attempts=F("attempts") + 1,
                note="",
                error="",
            )
            if not claimed:
                event.refresh_from_db()
                logger.info("%s: already %s, nothing to do", describe(event), event.status)
                return
            note = _apply(event)
            if note:
                WebhookEvent.objects.filter(pk=event.pk).update(status=STATUS.IGNORED, note=note)
    except Exception as error:
        _record_failure(event, error)
        event.refresh_from_db()
        logger.error("%s: failed (attempt %s): %r", describe(event), event.attempts, error)
        raise EventProcessingFailed(str(error)) from error
    event.refresh_from_db()
    logger.info("%s: %s%s", describe(event), event.status, f" ({event.note})" if event.note else "")


def _apply(event: WebhookEvent) -> str:
    """Run the event's handler; return a note if the event was ignored instead."""
    handler = HANDLERS.get(event.type)
    if handler is None:
        return NOTE_NO_HANDLER
    obj = stripe_api.construct_event(event.payload).data.object
    connection, note = match_connection(event)
    if connection is None and not money_for_own_request(event, obj):
        return note
    try:
        # A savepoint, so that a handler that writes and then decides to ignore the
        # event leaves nothing behind.
        with transaction.atomic():
            handler(event, obj)
    except EventIgnored as ignored:
        return str(ignored) or "ignored by its handler"
    return ""


def _record_failure(event: WebhookEvent, error: Exception) -> None:
    text = "".join(traceback.format_exception(error))
    if len(text) > MAX_ERROR_LENGTH:
        text = "…\n" + text[-MAX_ERROR_LENGTH:]
    # Conditional: if a concurrent delivery applied the event meanwhile, it stays applied.
    WebhookEvent.objects.filter(pk=event.pk, status__in=[STATUS.RECEIVED, STATUS.FAILED]).update(
        status=STATUS.FAILED, error=text, attempts=F("attempts") + 1
    )


def describe(event: WebhookEvent) -> str:
    """How the log names an event: id, type, mode and account."""
    account = f" {event.account}" if event.account else ""
    return f"Stripe event {event.stripe_id} {event.type} ({event.mode}{account})"
