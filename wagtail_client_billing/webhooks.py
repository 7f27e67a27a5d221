"""The Stripe webhook endpoint and the table of event handlers.

The HTTP contract (see docs/webhooks.md):

- 400: no valid ``Stripe-Signature`` (missing, wrong secret, older than 5 minutes), a body
  that is not JSON or not an event object, or one over Django's
  ``DATA_UPLOAD_MAX_MEMORY_SIZE``. Nothing is stored; one warning line is logged.
- 200: the event was stored and applied, stored and ignored (no handler, or not about the
  linked account), or it is a duplicate of one already applied or ignored. An event that
  reports money taken for a request we know is applied even if that request's account is
  no longer linked (``MONEY_EVENTS``): a payment is never lost.
- 500: a handler raised. The event is stored as failed with its traceback; Stripe retries,
  and the retry (or "Reprocess" in the admin) applies it.

The event is stored under its unique id *before* it is applied, and applied in one
transaction that first claims the row with a conditional UPDATE, so fifty concurrent
deliveries of one event apply it once (the pattern of dj-stripe's ``Event.process``).
"""

from __future__ import annotations

import json
import logging
import re
import traceback
from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import DataError, IntegrityError, transaction
from django.db.models import F
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import agency, stripe_api
from .conf import billing_settings, setting_key
from .models import BillingRequest, StripeConnection, WebhookEvent

logger = logging.getLogger("wagtail_client_billing.webhooks")

Handler = Callable[[WebhookEvent, dict[str, Any]], None]

#: Event type -> the function that applies it. ``webhook_setup`` subscribes the
#: endpoint to exactly these types, so register handlers at import time.
HANDLERS: dict[str, Handler] = {}

NOTE_NO_HANDLER = "no handler"
# Tracebacks can be long (a chain of causes); the admin only needs the useful part.
MAX_ERROR_LENGTH = 20_000
EVENT_ID = re.compile(r"^evt_[A-Za-z0-9_]{1,250}$")
STATUS = WebhookEvent.Status


class WebhookRejected(SuspiciousOperation):
    """Not a genuine Stripe event (bad signature, not an event): the endpoint answers 400."""


class EventIgnored(Exception):
    """Raised by a handler: store the event as ignored, with the message as its note."""


class EventProcessingFailed(Exception):
    """A handler raised; the event is stored as failed with the traceback."""


def register_handler(event_type: str) -> Callable[[Handler], Handler]:
    """Decorator: make the decorated function the handler of ``event_type`` events."""

    def decorator(handler: Handler) -> Handler:
        HANDLERS[event_type] = handler
        return handler

    return decorator


# Receiving ---------------------------------------------------------------------------


def parse_event(payload: bytes, signature: str) -> dict[str, Any]:
    """Verify the signature and the shape of a webhook body; raise ``WebhookRejected``."""
    conf = billing_settings()
    live_secrets = conf.webhook_secrets("live")
    secrets = conf.webhook_secrets("test") + live_secrets
    if not secrets:
        logger.error(
            "Stripe webhook refused: no signing secret is configured. Set %s or %s.",
            setting_key("STRIPE_TEST_WEBHOOK_SECRET"),
            setting_key("STRIPE_LIVE_WEBHOOK_SECRET"),
        )
        raise WebhookRejected("No Stripe webhook signing secret is configured.")
    if not signature:
        raise WebhookRejected("Missing Stripe-Signature header.")
    try:
        # Stripe sends UTF-8 JSON; anything else cannot be one of its events (and the
        # SDK's verifier would raise UnicodeDecodeError on it).
        payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise WebhookRejected("The webhook body is not UTF-8.") from error
    if not stripe_api.verify_signature(payload, signature, secrets):
        raise WebhookRejected("Invalid or expired Stripe-Signature.")
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError) as error:  # RecursionError: nested too deep
        raise WebhookRejected("The webhook body is not JSON.") from error
    problem = _event_shape_problem(data)
    if problem:
        raise WebhookRejected(f"The webhook body is not a Stripe event: {problem}.")
    # Test secrets are handed around more freely (laptops, CI) than live ones: a live
    # event must be signed with a live secret, or a leaked test secret could forge
    # payments. Test events may carry a live signature: Stripe sends the test events of
    # a live-connected account to the live Connect endpoint too.
    if data["livemode"] and not stripe_api.verify_signature(payload, signature, live_secrets):
        raise WebhookRejected("A live-mode event must be signed with a live-mode secret.")
    return data


