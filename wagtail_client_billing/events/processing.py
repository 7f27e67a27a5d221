"""Apply a stored event once: claim its row, run its handler, record the outcome."""

from __future__ import annotations

import logging
import traceback

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .. import stripe_api
from ..models import WebhookEvent
from .handlers import HANDLERS, EventIgnored, match_connection, money_for_own_request

logger = logging.getLogger("wagtail_client_billing.webhooks")

MAX_ERROR_LENGTH = 20_000
STATUS = WebhookEvent.Status
UNSETTLED = (STATUS.RECEIVED, STATUS.FAILED)  # a delivery may (re)apply these


class EventProcessingFailed(Exception):
    pass


def process_event(event: WebhookEvent) -> None:
    """Apply a stored event once; ``event`` is refreshed with the outcome. A handler that
    raises leaves it failed with its traceback, and raises ``EventProcessingFailed``."""
    try:
        with transaction.atomic():
            # The claim commits with the handler's writes: a concurrent delivery blocks on
            # the row and finds nothing to claim; if the handler raises, both roll back.
            claimed = WebhookEvent.objects.filter(pk=event.pk, status__in=UNSETTLED).update(
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
            if note := _apply(event):
                WebhookEvent.objects.filter(pk=event.pk).update(status=STATUS.IGNORED, note=note)
    except Exception as error:
        _record_failure(event, error)
        event.refresh_from_db()
        logger.error("%s: failed (attempt %s): %r", describe(event), event.attempts, error)
        raise EventProcessingFailed(str(error)) from error
    event.refresh_from_db()
    logger.info("%s: %s%s", describe(event), event.status, f" ({event.note})" if event.note else "")


def _apply(event: WebhookEvent) -> str:
    """Run the event's handler; a note if the event was ignored instead."""
    handler = HANDLERS.get(event.type)
    if handler is None:
        return "no handler"
    obj = stripe_api.construct_event(event.payload).data.object
    connection, note = match_connection(event)
    if connection is None and not money_for_own_request(event, obj):
        return note
    try:  # A savepoint: a handler that writes and then ignores the event leaves nothing.
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
    WebhookEvent.objects.filter(pk=event.pk, status__in=UNSETTLED).update(
        status=STATUS.FAILED, error=text, attempts=F("attempts") + 1
    )


def describe(event: WebhookEvent) -> str:
    account = f" {event.account}" if event.account else ""
    return f"Stripe event {event.stripe_id} {event.type} ({event.mode}{account})"
