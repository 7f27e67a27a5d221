"""The Stripe webhook endpoint: signatures, storing once, applying once, the handlers.

Bodies are signed with Stripe's real algorithm (HMAC-SHA256 of ``"{t}.{body}"``); the
helpers here are shared by the other webhook test modules.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from wagtail.models import ModelLogEntry

from wagtail_client_billing import connections, stripe_api
from wagtail_client_billing.events import endpoints
from wagtail_client_billing.events.handlers import HANDLERS, EventIgnored, account_updated
from wagtail_client_billing.events.processing import EventProcessingFailed, process_event
from wagtail_client_billing.events.view import stripe_webhook
from wagtail_client_billing.models import StripeConnection, WebhookEvent

SECRET = "whsec_test_suite"  # tests/settings.py
LIVE_SECRET = "whsec_live_suite"
URL = "/billing/stripe/webhook/"
STATUS = WebhookEvent.Status


# Helpers (imported by the other webhook test modules) --------------------------------


def sign(body: bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header, computed as Stripe computes it."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def make_event(
    event_type: str,
    obj: dict[str, Any],
    *,
    livemode: bool = False,
    account: str | None = "acct_agency",
    event_id: str | None = None,
) -> dict[str, Any]:
    """A Stripe event object as a webhook carries it."""
    event = {
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": int(time.time()),
        "data": {"object": obj},
        "livemode": livemode,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
    if account:
        event["account"] = account
    return event


def account_object(account_id: str = "acct_agency", *, ready: bool = True) -> dict[str, Any]:
    """An account object: ready to charge, or still missing onboarding details."""
    due = [] if ready else ["external_account", "tos_acceptance.date"]
    return {
        "id": account_id,
        "object": "account",
        "charges_enabled": ready,
        "details_submitted": ready,
        "payouts_enabled": ready,
        "country": "FR",
        "requirements": {
            "currently_due": due,
            "past_due": due,
            "disabled_reason": None if ready else "requirements.past_due",
        },
    }


def account_updated_event(account_id: str = "acct_agency", **kwargs: Any) -> dict[str, Any]:
    """``account.updated`` saying the account can now take payments."""
    return make_event("account.updated", account_object(account_id), account=account_id, **kwargs)


def deauthorized_event(account_id: str = "acct_agency", **kwargs: Any) -> dict[str, Any]:
    """``account.application.deauthorized``: the agency left the platform."""
    application = {"id": "ca_platform", "object": "application", "name": "Agency platform"}
    return make_event("account.application.deauthorized", application, account=account_id, **kwargs)


def body_of(event: dict[str, Any]) -> bytes:
    # Stripe pretty-prints its webhook bodies; the signature covers the exact bytes.
    return json.dumps(event, indent=2).encode()


def deliver(
    client: Client,
    event: dict[str, Any] | bytes,
    *,
    secret: str = SECRET,
    signature: str | None = None,
):
    """POST an event (or raw bytes) signed with ``secret``, as Stripe does."""
    body = event if isinstance(event, bytes) else body_of(event)
    header = sign(body, secret) if signature is None else signature
    extra = {"HTTP_STRIPE_SIGNATURE": header} if header else {}
    return client.post(URL, data=body, content_type="application/json", **extra)


def onboarding_entries() -> int:
    return ModelLogEntry.objects.filter(action=connections.ACTION_ONBOARDED).count()


def link(mode: str = "test", account_id: str = "acct_agency", **fields: Any) -> StripeConnection:
    """A linked connection that has not finished onboarding."""
    return StripeConnection.objects.create(
        mode=mode,
        account_id=account_id,
        country="FR",
        privacy_policy_url="https://agency.example/privacy/",
        terms_of_service_url="https://agency.example/terms/",
        **fields,
    )


# Fixtures ---------------------------------------------------------------------------


@pytest.fixture
def client() -> Client:
    """Stripe has no CSRF token: the endpoint must work with checks enforced."""
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def connection(db) -> StripeConnection:
    return link()


@pytest.fixture
def with_live_secret(settings) -> None:
    settings.WAGTAIL_CLIENT_BILLING = {
        **settings.WAGTAIL_CLIENT_BILLING,
        "STRIPE_LIVE_WEBHOOK_SECRET": LIVE_SECRET,
    }


@pytest.fixture
def handlers() -> Iterator[dict]:
    """The handler table, restored after the test (so tests may register their own)."""
    saved = dict(HANDLERS)
    yield HANDLERS
    HANDLERS.clear()
    HANDLERS.update(saved)


# The HTTP contract -------------------------------------------------------------------


def test_the_url_is_the_documented_one():
    assert reverse("wagtail_client_billing:stripe_webhook") == URL


SIGNATURE_REFUSED = "Invalid or expired Stripe-Signature."
NOT_AN_EVENT = "The webhook body is not a Stripe event: "


@pytest.mark.parametrize(
    ("case", "body", "reason"),
    [
        ("no signature", b'{"id": "evt_1"}', "Missing Stripe-Signature header."),
        ("garbage header", b'{"id": "evt_1"}', SIGNATURE_REFUSED),
        ("no v1", b'{"id": "evt_1"}', SIGNATURE_REFUSED),
        ("wrong secret", None, SIGNATURE_REFUSED),
        ("stale timestamp", None, SIGNATURE_REFUSED),
        ("body changed after signing", None, SIGNATURE_REFUSED),
        ("malformed JSON", b'{"id": "evt_1", ', "The webhook body is not JSON."),
        ("not UTF-8", b"\xff\xfe{}", "The webhook body is not UTF-8."),
        ("a JSON list", b"[]", f'{NOT_AN_EVENT}not an object of type "event".'),
        (
            "not an event",
            json.dumps({"object": "account", "id": "acct_1"}).encode(),
            f'{NOT_AN_EVENT}not an object of type "event".',
        ),
        ("no id", None, f"{NOT_AN_EVENT}no valid id."),
        ("no data.object", None, f"{NOT_AN_EVENT}no data.object."),
        ("livemode not a boolean", None, f"{NOT_AN_EVENT}no livemode."),
        ("bad account", None, f"{NOT_AN_EVENT}an invalid account."),
    ],
)
def test_bad_requests_are_400_and_store_nothing(client, connection, case, body, reason):
    event = account_updated_event()
    if case == "no id":
        del event["id"]
    elif case == "no data.object":
        event["data"] = {}
    elif case == "livemode not a boolean":
        event["livemode"] = "false"
    elif case == "bad account":
        event["account"] = 42
    body = body if body is not None else body_of(event)
    # Signed here, not at import: a signature carries the time it was made.
    signature = {
        "no signature": "",
        "garbage header": "not a signature",
        "no v1": f"t={int(time.time())}",
        "wrong secret": sign(body, "whsec_someone_else"),
        "stale timestamp": sign(body, timestamp=int(time.time()) - 301),
    }.get(case, sign(body))
    if case == "body changed after signing":
        body = body.replace(b"acct_agency", b"acct_attacker")
        assert b"acct_attacker" in body

    response = deliver(client, body, signature=signature)

    assert response.status_code == 400, case
    assert response.json() == {"error": reason}
    assert not WebhookEvent.objects.exists()
    connection.refresh_from_db()
    assert not connection.charges_enabled


def test_a_body_over_djangos_limit_is_400_with_one_warning(client, connection, settings, caplog):
    # Django refuses to read a body over DATA_UPLOAD_MAX_MEMORY_SIZE (RequestDataTooBig):
    # anyone can POST here, so that is one warning like any refused body, not an ERROR
    # with a traceback (and a mail to ADMINS) per probe.
    event = account_updated_event()
    event["data"]["object"]["padding"] = "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = body_of(event)
    assert len(body) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE

    with caplog.at_level(logging.INFO):
        response = deliver(client, body)

    assert response.status_code == 400
    assert "too large" in response.json()["error"]
    assert not WebhookEvent.objects.exists()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    ours = [r for r in caplog.records if r.name == "wagtail_client_billing.webhooks"]
    assert [(r.levelno, r.getMessage()) for r in ours] == [
        (
            logging.WARNING,
            "Refused a webhook request: The webhook body is too large "
            "(over DATA_UPLOAD_MAX_MEMORY_SIZE).",
        )
    ]


def test_a_timestamp_within_five_minutes_is_accepted(client, connection):
    body = body_of(account_updated_event())
    response = deliver(client, body, signature=sign(body, timestamp=int(time.time()) - 280))
    assert response.status_code == 200


def test_only_post_is_allowed(client, db):
    assert client.get(URL).status_code == 405
    assert client.put(URL, data=b"{}").status_code == 405
    assert client.head(URL).status_code == 405


def test_without_any_signing_secret_everything_is_refused(client, connection, settings, caplog):
    settings.WAGTAIL_CLIENT_BILLING = {
        **settings.WAGTAIL_CLIENT_BILLING,
        "STRIPE_TEST_WEBHOOK_SECRET": [],
    }
    with caplog.at_level(logging.ERROR, logger="wagtail_client_billing.webhooks"):
        response = deliver(client, account_updated_event())
    assert response.status_code == 400
    assert response.json() == {"error": "No Stripe webhook signing secret is configured."}
    assert not WebhookEvent.objects.exists()
    assert "STRIPE_TEST_WEBHOOK_SECRET" in caplog.text


def test_the_view_is_public_csrf_exempt_and_not_atomic(client, connection, settings):
    # A project with LoginRequiredMiddleware must still let Stripe in.
    settings.MIDDLEWARE = [
        *settings.MIDDLEWARE,
        "django.contrib.auth.middleware.LoginRequiredMiddleware",
    ]
    unsigned = client.post(URL, data=b"{}", content_type="application/json")
    assert (unsigned.status_code, unsigned.json()) == (
        400,
        {"error": "Missing Stripe-Signature header."},
    )
    assert deliver(client, account_updated_event()).status_code == 200
    # Under ATOMIC_REQUESTS the insert would only commit with the answer: a concurrent
    # duplicate could not see it, and a failure record would be rolled back.
    assert stripe_webhook._non_atomic_requests == {"default"}


# Storing once, applying once ------------------------------------------------------------


def test_account_updated_is_stored_and_applied(client, connection):
    event = account_updated_event()

    response = deliver(client, event)

    assert response.status_code == 200
    assert response.json() == {"id": event["id"], "status": "processed"}
    stored = WebhookEvent.objects.get()
    assert stored.stripe_id == event["id"]
    assert stored.type == "account.updated"
    assert stored.account == "acct_agency"
    assert stored.livemode is False
    assert stored.api_version == "2025-03-31.basil"
    assert stored.payload == event
    assert stored.status == STATUS.PROCESSED
    assert stored.attempts == 1
    assert stored.processed_at is not None
    assert (stored.note, stored.error) == ("", "")
    connection.refresh_from_db()
    assert connection.status == StripeConnection.Status.READY
    assert connection.payouts_enabled and connection.details_submitted
    assert connection.requirements_due == []
    assert connection.onboarded_at is not None
    assert onboarding_entries() == 1


def test_account_updated_writes_the_onboarding_entry_only_when_it_becomes_ready(client, connection):
    incomplete = make_event("account.updated", account_object(ready=False))
    assert deliver(client, incomplete).status_code == 200
    connection.refresh_from_db()
    assert connection.status == StripeConnection.Status.ONBOARDING
    assert connection.requirements_due == ["external_account", "tos_acceptance.date"]
    assert connection.disabled_reason == "requirements.past_due"
    assert onboarding_entries() == 0

    assert deliver(client, account_updated_event()).status_code == 200
    assert deliver(client, account_updated_event()).status_code == 200  # another event id

    assert onboarding_entries() == 1
    entry = ModelLogEntry.objects.get(action=connections.ACTION_ONBOARDED)
    assert entry.object_id == str(connection.pk)
    assert entry.data == {"account": "acct_agency"}


def test_a_duplicate_is_acknowledged_and_applied_once(client, connection):
    event = account_updated_event()
    first = deliver(client, event)
    stored = WebhookEvent.objects.get()
    processed_at = stored.processed_at

    again = [deliver(client, event) for _ in range(3)]

    assert first.status_code == 200
    assert [r.status_code for r in again] == [200, 200, 200]
    assert WebhookEvent.objects.count() == 1
    stored.refresh_from_db()
    assert (stored.status, stored.attempts, stored.processed_at) == (
        STATUS.PROCESSED,
        1,
        processed_at,
    )
    assert onboarding_entries() == 1


def test_a_duplicate_of_an_ignored_event_changes_nothing(client, db):
    event = make_event("customer.created", {"id": "cus_1", "object": "customer"})
    deliver(client, event)
    stored = WebhookEvent.objects.get()

    assert deliver(client, event).status_code == 200

    again = WebhookEvent.objects.get()
    assert (again.status, again.attempts, again.processed_at, again.note) == (
        stored.status,
        stored.attempts,
        stored.processed_at,
        stored.note,
    )


def test_an_event_stored_but_never_applied_is_applied_by_its_redelivery(client, connection):
    # As if the process died between storing the event and applying it.
    event = account_updated_event()
    WebhookEvent.objects.create(
        stripe_id=event["id"], type=event["type"], account="acct_agency", payload=event
    )

    assert deliver(client, event).status_code == 200

    assert WebhookEvent.objects.get().status == STATUS.PROCESSED
    assert onboarding_entries() == 1


def test_an_unknown_type_is_stored_and_ignored(client, connection):
    event = make_event("payout.paid", {"id": "po_1", "object": "payout"})

    response = deliver(client, event)

    assert response.status_code == 200
    stored = WebhookEvent.objects.get()
    assert (stored.type, stored.status, stored.note) == (
        "payout.paid",
        STATUS.IGNORED,
        "no handler",
    )
    assert stored.payload == event


def test_secret_rotation_accepts_every_configured_secret(client, connection, settings):
    settings.WAGTAIL_CLIENT_BILLING = {
        **settings.WAGTAIL_CLIENT_BILLING,
        "STRIPE_TEST_WEBHOOK_SECRET": ["whsec_old_one", "whsec_new_one"],
    }
    old = deliver(client, make_event("account.updated", account_object(ready=False)),
                  secret="whsec_old_one")  # fmt: skip
    new = deliver(client, account_updated_event(), secret="whsec_new_one")
    retired = deliver(client, account_updated_event(), secret=SECRET)

    assert (old.status_code, new.status_code, retired.status_code) == (200, 200, 400)
    assert retired.json() == {"error": SIGNATURE_REFUSED}
    assert WebhookEvent.objects.filter(status=STATUS.PROCESSED).count() == 2


def test_a_header_with_several_signatures_is_accepted_if_one_matches(client, connection):
    # Stripe signs with every active secret of the endpoint while one is being rolled.
    body = body_of(account_updated_event())
    timestamp = int(time.time())
    good = sign(body, timestamp=timestamp).split(",v1=")[1]
    header = f"t={timestamp},v1={'0' * 64},v1={good},v0=ignored"
    assert deliver(client, body, signature=header).status_code == 200


# Mode and account checks ---------------------------------------------------------------


def test_live_events_need_a_live_secret(client, with_live_secret, db):
    live = link("live", "acct_live")
    event = account_updated_event("acct_live", livemode=True)

    forged = deliver(client, event, secret=SECRET)  # signed with the test secret
    genuine = deliver(client, event, secret=LIVE_SECRET)

    assert (forged.status_code, genuine.status_code) == (400, 200)
    assert forged.json() == {"error": "A live-mode event must be signed with a live-mode secret."}
    assert WebhookEvent.objects.get().livemode is True
    live.refresh_from_db()
    assert live.charges_enabled


def test_test_events_signed_with_the_live_secret_are_accepted(client, with_live_secret, db):
    # Stripe also sends a live-connected account's test events to the live endpoint.
    test = link("test", "acct_test")
    assert (
        deliver(client, account_updated_event("acct_test"), secret=LIVE_SECRET).status_code == 200
    )
    test.refresh_from_db()
    assert test.charges_enabled


@pytest.mark.parametrize(
    ("setup", "event_kwargs", "note"),
    [
        ("none", {}, "no account is linked in test mode"),
        ("test", {"livemode": True}, "no account is linked in live mode"),
        ("test", {"account": "acct_other"}, "but the test-mode linked account is acct_agency"),
        ("test", {"account": None}, "event of the platform account"),
        ("direct", {}, "platform's own account (direct mode)"),
    ],
)
def test_events_not_about_the_linked_account_are_ignored(
    client, with_live_secret, db, setup, event_kwargs, note
):
    if setup == "test":
        link()
    elif setup == "direct":
        link(direct=True)
    account = event_kwargs.pop("account", "acct_agency")
    event = make_event("account.updated", account_object(account or "acct_agency"),
                       account=account, **event_kwargs)  # fmt: skip

    response = deliver(client, event, secret=LIVE_SECRET if event["livemode"] else SECRET)

    assert response.status_code == 200
    stored = WebhookEvent.objects.get()
    assert stored.status == STATUS.IGNORED
    assert note in stored.note
    assert not StripeConnection.objects.filter(charges_enabled=True).exists()
    assert onboarding_entries() == 0


def test_the_linked_account_of_the_other_mode_is_not_touched(client, with_live_secret, db):
    live = link("live", "acct_agency_live")
    # A test-mode event claiming the live account's id.
    deliver(client, account_updated_event("acct_agency_live"))
    stored = WebhookEvent.objects.get()
    assert stored.status == STATUS.IGNORED
    assert stored.note == "no account is linked in test mode"
    live.refresh_from_db()
    assert not live.charges_enabled


def test_webhooks_of_an_unlinked_account_are_recorded_and_ignored(client, connection):
    connections.unlink(connection, reason="test")
    relinked = link(account_id="acct_new")

    for event in (account_updated_event(), deauthorized_event()):
        assert deliver(client, event).status_code == 200

    assert list(WebhookEvent.objects.values_list("status", "note")) == [
        (STATUS.IGNORED, "account acct_agency was unlinked"),
        (STATUS.IGNORED, "account acct_agency was unlinked"),
    ]
    relinked.refresh_from_db()
    assert relinked.is_linked and not relinked.charges_enabled
    assert ModelLogEntry.objects.filter(action=connections.ACTION_UNLINK).count() == 1


def test_direct_mode_applies_events_of_the_platform_account(client, db):
    connection = link(account_id="acct_platform", direct=True)
    event = make_event("account.updated", account_object("acct_platform"), account=None)

    assert deliver(client, event).status_code == 200

    assert WebhookEvent.objects.get().status == STATUS.PROCESSED
    connection.refresh_from_db()
    assert connection.charges_enabled
    assert onboarding_entries() == 1


def test_an_account_object_for_another_account_is_ignored(client, connection):
    event = make_event("account.updated", account_object("acct_other"), account="acct_agency")
    assert deliver(client, event).status_code == 200
    stored = WebhookEvent.objects.get()
    assert stored.status == STATUS.IGNORED
    assert "acct_other" in stored.note


# Deauthorization ---------------------------------------------------------------------


def test_deauthorization_unlinks_the_account(client, connection):
    response = deliver(client, deauthorized_event())

    assert response.status_code == 200
    assert WebhookEvent.objects.get().status == STATUS.PROCESSED
    connection.refresh_from_db()
    assert not connection.is_linked
    assert connections.linked_connection("test") is None
    entry = ModelLogEntry.objects.get(action=connections.ACTION_UNLINK)
    assert entry.data["reason"] == "deauthorized at Stripe"
    assert entry.user is None


def test_deauthorization_of_another_account_changes_nothing(client, connection):
    deliver(client, deauthorized_event("acct_someone_else"))
    connection.refresh_from_db()
    assert connection.is_linked
    assert WebhookEvent.objects.get().status == STATUS.IGNORED


# Failures and retries --------------------------------------------------------------------


def test_a_failing_handler_answers_500_keeps_the_traceback_and_its_retry_applies(
    client, connection, handlers
):
    def applies_then_breaks(event, account):
        account_updated(event, account)  # writes the new state and the audit entry...
        raise RuntimeError("the database of a third party is down")  # ...then fails

    handlers["account.updated"] = applies_then_breaks
    event = account_updated_event()

    response = deliver(client, event)

    assert response.status_code == 500
    assert response.json() == {"id": event["id"], "status": "failed"}
    stored = WebhookEvent.objects.get()
    assert stored.status == STATUS.FAILED
    assert stored.attempts == 1
    assert stored.error.startswith("Traceback (most recent call last):")
    assert "applies_then_breaks" in stored.error
    assert "RuntimeError: the database of a third party is down" in stored.error
    # Nothing of the failed attempt was kept.
    connection.refresh_from_db()
    assert not connection.charges_enabled
    assert onboarding_entries() == 0

    handlers["account.updated"] = account_updated  # the fix is deployed
    retry = deliver(client, event)  # Stripe retries with the same event

    assert retry.status_code == 200
    stored.refresh_from_db()
    assert (stored.status, stored.attempts, stored.error) == (STATUS.PROCESSED, 2, "")
    connection.refresh_from_db()
    assert connection.charges_enabled
    assert onboarding_entries() == 1


def test_a_handler_that_raises_fails_the_event(client, connection, handlers):
    def broken(event, account):
        raise TypeError("this handler could not read the account")

    handlers["account.updated"] = broken
    response = deliver(client, account_updated_event())
    assert response.status_code == 500
    stored = WebhookEvent.objects.get()
    assert stored.status == STATUS.FAILED
    assert "TypeError: this handler could not read the account" in stored.error


def test_process_event_reprocesses_a_failed_event(client, connection, handlers):
    attempts = []

    def flaky(event, account):
        attempts.append(event.stripe_id)
        if len(attempts) < 3:
            raise ConnectionError(f"attempt {len(attempts)}")
        account_updated(event, account)

    handlers["account.updated"] = flaky

    assert deliver(client, account_updated_event()).status_code == 500
    stored = WebhookEvent.objects.get()

    with pytest.raises(EventProcessingFailed, match="attempt 2"):
        process_event(stored)
    assert (stored.status, stored.attempts) == (STATUS.FAILED, 2)
    assert "ConnectionError: attempt 2" in stored.error

    process_event(stored)
    assert (stored.status, stored.attempts, stored.error) == (STATUS.PROCESSED, 3, "")
    process_event(stored)  # already processed: nothing happens
    assert stored.attempts == 3
    assert len(attempts) == 3
    assert onboarding_entries() == 1


def test_a_handler_can_ignore_an_event_and_its_writes_are_undone(client, connection, handlers):
    def not_ours(event, charge):
        connections.unlink(connection_for_test(), reason="should be rolled back")
        raise EventIgnored("the charge is not one of ours")

    handlers["charge.refunded"] = not_ours

    assert deliver(client, make_event("charge.refunded", {"id": "ch_1"})).status_code == 200

    stored = WebhookEvent.objects.get()
    assert (stored.status, stored.note) == (STATUS.IGNORED, "the charge is not one of ours")
    assert connections.linked_connection("test") is not None


def connection_for_test() -> StripeConnection:
    return StripeConnection.objects.get(account_id="acct_agency")


def test_handled_event_types_are_the_documented_ones():
    # docs/webhooks.md lists what each of them does; the endpoint subscribes to these.
    assert endpoints.handled_event_types() == (
        "account.application.deauthorized",
        "account.updated",
        "charge.dispute.closed",
        "charge.dispute.created",
        "charge.dispute.updated",
        "charge.refunded",
        "checkout.session.async_payment_failed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.completed",
        "checkout.session.expired",
        "customer.subscription.created",
        "customer.subscription.deleted",
        "customer.subscription.updated",
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_failed",
        "invoice.updated",
        "invoice.voided",
        "refund.created",
        "refund.failed",
        "refund.updated",
    )


def test_handlers_get_stripes_typed_objects(client, connection, handlers):
    got = []
    handlers["checkout.session.expired"] = lambda event, session: got.append(session)
    handlers["account.updated"] = lambda event, account: got.append(account)
    deliver(
        client, make_event("checkout.session.expired", {"id": "cs_1", "object": "checkout.session"})
    )
    deliver(client, account_updated_event())
    session, account = got
    assert isinstance(session, stripe_api.CheckoutSession) and session.id == "cs_1"
    assert type(account).__name__ == "Account" and account.id == "acct_agency"


# Logging -------------------------------------------------------------------------------


def test_one_log_line_per_event_without_secrets(client, connection, handlers, caplog):
    handlers["test.fails"] = lambda event, payload: 1 / 0
    event = account_updated_event()
    deliveries = [
        event,
        event,  # duplicate
        make_event("payout.paid", {"id": "po_1"}),
        make_event("test.fails", {"id": "x_1"}),
    ]
    forged = "t=1,v1=" + "ab" * 32
    with caplog.at_level(logging.INFO, logger="wagtail_client_billing.webhooks"):
        for delivery in deliveries:
            deliver(client, delivery)
        deliver(client, b"{}", signature=forged)

    records = [r for r in caplog.records if r.name == "wagtail_client_billing.webhooks"]
    assert len(records) == len(deliveries) + 1  # and the refused one
    messages = [r.getMessage() for r in records]
    assert "processed" in messages[0] and event["id"] in messages[0]
    assert "duplicate" in messages[1]
    assert "ignored (no handler)" in messages[2]
    assert records[3].levelname == "ERROR" and "ZeroDivisionError" in messages[3]
    assert not any("whsec_" in m or "v1=" in m for m in caplog.messages)
    # The refused request: one warning with the reason only, no traceback, and nothing
    # for Django's security logger (which would email ADMINS for every probe).
    refused = records[-1]
    assert refused.levelname == "WARNING" and refused.exc_info is None
    assert refused.getMessage() == "Refused a webhook request: Invalid or expired Stripe-Signature."
    assert not [r for r in caplog.records if r.name.startswith("django.security")]
    assert forged not in caplog.text and "ab" * 32 not in caplog.text


# The simulator's own events ---------------------------------------------------------------


def connect_at_simulator() -> StripeConnection:
    """Connect the agency through the simulator, as the Connect form does."""
    return connections.connect(
        mode="test",
        country="FR",
        privacy_policy_url="https://agency.example/privacy/",
        terms_of_service_url="https://agency.example/terms/",
        site_url="https://agency.example/",
        nonce=uuid.uuid4().hex,
    )


def test_the_simulators_events_onboard_then_unlink(client, db, billing_stripe_settings):
    simulator = billing_stripe_settings
    connection = connect_at_simulator()
    assert connection.status == StripeConnection.Status.ONBOARDING

    simulator.complete_onboarding(connection.account_id)
    (updated,) = simulator.events("account.updated")
    assert deliver(client, updated).status_code == 200
    connection.refresh_from_db()
    assert connection.status == StripeConnection.Status.READY
    assert onboarding_entries() == 1

    deauthorized = simulator.deauthorize(connection.account_id)
    assert deliver(client, deauthorized).status_code == 200
    connection.refresh_from_db()
    assert not connection.is_linked
    assert list(WebhookEvent.objects.order_by("pk").values_list("type", "status")) == [
        ("account.updated", STATUS.PROCESSED),
        ("account.application.deauthorized", STATUS.PROCESSED),
    ]


@pytest.mark.django_db(transaction=True)
def test_the_simulator_delivers_to_the_live_endpoint(live_server, billing_stripe_settings):
    simulator = billing_stripe_settings
    simulator.add_webhook(live_server.url + URL, SECRET, connect=True)
    connection = connect_at_simulator()

    simulator.complete_onboarding(connection.account_id)
    (delivery,) = simulator.wait_for_delivery("account.updated")

    assert delivery.status == 200
    connection.refresh_from_db()
    assert connection.status == StripeConnection.Status.READY
    assert WebhookEvent.objects.get(stripe_id=delivery.event_id).status == STATUS.PROCESSED
    assert onboarding_entries() == 1


@pytest.mark.parametrize(
    "requirements",
    [{"currently_due": 3}, {"past_due": "external_account"}, 7, {"currently_due": [1, None]}],
)
def test_an_account_update_with_odd_requirements_never_fails(client, connection, requirements):
    account = {**account_object(), "requirements": requirements}
    assert deliver(client, make_event("account.updated", account)).status_code == 200
    assert WebhookEvent.objects.get().status == STATUS.PROCESSED
    assert StripeConnection.objects.get().requirements_due == []
