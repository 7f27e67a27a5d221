"""The Stripe webhook endpoint: verify, store once, apply, answer. The HTTP contract is in
docs/webhooks.md: 400 for what is not a genuine event (nothing stored), 200 once stored
(applied, ignored or a duplicate), 500 if a handler raised (Stripe retries)."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .. import stripe_api
from ..conf import billing_settings, setting_key
from ..models import WebhookEvent
from .paid import apply_paid
from .processing import (
    EventProcessingFailed,
    StorageRefused,
    describe,
    process_event,
    store_and_apply,
    stored_status,
)

logger = logging.getLogger("wagtail_client_billing.webhooks")

EVENT_ID = re.compile(r"^evt_[A-Za-z0-9_]{1,250}$")
STATUS = WebhookEvent.Status


class WebhookRejected(SuspiciousOperation):
    """Not a genuine Stripe event: the endpoint answers 400."""


def read_body(request: HttpRequest) -> bytes:
    """The raw body, or ``WebhookRejected`` if too large: Django's error would mail the ADMINS."""
    try:
        return request.body
    except RequestDataTooBig as error:
        message = "The webhook body is too large (over DATA_UPLOAD_MAX_MEMORY_SIZE)."
        raise WebhookRejected(message) from error


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
    try:  # Stripe sends UTF-8 JSON (and the SDK's verifier would raise on anything else).
        payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise WebhookRejected("The webhook body is not UTF-8.") from error
    if not stripe_api.verify_signature(payload, signature, secrets):
        raise WebhookRejected("Invalid or expired Stripe-Signature.")
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError) as error:  # RecursionError: nested too deep
        raise WebhookRejected("The webhook body is not JSON.") from error
    if problem := _event_shape_problem(data):
        raise WebhookRejected(f"The webhook body is not a Stripe event: {problem}.")
    # A leaked test secret must not forge live payments; test events may carry a live
    # signature (Stripe sends a live-connected account's test events there too).
    if data["livemode"] and not stripe_api.verify_signature(payload, signature, live_secrets):
        raise WebhookRejected("A live-mode event must be signed with a live-mode secret.")
    return data


def build_event(data: dict[str, Any]) -> Any:
    """The SDK's object of a verified event, what its handler gets: it must build."""
    try:
        return stripe_api.construct_event(data)
    except RecursionError as error:
        raise WebhookRejected("The webhook body is nested too deeply.") from error


def _event_shape_problem(data: Any) -> str:
    if not isinstance(data, dict) or data.get("object") != "event":
        return 'not an object of type "event"'
    body, account, kind = data.get("data"), data.get("account"), data.get("type")
    valid = {  # the first problem is told
        "no valid id": isinstance(data.get("id"), str) and EVENT_ID.match(data["id"]),
        "no valid type": isinstance(kind, str) and 0 < len(kind) <= 255,
        "no livemode": isinstance(data.get("livemode"), bool),
        "no data.object": isinstance(body, dict) and isinstance(body.get("object"), dict),
        "an invalid account": account is None
        or (isinstance(account, str) and account.startswith("acct_") and len(account) <= 255),
        "an invalid api_version": isinstance(data.get("api_version") or "", str),
    }
    return next((problem for problem, ok in valid.items() if not ok), "")


@csrf_exempt
@login_not_required
@transaction.non_atomic_requests
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    try:  # Verify the raw bytes: Stripe signs the body exactly as sent.
        body = read_body(request)
        data = parse_event(body, request.headers.get("Stripe-Signature", ""))
        event = WebhookEvent(
            stripe_id=data["id"], type=data["type"], account=data.get("account") or "",
            livemode=data["livemode"], api_version=(data.get("api_version") or "")[:64],
            payload=data,
        )  # fmt: skip
        status = stored_status(event.stripe_id)
        if status in (STATUS.PROCESSED, STATUS.IGNORED):
            logger.info("%s: duplicate delivery, already %s", describe(event), status)
            return JsonResponse({"id": event.stripe_id, "status": status})
        if status is None and apply_paid(event, data, body.decode()):  # the common case
            logger.info("%s: %s", describe(event), event.status)
            return JsonResponse({"id": event.stripe_id, "status": event.status})
        obj = build_event(data).data.object
        if status is None and store_and_apply(event, obj):
            return JsonResponse({"id": event.stripe_id, "status": event.status})
    except (WebhookRejected, StorageRefused) as rejected:
        # A warning, not Django's SuspiciousOperation ERROR: every probe would mail the ADMINS.
        logger.warning("Refused a webhook request: %s", rejected)
        return JsonResponse({"error": str(rejected)}, status=400)
    except EventProcessingFailed:
        return JsonResponse({"id": event.stripe_id, "status": STATUS.FAILED}, status=500)
    try:  # stored and never applied, failed, or stored meanwhile: applied unless settled
        process_event(event := WebhookEvent.objects.get(stripe_id=event.stripe_id))
    except EventProcessingFailed:
        # 500 so that Stripe retries; the traceback is in the admin, not in the answer.
        return JsonResponse({"id": event.stripe_id, "status": STATUS.FAILED}, status=500)
    return JsonResponse({"id": event.stripe_id, "status": event.status})