def _event_shape_problem(data: Any) -> str:
    if not isinstance(data, dict) or data.get("object") != "event":
        return 'not an object of type "event"'
    if not isinstance(data.get("id"), str) or not EVENT_ID.match(data["id"]):
        return "no valid id"
    if not isinstance(data.get("type"), str) or not 0 < len(data["type"]) <= 255:
        return "no valid type"
    if not isinstance(data.get("livemode"), bool):
        return "no livemode"
    body = data.get("data")
    if not isinstance(body, dict) or not isinstance(body.get("object"), dict):
        return "no data.object"
    account = data.get("account")
    if account is not None and not (
        isinstance(account, str) and account.startswith("acct_") and len(account) <= 255
    ):
        return "an invalid account"
    if not isinstance(data.get("api_version") or "", str):
        return "an invalid api_version"
    return ""


def record_event(data: dict[str, Any]) -> tuple[WebhookEvent, bool]:
    """Store a verified event once under its id; return (the row, whether it is new)."""
    # get_or_create inserts in a savepoint and, on the unique constraint's
    # IntegrityError (a concurrent delivery won the insert), reads the winner's row.
    try:
        return WebhookEvent.objects.get_or_create(
            stripe_id=data["id"],
            defaults={
                "type": data["type"],
                "account": data.get("account") or "",
                "livemode": data["livemode"],
                "api_version": (data.get("api_version") or "")[:64],
                "payload": data,
            },
        )
    except (DataError, IntegrityError, UnicodeEncodeError) as error:
        # JSON that parses but cannot be stored (not Stripe's): PostgreSQL refuses a
        # \u0000 in a string, SQLite's JSON check NaN and Infinity, both a lone surrogate.
        raise WebhookRejected("The event cannot be stored.") from error


# Applying ----------------------------------------------------------------------------


def match_connection(event: WebhookEvent) -> tuple[StripeConnection | None, str]:
    """The linked connection ``event`` is about, or None and a note saying why not."""
    mode = event.mode
    connection = agency.linked_connection(mode)
    account = event.account
    if connection is not None and connection.direct:
        # Direct mode: the platform's own account takes the money; its events carry no
        # ``account``, and Connect events about some other account are not ours.
        if account:
            return None, (
                f"event for connected account {account}, but {mode} mode uses the "
                "platform's own account (direct mode)"
            )
        return connection, ""
    if connection is not None and account == connection.account_id:
        return connection, ""
    if (
        account
        and StripeConnection.objects.filter(
            mode=mode, account_id=account, unlinked_at__isnull=False
        ).exists()
    ):
        return None, f"account {account} was unlinked"
    if connection is None:
        return None, f"no account is linked in {mode} mode"
    if not account:
        return None, (
            f"event of the platform account, but {mode} mode uses connected account "
            f"{connection.account_id}"
        )
    return None, (
        f"event for account {account}, but the {mode}-mode linked account is "
        f"{connection.account_id}"
    )


#: Events that report money taken. They are applied to a request we know whatever its
#: account's state now (unlinked, replaced, deauthorized): the client has paid, and
#: ignoring it would leave the request Pending forever. Other events of an account that
#: is no longer linked stay ignored.
MONEY_EVENTS = frozenset({"checkout.session.completed", "checkout.session.async_payment_succeeded"})


def money_for_own_request(event: WebhookEvent) -> bool:
    """Whether ``event`` reports money for a request made with the event's own account.

    Only the request's own account may settle it: the event's account (none for the
    platform's own, direct mode) must be the one the request stored, and its mode the
    request's mode. The signature is verified already; this keeps one account's events
    from ever touching another account's request.
    """
    if event.type not in MONEY_EVENTS:
        return False
    session = event.payload["data"]["object"]
    session_id = session.get("id")
    if not isinstance(session_id, str) or not session_id:
        return False
    return BillingRequest.objects.filter(
        checkout_session_id=session_id, mode=event.mode, account_id=event.account or ""
    ).exists()


def connection_for(event: WebhookEvent) -> StripeConnection:
    """The linked connection ``event`` is about; raise ``EventIgnored`` if there is none."""
    connection, note = match_connection(event)
    if connection is None:
        raise EventIgnored(note)
    return connection


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
                logger.info("%s: already %s, nothing to do", _describe(event), event.status)
                return
            note = _apply(event)
            if note:
                WebhookEvent.objects.filter(pk=event.pk).update(status=STATUS.IGNORED, note=note)
    except Exception as error:
        _record_failure(event, error)
        event.refresh_from_db()
        logger.error("%s: failed (attempt %s): %r", _describe(event), event.attempts, error)
        raise EventProcessingFailed(str(error)) from error
    event.refresh_from_db()
    logger.info(
        "%s: %s%s", _describe(event), event.status, f" ({event.note})" if event.note else ""
    )


def _apply(event: WebhookEvent) -> str:
    """Run the event's handler; return a note if the event was ignored instead."""
    handler = HANDLERS.get(event.type)
    if handler is None:
        return NOTE_NO_HANDLER
    connection, note = match_connection(event)
    if connection is None and not money_for_own_request(event):
        return note
    try:
        # A savepoint, so that a handler that writes and then decides to ignore the
        # event leaves nothing behind.
        with transaction.atomic():
            handler(event, event.payload)
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


def _describe(event: WebhookEvent) -> str:
    account = f" {event.account}" if event.account else ""
    return f"Stripe event {event.stripe_id} {event.type} ({event.mode}{account})"


# The view ------------------------------------------------------------------------------


def read_body(request: HttpRequest) -> bytes:
    """The raw body; ``WebhookRejected`` if it is over ``DATA_UPLOAD_MAX_MEMORY_SIZE``.

    Django raises ``RequestDataTooBig`` when the body is read; left to Django, that is an
    ERROR with a traceback (and a mail to ADMINS) for any unauthenticated probe. Stripe's
    events are far below the limit.
    """
    try:
        return request.body
    except RequestDataTooBig as error:
        raise WebhookRejected(
            "The webhook body is too large (over DATA_UPLOAD_MAX_MEMORY_SIZE)."
        ) from error


@csrf_exempt
@login_not_required
@transaction.non_atomic_requests
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    """Receive one Stripe event: verify, store once, apply; see the module docstring."""
    # Verify the raw bytes: Stripe signs the body exactly as sent.
    try:
        data = parse_event(read_body(request), request.headers.get("Stripe-Signature", ""))
        event, created = record_event(data)
    except WebhookRejected as rejected:
        # A plain 400 and one warning line with the reason only: anyone can POST here,
        # and Django's handling of SuspiciousOperation (an ERROR with a traceback, and an
        # email to ADMINS in production) would let every probe fill the admins' inbox.
        logger.warning("Refused a webhook request: %s", rejected)
        return JsonResponse({"error": str(rejected)}, status=400)
    if not created and event.status in (STATUS.PROCESSED, STATUS.IGNORED):
        logger.info("%s: duplicate delivery, already %s", _describe(event), event.status)
        return JsonResponse({"id": event.stripe_id, "status": event.status})
    try:
        process_event(event)
    except EventProcessingFailed:
        # 500 so that Stripe retries; the traceback is in the admin, not in the answer.
        return JsonResponse({"id": event.stripe_id, "status": STATUS.FAILED}, status=500)
    return JsonResponse({"id": event.stripe_id, "status": event.status})


# Handlers ------------------------------------------------------------------------------


@register_handler("account.updated")
def account_updated(event: WebhookEvent, payload: dict[str, Any]) -> None:
    """Store the linked account's new state (onboarding done, restricted, ready...)."""
    connection = connection_for(event)
    account = payload["data"]["object"]
    if account.get("id") != connection.account_id:
        raise EventIgnored(
            f"the event's account object is {account.get('id')!r}, "
            f"not the linked account {connection.account_id}"
        )
    agency.apply_account_state(connection, stripe_api.account_state(account))


@register_handler("account.application.deauthorized")
def account_deauthorized(event: WebhookEvent, payload: dict[str, Any]) -> None:
    """The agency disconnected this platform at Stripe: forget the connection."""
    agency.unlink(connection_for(event), reason="deauthorized at Stripe")
