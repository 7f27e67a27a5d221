"""Billing requests through the real admin views, the simulator and signed webhooks."""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail as outbox
from django.urls import reverse
from django.utils import timezone
from wagtail.models import ModelLogEntry

from tests.factories import grant_billing, make_user
from wagtail_client_billing import billing, signals, stripe_api, tasks
from wagtail_client_billing.billing import states as billing_states
from wagtail_client_billing.models import BillingRequest
from wagtail_client_billing.testing.stripe_simulator.faults import Fault
from wagtail_client_billing.testing.stripe_simulator.webhooks import signature_header

pytestmark = pytest.mark.django_db

Status = BillingRequest.Status
WEBHOOK = "/billing/stripe/webhook/"
SECRET = "whsec_test_suite"
INDEX = reverse("wagtail_client_billing_requests:index")
ADD = reverse("wagtail_client_billing_requests:add")


class CommittingClient:
    """The test client, running on-commit callbacks (emails, signals) after each request.

    Tests run inside a transaction that never commits; this runs what a real commit
    would, at the moment it would.
    """

    def __init__(self, client, capture):
        self._client, self._capture = client, capture

    def get(self, *args, **kwargs):
        with self._capture(execute=True):
            return self._client.get(*args, **kwargs)

    def post(self, *args, **kwargs):
        with self._capture(execute=True):
            return self._client.post(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


@pytest.fixture
def client(client, django_capture_on_commit_callbacks):
    return CommittingClient(client, django_capture_on_commit_callbacks)


@pytest.fixture
def editor(client, sites):
    """An editor who may bill for Acme only."""
    user = make_user("acme-editor")
    grant_billing(user, sites[0])
    client.force_login(user)
    return client


def rows(page: str) -> str:
    """The listing's table only (not the messages above it)."""
    start = page.index('class="listing')
    return page[start : page.index("</table>", start)]


def form(site, **changes):
    data = {
        "email": "client@example.com",
        "currency": "eur",
        "amount": "49.90",
        "description": "Website maintenance",
        "success_url": "https://acme.test/thanks/",
        "cancel_url": "https://acme.test/cancel/",
        "billing_type": "one_time",
        "nonce": f"nonce-{timezone.now().timestamp()}",
    }
    return {**data, **changes}


def add(client, site, **changes):
    return client.post(f"{ADD}?site={site.pk}", form(site, **changes))


def deliver(client, event):
    """POST a simulator event to our webhook, signed as Stripe signs it."""
    body = json.dumps(event).encode()
    return client.post(
        WEBHOOK, body, content_type="application/json",
        HTTP_STRIPE_SIGNATURE=signature_header(body, SECRET),
    )  # fmt: skip


def sessions_at_stripe(connection):
    sessions = stripe_api.get_client("test").v1.checkout.sessions.list(
        options={"stripe_account": connection.account_id}
    )
    return sessions.data


def last_event(sim, event_type):
    return sim.events(event_type)[-1]


def session_of(sim, request):
    return sim.get_object(request.checkout_session_id, "checkout.session")


# Creating -------------------------------------------------------------------------------


def test_send_one_time_request(editor, sites, connection, stripe):
    response = add(editor, sites[0])

    assert response.status_code == 302
    request = BillingRequest.objects.get()
    session = session_of(stripe, request)
    assert request.status == Status.PENDING
    assert request.site == sites[0]
    assert request.amount == 4990 and request.currency == "eur"
    assert session["mode"] == "payment"
    assert session["customer_email"] == "client@example.com"
    assert session["client_reference_id"] == f"wcb-{request.pk}"
    assert session["metadata"]["wagtail_client_billing_request"] == str(request.pk)
    assert session["success_url"] == "https://acme.test/thanks/"
    assert session["amount_total"] == 4990
    # On the agency's connected account, expiring inside Stripe's 24 h.
    assert stripe.engine.store.find(request.checkout_session_id, "checkout.session").scope
    lifetime = session["expires_at"] - session["created"]
    assert 23 * 3600 < lifetime < 24 * 3600
    assert int(request.expires_at.timestamp()) == session["expires_at"]
    # The email went out with the site's own payment link.
    assert len(outbox.outbox) == 1
    message = outbox.outbox[0]
    assert message.to == ["client@example.com"]
    assert request.get_payment_path() in message.body
    assert request.token not in str(request.pk)
    request.refresh_from_db()
    assert request.email_status == BillingRequest.EmailStatus.SENT
    assert ModelLogEntry.objects.filter(action=billing.ACTION_CREATE).count() == 1


@pytest.mark.parametrize(("billing_type", "interval"), [("monthly", "month"), ("yearly", "year")])
def test_send_recurring_request(editor, sites, connection, stripe, billing_type, interval):
    add(editor, sites[0], billing_type=billing_type)
    request = BillingRequest.objects.get()
    assert request.is_recurring
    session = session_of(stripe, request)
    assert session["mode"] == "subscription"
    line = stripe.engine.store.find(request.checkout_session_id, "checkout.session")
    assert line is not None
    items = (
        stripe.engine.line_items(request.checkout_session_id)
        if hasattr(stripe.engine, "line_items")
        else None
    )
    if items:
        assert items[0]["price"]["recurring"]["interval"] == interval
    # The client is told plainly that it repeats, and how to stop it.
    (message,) = [m for m in outbox.outbox if request.email in m.to]
    html = message.alternatives[0][0]
    for body in (message.body, html):
        assert f"you will be charged €49.90 every {interval} until you cancel" in body, body
        assert "To cancel, reply to this email" in body


def test_a_one_time_request_email_says_nothing_of_cancelling(editor, sites, connection, stripe):
    add(editor, sites[0])
    (message,) = outbox.outbox
    assert "until you cancel" not in message.body
    assert "To cancel" not in message.alternatives[0][0]


def test_the_form_starts_with_sensible_defaults(editor, sites, connection):
    form_ = editor.get(f"{ADD}?site={sites[0].pk}").context["form"]
    assert form_.initial["description"] == "Payment to Acme Plumbing"
    assert form_.initial["billing_type"] == "one_time"


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"currency": "jpy", "amount": "1000.5"}, "amount", "JPY amounts must be whole numbers"),
        (
            {"currency": "eur", "amount": "0.10"},
            "amount",
            "The minimum Stripe accepts in EUR is €0.50",
        ),
        ({"currency": "usd", "amount": "1000000"}, "amount", "The maximum Stripe accepts in USD"),
        ({"currency": "kwd", "amount": "12.345"}, "amount", "KWD amounts can have at most 2"),
        ({"currency": "xyz"}, "currency", "Select a valid choice"),
        ({"amount": "abc"}, "amount", "Enter an amount, e.g. 49.90."),
        ({"amount": "-5"}, "amount", "Enter an amount, e.g. 49.90."),
        ({"amount": "4.9.90"}, "amount", "Enter an amount, e.g. 49.90."),
        ({"currency": "", "amount": "9" * 17}, "amount", "This amount is far too large."),
        ({"currency": "usd", "amount": "1,000"}, "amount", "can be read two ways"),
        ({"email": "not-an-email"}, "email", "Enter a valid email address"),
        ({"email": "a@example.com\nBcc: x@evil.test"}, "email", "Enter a valid email address"),
        ({"success_url": "javascript:alert(1)"}, "success_url", "Enter a valid URL"),
        ({"cancel_url": "/relative/"}, "cancel_url", "Enter a valid URL"),
        ({"description": "   "}, "description", "This field is required"),
        ({"billing_type": "weekly"}, "billing_type", "Select a valid choice"),
    ],
)
def test_bad_input_is_refused_clearly_and_kept(
    editor, sites, connection, stripe, changes, field, message
):
    response = add(editor, sites[0], **changes)
    assert response.status_code == 200
    errors = " ".join(response.context["form"].errors[field])
    assert message in errors
    assert BillingRequest.objects.count() == 0
    assert sessions_at_stripe(connection) == []  # Stripe was not even asked


def test_kwd_with_three_decimals_is_accepted(editor, sites, connection, stripe):
    add(editor, sites[0], currency="kwd", amount="12.340")
    assert BillingRequest.objects.get().amount == 12340


@pytest.mark.parametrize(
    ("language", "typed", "minor"),
    [
        ("en", "49.90", 4990),
        ("en", "49,90", 4990),  # a decimal comma is never dropped: 49.90, not 4990.00
        ("en", "1,234.50", 123450),
        ("fr", "49,90", 4990),
        ("fr", "1 234,50", 123450),
        ("fr", "1\u202f234,50", 123450),  # French grouping as some keyboards type it
        ("fr", "1,000", 100),  # a decimal comma, in French
        ("fr", "1.234,50", 123450),
    ],
)
def test_amounts_are_read_as_people_type_them(
    editor, sites, connection, stripe, language, typed, minor
):
    from django.contrib.auth import get_user_model
    from wagtail.users.models import UserProfile

    profile = UserProfile.get_for_user(get_user_model().objects.get(username="acme-editor"))
    profile.preferred_language = language
    profile.save()
    response = add(editor, sites[0], currency="eur", amount=typed)
    assert response.status_code == 302, response.context["form"].errors
    assert BillingRequest.objects.get().amount == minor


def test_the_amount_box_is_text_with_a_decimal_keypad(editor, sites, connection):
    page = editor.get(f"{ADD}?site={sites[0].pk}").content.decode()
    box = re.search(r'<input[^>]*name="amount"[^>]*>', page).group(0)
    assert 'type="text"' in box and 'inputmode="decimal"' in box


def test_live_mode_requires_https(editor, sites, connection, stripe, settings):
    from wagtail_client_billing import connections

    connections.switch_mode("live")
    response = add(editor, sites[0], success_url="http://acme.test/thanks/")
    assert "https://" in " ".join(response.context["form"].errors["success_url"])


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (Fault("error", "POST", "/v1/checkout/sessions", status=500), "Stripe had a problem"),
        (Fault("hang", "POST", "/v1/checkout/sessions", seconds=4), "could not be reached"),
        (
            Fault("error", "POST", "/v1/checkout/sessions", status=400, message="Bad currency."),
            "Bad currency.",
        ),
    ],
    ids=["stripe-500", "stripe-timeout", "stripe-refuses"],
)
def test_stripe_failing_keeps_the_form_and_saves_nothing(
    editor, sites, connection, stripe, fault, message
):
    stripe.engine.faults.add(fault)
    response = add(editor, sites[0], email="kept@example.com")
    page = response.content.decode()
    assert response.status_code == 200
    assert message in page
    assert ".)." not in page and ".)" not in page  # Stripe's reason, punctuated once
    assert 'value="kept@example.com"' in page
    # Nothing made, listed or sent. After a timeout (Stripe may have made the session)
    # the attempt is kept, unlisted, for the form's retry to resume with the same key.
    kept = BillingRequest.objects.filter(status=BillingRequest.CREATING).count()
    assert BillingRequest.objects.count() == kept == (1 if fault.kind == "hang" else 0)
    assert "kept@example.com" not in editor.get(f"{INDEX}?site={sites[0].pk}").content.decode()
    assert outbox.outbox == []
    if fault.kind == "error":  # a hung request is carried out late, as at Stripe
        assert sessions_at_stripe(connection) == []


def test_no_ready_account_says_so(editor, sites, stripe):
    page = editor.get(f"{ADD}?site={sites[0].pk}").content.decode()
    assert "No client billing account is connected" in page
    response = add(editor, sites[0])
    assert "No client billing account is connected" in response.content.decode()
    assert BillingRequest.objects.count() == 0


def test_agency_admins_get_a_link_to_the_settings(client, sites, stripe):
    client.force_login(make_user("boss", superuser=True))
    page = client.get(f"{ADD}?site={sites[0].pk}").content.decode()
    assert reverse("wagtail_client_billing_agency:index") in page


def test_a_double_submit_bills_once(editor, sites, connection, stripe):
    data = form(sites[0], nonce="same-nonce")
    editor.post(f"{ADD}?site={sites[0].pk}", data)
    response = editor.post(f"{ADD}?site={sites[0].pk}", data)
    assert BillingRequest.objects.count() == 1
    assert response.status_code == 302
    assert len(outbox.outbox) == 1


# Paying ---------------------------------------------------------------------------------


def test_paid_only_after_the_signed_webhook(editor, client, sites, connection, stripe):
    add(editor, sites[0])
    request = BillingRequest.objects.get()
    paid = []
    signals.billing_request_paid.connect(lambda **kw: paid.append(kw), weak=False)
    try:
        stripe.complete_checkout(request.checkout_session_id)
        request.refresh_from_db()
        assert request.status == Status.PENDING  # nothing happens until Stripe says so

        event = last_event(stripe, "checkout.session.completed")
        assert deliver(client, event).status_code == 200
        assert deliver(client, event).status_code == 200  # a duplicate changes nothing
    finally:
        signals.billing_request_paid.receivers.clear()
    request.refresh_from_db()
    assert request.status == Status.PAID and request.paid_at
    assert len(paid) == 1
    assert ModelLogEntry.objects.filter(action=billing.ACTION_PAID).count() == 1


def test_a_forged_webhook_changes_nothing(editor, client, sites, connection, stripe):
    add(editor, sites[0])
    request = BillingRequest.objects.get()
    stripe.complete_checkout(request.checkout_session_id)
    body = json.dumps(last_event(stripe, "checkout.session.completed")).encode()
    response = client.post(
        WEBHOOK, body, content_type="application/json",
        HTTP_STRIPE_SIGNATURE=signature_header(body, "whsec_someone_else"),
    )  # fmt: skip
    assert response.status_code == 400
    request.refresh_from_db()
    assert request.status == Status.PENDING


def test_delayed_payment_processing_then_paid_or_failed(editor, client, sites, connection, stripe):
    add(editor, sites[0])
    add(editor, sites[0], email="second@example.com")
    first, second = BillingRequest.objects.order_by("pk")
    for request in (first, second):
        stripe.complete_checkout(request.checkout_session_id, delayed=True)
    for event in stripe.events("checkout.session.completed"):
        deliver(client, event)
    first.refresh_from_db()
    assert first.status == Status.PENDING
    assert first.payment_state == BillingRequest.PaymentState.PROCESSING
    # The client's link now says so (Checkout would only show "session complete").
    host = {"HTTP_HOST": "acme.test"}
    page = client.get(first.get_payment_path(), **host)
    assert page.status_code == 200
    assert "Your payment is being processed" in page.content.decode()

    stripe.settle_async(first.checkout_session_id, succeed=True)
    stripe.settle_async(second.checkout_session_id, succeed=False)
    for event_type in (
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
    ):
        for event in stripe.events(event_type):
            deliver(client, event)
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == Status.PAID
    assert second.status == Status.PENDING
    assert second.payment_state == BillingRequest.PaymentState.FAILED
    page = client.get(second.get_payment_path(), **host).content.decode()
    assert "Your payment did not go through" in page
    assert (
        "This request has been paid"
        in client.get(first.get_payment_path(), **host).content.decode()
    )


def test_subscription_is_recorded_and_followed(editor, client, sites, connection, stripe):
    add(editor, sites[0], billing_type="monthly")
    request = BillingRequest.objects.get()
    stripe.complete_checkout(request.checkout_session_id)
    deliver(client, last_event(stripe, "checkout.session.completed"))
    request.refresh_from_db()
    assert request.status == Status.PAID
    assert request.subscription_id.startswith("sub_")
    assert request.subscription_status == "active"

    canceled = dict(last_event(stripe, "customer.subscription.created"))
    canceled["id"] = "evt_sub_deleted_1"
    canceled["type"] = "customer.subscription.deleted"
    canceled["data"] = {"object": {**canceled["data"]["object"], "status": "canceled"}}
    assert deliver(client, canceled).status_code == 200
    request.refresh_from_db()
    assert request.subscription_status == "canceled"
    assert request.status == Status.PAID


# Expiring and deleting -------------------------------------------------------------------


def test_the_sweep_expires_overdue_requests_once(
    editor, sites, connection, stripe, django_capture_on_commit_callbacks
):
    add(editor, sites[0])
    add(editor, sites[0], email="b@example.com")
    expired = []
    signals.billing_request_expired.connect(lambda **kw: expired.append(kw), weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            assert billing.expire_overdue() == []  # nothing is due yet
            later = timezone.now() + timedelta(hours=25)
            assert len(billing.expire_overdue(now=later)) == 2
            assert billing.expire_overdue(now=later) == []
    finally:
        signals.billing_request_expired.receivers.clear()
    assert set(BillingRequest.objects.values_list("status", flat=True)) == {Status.EXPIRED}
    assert len(expired) == 2
    assert ModelLogEntry.objects.filter(action=billing.ACTION_EXPIRED).count() == 2


def test_the_sweeps_audit_entries_are_those_of_any_transition(editor, sites, connection, stripe):
    """Written set-based (on PostgreSQL by the UPDATE's own statement), each entry still
    names its request as the history shows it: its label and data, nothing missing."""
    add(editor, sites[0], amount="1234.50")
    add(editor, sites[0], email="b@example.com", currency="jpy", amount="5000")
    flipped = billing.expire_overdue(now=timezone.now() + timedelta(hours=25))
    assert len(flipped) == 2
    for request in BillingRequest.objects.filter(pk__in=flipped):
        entry = ModelLogEntry.objects.get(action=billing.ACTION_EXPIRED, object_id=str(request.pk))
        assert entry.content_type.model_class() is BillingRequest
        assert entry.label == str(request)  # e.g. "b@example.com · ¥5,000"
        assert entry.data == billing_states.log_data(request, source="sweep")
        assert entry.user is None and entry.timestamp == request.expired_at


def test_the_sweep_in_small_batches_flips_every_overdue_row_once(sites):
    """Each batch starts where the last ended (ties on ``expires_at`` included): none is
    skipped, none flipped twice, the ones not yet due are left alone."""
    now = timezone.now()
    due = [now - timedelta(minutes=minutes) for minutes in (50, 40, 40, 40, 30, 20, 20, 10, 1)]
    BillingRequest.objects.bulk_create(
        BillingRequest(
            site=sites[0], email=f"c{n}@example.com", currency="eur", amount=1000 + n,
            description="Hosting", success_url="https://acme.test/ok/",
            cancel_url="https://acme.test/no/", expires_at=expires_at,
        )
        for n, expires_at in enumerate([*due, now + timedelta(minutes=5)])
    )  # fmt: skip
    flipped = billing.expire_overdue(now=now, batch_size=2)
    overdue = BillingRequest.objects.filter(expires_at__lte=now)
    assert sorted(flipped) == sorted(overdue.values_list("pk", flat=True))
    assert len(flipped) == len(due)
    assert BillingRequest.objects.get(expires_at__gt=now).status == Status.PENDING
    entries = ModelLogEntry.objects.filter(action=billing.ACTION_EXPIRED)
    assert sorted(int(pk) for pk in entries.values_list("object_id", flat=True)) == sorted(flipped)


def test_expired_by_stripe_webhook(editor, client, sites, connection, stripe):
    add(editor, sites[0])
    request = BillingRequest.objects.get()
    stripe.advance_clock(25 * 3600)  # Stripe expires the session on its own
    event = last_event(stripe, "checkout.session.expired")
    deliver(client, event)
    request.refresh_from_db()
    assert request.status == Status.EXPIRED


def test_paid_after_expiry_is_still_paid_and_flagged(editor, client, sites, connection, stripe):
    add(editor, sites[0])
    request = BillingRequest.objects.get()
    stripe.complete_checkout(request.checkout_session_id)  # paid, but the webhook is lost
    billing.expire_overdue(now=timezone.now() + timedelta(hours=25))
    request.refresh_from_db()
    assert request.status == Status.EXPIRED

    billing.reconcile(extra_ids=[request.pk])
    request.refresh_from_db()
    assert request.status == Status.PAID
    assert request.late_payment


def test_reconciliation_finds_lost_webhooks(editor, sites, connection, stripe):
    add(editor, sites[0])
    request = BillingRequest.objects.get()
    stripe.complete_checkout(request.checkout_session_id)
    BillingRequest.objects.filter(pk=request.pk).update(
        created_at=timezone.now() - timedelta(hours=2)
    )
    assert tasks.expire_and_reconcile() == {"expired": 0, "reconciled": 1}
    request.refresh_from_db()
    assert request.status == Status.PAID


def test_reconciliation_survives_stripe_being_down(editor, sites, connection, stripe):
    add(editor, sites[0])
    request = BillingRequest.objects.get()
    BillingRequest.objects.filter(pk=request.pk).update(
        created_at=timezone.now() - timedelta(hours=2)
    )
    stripe.fail_next("GET", "/v1/checkout/sessions/*", status=500)
    assert billing.reconcile() == 0
    request.refresh_from_db()
    assert request.status == Status.PENDING
    assert request.reconciled_at is None  # Stripe down: asked again next run


def test_a_request_stripe_refuses_to_reconcile_waits_its_turn(editor, sites, connection, stripe):
    # An account deauthorized at Stripe refuses every read of its sessions: asking every
    # minute would fail the same way and keep the rest of the batch waiting.
    add(editor, sites[0], email="refused@example.com", nonce="refused")
    add(editor, sites[0], email="other@example.com", nonce="other")
    refused = BillingRequest.objects.get(email="refused@example.com")
    BillingRequest.objects.update(created_at=timezone.now() - timedelta(hours=2))
    stripe.fail_next("GET", f"/v1/checkout/sessions/{refused.checkout_session_id}", status=404)
    assert billing.reconcile() == 1  # the other one
    refused.refresh_from_db()
    assert refused.reconciled_at is not None  # asked again in an hour, not next minute
    assert billing.reconcile() == 0


def test_delete_expires_the_session_then_marks_deleted(editor, client, sites, connection, stripe):
    add(editor, sites[0])
    request = BillingRequest.objects.get()
    delete_url = reverse("wagtail_client_billing_requests:delete", args=[request.pk])
    assert "Yes, delete" in editor.get(delete_url).content.decode()

    editor.post(delete_url)
    request.refresh_from_db()
    assert request.status == Status.DELETED
    assert session_of(stripe, request)["status"] == "expired"
    # Stripe's checkout.session.expired that follows changes nothing.
    deliver(client, last_event(stripe, "checkout.session.expired"))
    request.refresh_from_db()
    assert request.status == Status.DELETED
    assert ModelLogEntry.objects.filter(action=billing.ACTION_DELETED).count() == 1
    assert ModelLogEntry.objects.filter(action=billing.ACTION_EXPIRED).count() == 0


def test_delete_racing_a_completed_payment_makes_it_paid(editor, sites, connection, stripe):
    add(editor, sites[0])
    request = BillingRequest.objects.get()
    stripe.complete_checkout(request.checkout_session_id)  # the webhook has not arrived
    page = editor.post(
        reverse("wagtail_client_billing_requests:delete", args=[request.pk]), follow=True
    ).content.decode()
    request.refresh_from_db()
    assert request.status == Status.PAID
    assert "already paid" in page


def test_delete_with_stripe_down_changes_nothing(editor, sites, connection, stripe):
    add(editor, sites[0])
    request = BillingRequest.objects.get()
    stripe.fail_next("POST", "/v1/checkout/sessions/*/expire", status=500)
    page = editor.post(
        reverse("wagtail_client_billing_requests:delete", args=[request.pk]), follow=True
    ).content.decode()
    request.refresh_from_db()
    assert request.status == Status.PENDING
    assert "Stripe had a problem" in page


def test_resend_queues_the_email_again(editor, sites, connection, stripe):
    add(editor, sites[0])
    request = BillingRequest.objects.get()
    editor.post(reverse("wagtail_client_billing_requests:resend", args=[request.pk]))
    assert len(outbox.outbox) == 2
    entry = ModelLogEntry.objects.get(action=billing.ACTION_RESEND)  # in the request's history
    assert (entry.object_id, entry.user.get_username()) == (str(request.pk), "acme-editor")


def test_each_row_menu_offers_details_copy_link_and_for_pending_resend_and_delete(
    editor, sites, connection, stripe
):
    add(editor, sites[0])
    add(editor, sites[0], email="paid@example.com", nonce="n-2")
    paid = BillingRequest.objects.get(email="paid@example.com")
    stripe.complete_checkout(paid.checkout_session_id)
    deliver(editor, last_event(stripe, "checkout.session.completed"))
    pending = BillingRequest.objects.get(email="client@example.com")
    listing = editor.get(reverse("wagtail_client_billing_requests:index")).content.decode()

    def menu_of(request):
        start = listing.index(f'aria-label="More options for &#x27;{request.email}')
        return listing[start : listing.index("</ul>", start)]

    for request in (pending, paid):
        menu = menu_of(request)
        assert reverse("wagtail_client_billing_requests:inspect", args=[request.pk]) in menu
        assert "Copy payment link" in menu
        assert f'data-w-clipboard-value-param="{request.get_payment_url()}"' in menu
    resend = reverse("wagtail_client_billing_requests:resend", args=[pending.pk])
    assert f'data-w-action-url-value="{resend}"' in menu_of(pending)  # a POST, not a link
    assert reverse("wagtail_client_billing_requests:delete", args=[pending.pk]) in menu_of(pending)
    assert "Resend email" not in menu_of(paid) and "Delete" not in menu_of(paid)


def test_resend_goes_back_to_the_listing_it_came_from_never_elsewhere(
    editor, sites, connection, stripe
):
    add(editor, sites[0])
    request = BillingRequest.objects.get()
    resend = reverse("wagtail_client_billing_requests:resend", args=[request.pk])
    filtered = reverse("wagtail_client_billing_requests:index") + "?status=pending"
    assert editor.post(resend, {"next": filtered})["Location"] == filtered
    response = editor.post(resend, {"next": "https://evil.example/"})
    assert response["Location"].startswith(reverse("wagtail_client_billing_requests:index"))
    assert len(outbox.outbox) == 3


def test_resend_on_a_requests_page_comes_back_to_that_page(editor, sites, connection, stripe):
    add(editor, sites[0])
    request = BillingRequest.objects.get()
    inspect = reverse("wagtail_client_billing_requests:inspect", args=[request.pk])
    page = editor.get(inspect).content.decode()
    resend = reverse("wagtail_client_billing_requests:resend", args=[request.pk])
    form = re.search(rf'<form method="post" action="{resend}">(.*?)</form>', page, re.S)
    assert form, "the request's page has a Resend button"
    fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', form.group(1)))
    response = editor.post(resend, fields)
    assert response["Location"] == inspect
    assert "is queued" in editor.get(inspect).content.decode()


def test_the_schedule_exists_once():
    from django_q.models import Schedule

    tasks.ensure_schedule()
    tasks.ensure_schedule()
    schedule = Schedule.objects.get(name=tasks.SCHEDULE_NAME)
    assert schedule.func == "wagtail_client_billing.tasks.expire_and_reconcile"
    assert schedule.minutes == 1


# The listing and isolation ---------------------------------------------------------------


def test_listing_shows_the_sites_requests_newest_first(editor, sites, connection, stripe):
    add(editor, sites[0], email="first@example.com")
    add(editor, sites[0], email="second@example.com", currency="jpy", amount="5000")
    page = rows(editor.get(f"{INDEX}?site={sites[0].pk}").content.decode())
    assert page.index("second@example.com") < page.index("first@example.com")
    assert "€49.90" in page
    assert "¥5,000" in page
    assert "Pending" in page


def test_deleted_are_hidden_unless_filtered_for(editor, sites, connection, stripe):
    add(editor, sites[0], email="gone@example.com")
    request = BillingRequest.objects.get()
    editor.post(reverse("wagtail_client_billing_requests:delete", args=[request.pk]))
    editor.get(INDEX)  # shows (and so clears) the messages of the actions above
    assert "gone@example.com" not in editor.get(INDEX).content.decode()
    assert "gone@example.com" in rows(editor.get(f"{INDEX}?status=deleted").content.decode())


def test_filters_and_search(editor, sites, connection, stripe):
    add(editor, sites[0], email="alice@example.com")
    add(editor, sites[0], email="bob@example.com", billing_type="monthly", currency="usd")
    page = rows(editor.get(f"{INDEX}?q=alice").content.decode())
    assert "alice@example.com" in page and "bob@example.com" not in page
    page = rows(editor.get(f"{INDEX}?billing_type=monthly").content.decode())
    assert "bob@example.com" in page and "alice@example.com" not in page
    page = rows(editor.get(f"{INDEX}?currency=usd").content.decode())
    assert "bob@example.com" in page and "alice@example.com" not in page


def test_an_editor_of_site_a_cannot_touch_site_b(editor, sites, connection, stripe):
    from django.test import Client

    acme, bakery = sites
    other = make_user("bakery-editor")
    grant_billing(other, bakery)
    bakery_client = Client()
    bakery_client.force_login(other)
    add(bakery_client, bakery, email="bakery-client@example.com")
    secret = BillingRequest.objects.get()

    assert "bakery-client@example.com" not in editor.get(INDEX).content.decode()
    assert editor.get(f"{INDEX}?site={bakery.pk}").status_code == 404
    assert editor.post(f"{ADD}?site={bakery.pk}", form(bakery)).status_code == 404
    for name, methods in (
        ("inspect", ["get"]),
        ("history", ["get"]),
        ("history_results", ["get"]),
        ("delete", ["get", "post"]),
        ("resend", ["post"]),
    ):
        target = reverse(f"wagtail_client_billing_requests:{name}", args=[secret.pk])
        for method in methods:
            assert getattr(editor, method)(target).status_code == 404, (name, method)
    secret.refresh_from_db()
    assert secret.status == Status.PENDING
    assert BillingRequest.objects.count() == 1


def test_users_without_billing_rights_see_no_menu_and_cannot_add(client, sites, stripe):
    client.force_login(make_user("writer"))
    home = client.get(reverse("wagtailadmin_home")).content.decode()
    assert INDEX not in home
    # Wagtail's answer to PermissionDenied in the admin: back to the dashboard.
    listing = client.get(INDEX)
    assert (listing.status_code, listing["Location"]) == (302, reverse("wagtailadmin_home"))
    # No site to bill for: 403; a site named in ?site= that is not theirs: 404.
    refused = client.post(ADD, form(sites[0]))
    assert refused.status_code == 403
    assert "You may not bill for any site" in refused.content.decode()
    assert client.post(f"{ADD}?site={sites[0].pk}", form(sites[0])).status_code == 404
    assert not BillingRequest.objects.exists()


def test_agency_admins_see_every_site(client, sites, connection, stripe):
    client.force_login(make_user("agency", agency=True))
    page = client.get(INDEX).content.decode()
    assert "Acme Plumbing" in page and "Rue Haute Bakery" in page


# The client's payment link ---------------------------------------------------------------


def test_payment_link_outcomes(editor, client, sites, connection, stripe):
    add(editor, sites[0])
    request = BillingRequest.objects.get()
    link = request.get_payment_path()
    host = {"HTTP_HOST": "acme.test"}

    response = client.get(link, **host)
    assert response.status_code == 302
    assert response["Location"] == session_of(stripe, request)["url"]

    BillingRequest.objects.filter(pk=request.pk).update(status=Status.PAID)
    assert "This request has been paid" in client.get(link, **host).content.decode()
    BillingRequest.objects.filter(pk=request.pk).update(status=Status.EXPIRED)
    page = client.get(link, **host).content.decode()
    assert "This payment request has expired" in page
    BillingRequest.objects.filter(pk=request.pk).update(status=Status.DELETED)
    assert "withdrawn" in client.get(link, **host).content.decode()
    assert client.get("/billing/pay/not-a-token/", **host).status_code == 404


def test_payment_link_past_its_time_shows_expired(editor, client, sites, connection, stripe):
    add(editor, sites[0])
    request = BillingRequest.objects.get()
    BillingRequest.objects.filter(pk=request.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    page = client.get(request.get_payment_path(), HTTP_HOST="acme.test").content.decode()
    assert "This payment request has expired" in page


def test_payment_link_lives_on_its_own_site(editor, client, sites, connection, stripe):
    add(editor, sites[0])
    request = BillingRequest.objects.get()
    response = client.get(request.get_payment_path(), HTTP_HOST="bakery.test")
    assert response.status_code == 302
    assert response["Location"].startswith("http://acme.test/billing/pay/")


def test_amount_in_major_units():
    request = BillingRequest(amount=12340, currency="kwd")
    assert request.amount_major == Decimal("12.340")


def test_detail_shows_the_timeline_and_the_stripe_events(editor, client, sites, connection, stripe):
    add(editor, sites[0])
    request = BillingRequest.objects.get()
    stripe.complete_checkout(request.checkout_session_id)
    deliver(client, last_event(stripe, "checkout.session.completed"))
    history = editor.get(reverse("wagtail_client_billing_requests:history", args=[request.pk]))
    timeline = history.content.decode()
    assert "Billing request sent" in timeline and "Paid" in timeline
    page = editor.get(reverse("wagtail_client_billing_requests:inspect", args=[request.pk]))
    html = page.content.decode()
    assert reverse("wagtail_client_billing_requests:history", args=[request.pk]) in html
    events = html[html.index("data-wcb-stripe-events") :]
    assert "checkout.session.completed" in events
    assert "Renew" not in html  # only for expired or deleted requests


def test_a_retried_stripe_call_never_makes_a_second_session(
    editor, sites, connection, stripe, settings
):
    # The first call hangs past the client's timeout but Stripe still carries it out;
    # the SDK's retry sends the same idempotency key and gets that same session back.
    settings.WAGTAIL_CLIENT_BILLING = {
        **settings.WAGTAIL_CLIENT_BILLING,
        "STRIPE_MAX_NETWORK_RETRIES": 4,
        "STRIPE_TIMEOUT": 1,
    }
    stripe.hang_next("POST", "/v1/checkout/sessions", seconds=1.5)
    response = add(editor, sites[0])
    assert response.status_code == 302
    request = BillingRequest.objects.get()
    assert [s.id for s in sessions_at_stripe(connection)] == [request.checkout_session_id]


# Integrators' signals ---------------------------------------------------------------------


@pytest.fixture
def failing_receivers():
    """Receivers of every signal that raise, as an integrator's buggy code might."""
    calls = []

    def broken(signal_name):
        def receiver(**kwargs):
            calls.append((signal_name, kwargs["billing_request"].pk))
            raise RuntimeError(f"integrator bug in {signal_name}")

        return receiver

    connected = []
    for name in ("created", "paid", "expired", "deleted"):
        signal = getattr(signals, f"billing_request_{name}")
        receiver = broken(name)
        signal.connect(receiver, weak=False)
        connected.append((signal, receiver))
    yield calls
    for signal, receiver in connected:
        signal.disconnect(receiver)


def test_a_failing_signal_receiver_breaks_nothing(
    editor, client, sites, connection, stripe, failing_receivers, mailoutbox, caplog,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    # Created: the editor is redirected to the listing and the client still gets the email.
    response = add(editor, sites[0])
    assert response.status_code == 302
    first = BillingRequest.objects.get()
    assert [m.to for m in mailoutbox] == [["client@example.com"]]

    # Paid by webhook: Stripe gets its 200 (no pointless retries) and the status holds.
    stripe.complete_checkout(first.checkout_session_id)
    assert deliver(client, last_event(stripe, "checkout.session.completed")).status_code == 200
    first.refresh_from_db()
    assert first.status == Status.PAID

    # Deleted from the admin: the confirmation still leads back to the listing.
    add(editor, sites[0], email="second@example.com")
    second = BillingRequest.objects.get(email="second@example.com")
    delete = reverse("wagtail_client_billing_requests:delete", args=[second.pk])
    assert editor.post(delete).status_code == 302
    second.refresh_from_db()
    assert second.status == Status.DELETED

    # Expired by the sweep: every overdue request is expired and announced, not just
    # the one before the first failing receiver.
    add(editor, sites[0], email="third@example.com")
    add(editor, sites[0], email="fourth@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        expired = billing.expire_overdue(now=timezone.now() + timedelta(hours=25))
    assert len(expired) == 2

    assert [name for name, _ in failing_receivers].count("expired") == 2
    assert {name for name, _ in failing_receivers} == {"created", "paid", "deleted", "expired"}
    assert len(mailoutbox) == 4  # every client's email went out despite the receivers
    logged = [
        r for r in caplog.records if "receiver of a billing request signal failed" in r.message
    ]
    assert len(logged) == len(failing_receivers)
    assert all(r.exc_info for r in logged)


def test_a_form_that_arrives_without_its_nonce_says_so_and_works_when_resent(
    editor, sites, connection, stripe, mailoutbox
):
    data = form(sites[0])
    del data["nonce"]  # cut off or changed on the way
    response = editor.post(f"{ADD}?site={sites[0].pk}", data)
    assert response.status_code == 200
    page = response.content.decode()
    assert "This form arrived incomplete" in page
    assert 'value="client@example.com"' in page  # what was typed is kept
    assert BillingRequest.objects.count() == 0
    fresh = re.search(r'name="nonce" value="([^"]+)"', page).group(1)

    response = editor.post(f"{ADD}?site={sites[0].pk}", {**data, "nonce": fresh})
    assert response.status_code == 302
    assert BillingRequest.objects.count() == 1 and len(mailoutbox) == 1


def test_stripe_still_busy_with_a_timed_out_attempt_says_so_and_keeps_the_form(
    editor, sites, connection, stripe, settings
):
    settings.WAGTAIL_CLIENT_BILLING = {
        **settings.WAGTAIL_CLIENT_BILLING,
        "STRIPE_MAX_NETWORK_RETRIES": 1,
        "STRIPE_TIMEOUT": 1,
    }
    # The first attempt hangs past the timeout; the SDK's retry with the same
    # idempotency key finds it still running at Stripe (409).
    stripe.hang_next("POST", "/v1/checkout/sessions", seconds=3.0)
    data = form(sites[0], email="patient@example.com")
    response = editor.post(f"{ADD}?site={sites[0].pk}", data)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Stripe is still working on an earlier attempt of this request" in page
    assert "Idempotency" not in page  # not Stripe's raw words
    assert 'value="patient@example.com"' in page
    # Kept for the retry, but neither listed nor sent.
    assert BillingRequest.objects.get().status == BillingRequest.CREATING
    assert "patient@example.com" not in editor.get(f"{INDEX}?site={sites[0].pk}").content.decode()

    time.sleep(2.5)  # the slow attempt finishes at Stripe
    response = editor.post(f"{ADD}?site={sites[0].pk}", data)
    assert response.status_code == 302
    request = BillingRequest.objects.get()
    assert request.email == "patient@example.com" and request.status == Status.PENDING
    # The retry (same form, same nonce, same key) got the slow attempt's session back:
    # one client, one session.
    sessions = {session.id for session in sessions_at_stripe(connection)}
    assert sessions == {request.checkout_session_id}


def make_french(site):
    from wagtail.models import Locale, Page

    french, _ = Locale.objects.get_or_create(language_code="fr")
    Page.objects.filter(pk=site.root_page_id).update(locale=french)


def test_the_default_description_is_in_the_site_language_not_the_editor(editor, sites):
    make_french(sites[1])
    grant_billing(BillingRequest._meta.apps.get_model("auth", "User").objects.get(
        username="acme-editor"), sites[1])  # fmt: skip
    assert editor.get(f"{ADD}?site={sites[0].pk}").context["form"].initial["description"] == (
        "Payment to Acme Plumbing"
    )
    assert editor.get(f"{ADD}?site={sites[1].pk}").context["form"].initial["description"] == (
        "Paiement à Rue Haute Bakery"
    )


def test_an_unknown_link_is_explained_in_the_site_language(client, sites):
    make_french(sites[1])
    page = client.get("/billing/pay/no-such-token/", HTTP_HOST="bakery.test")
    assert page.status_code == 404
    assert 'lang="fr"' in page.content.decode()
    assert "Lien de paiement introuvable" in page.content.decode()
    english = client.get("/billing/pay/no-such-token/", HTTP_HOST="acme.test")
    assert 'lang="en"' in english.content.decode()


def test_the_same_request_sent_again_asks_first_then_sends_if_ticked(
    editor, sites, connection, stripe
):
    assert add(editor, sites[0], nonce="first").status_code == 302
    # Back, then Send again: a fresh page (a new nonce) with the same values typed in.
    again = add(editor, sites[0], nonce="after-back")
    assert again.status_code == 200
    page = again.content.decode()
    assert "The same billing request to client@example.com is already pending" in page
    first = BillingRequest.objects.get()
    assert reverse("wagtail_client_billing_requests:inspect", args=[first.pk]) in page
    assert re.search(r'<input type="checkbox" name="send_anyway"', page)
    assert 'value="49.90"' in page  # what was typed is kept
    assert BillingRequest.objects.count() == 1 and len(sessions_at_stripe(connection)) == 1
    # The domain asks, not only the form: whoever calls it.
    with pytest.raises(billing.PendingTwin):
        billing.create_request(site=sites[0], details=billing.RequestDetails.of(first))
    assert BillingRequest.objects.count() == 1

    assert add(editor, sites[0], nonce="after-back", send_anyway="on").status_code == 302
    assert BillingRequest.objects.count() == 2
    # Another amount, or another client, is not the same request: no question asked.
    assert add(editor, sites[0], nonce="other", amount="59.90").status_code == 302
    assert add(editor, sites[0], nonce="other-2", email="b@example.com").status_code == 302
    assert BillingRequest.objects.count() == 4


def test_the_groups_editor_offers_only_the_billing_permission_that_means_something(client):
    from django.contrib.auth.models import Permission

    client.force_login(make_user("boss", superuser=True))
    page = client.get(reverse("wagtailusers_groups:add")).content.decode()
    offered = set(map(int, re.findall(r'name="permissions" value="(\d+)"', page)))
    billing = {
        p.codename: p.pk
        for p in Permission.objects.filter(content_type__app_label="wagtail_client_billing")
    }
    assert billing["add_billingrequest"] in offered
    for codename in ("change_billingrequest", "delete_billingrequest", "view_billingrequest"):
        assert billing[codename] not in offered, codename


def test_a_pending_request_says_when_it_expires_not_just_now(editor, sites, connection, stripe):
    add(editor, sites[0])
    listing = editor.get(reverse("wagtail_client_billing_requests:index")).content.decode()
    row = rows(listing)
    # The product promises 24 hours: not "23 hours, 54 minutes" (Django's timeuntil).
    assert "in 24\xa0hours" in row, row


@pytest.mark.parametrize(
    ("left", "english", "french"),
    [
        (timedelta(hours=23, minutes=54), "24\xa0hours", "24\xa0heures"),
        (timedelta(hours=1, minutes=10), "1\xa0hour", "1\xa0heure"),
        (timedelta(minutes=59, seconds=50), "1\xa0hour", "1\xa0heure"),
        (timedelta(minutes=12, seconds=20), "12\xa0minutes", "12\xa0minutes"),
        (timedelta(seconds=5), "1\xa0minute", "1\xa0minute"),
        (timedelta(days=6, hours=20), "7\xa0days", "7\xa0jours"),
    ],
)
def test_the_time_left_is_one_rounded_unit_in_each_language(left, english, french):
    from django.utils import translation

    from wagtail_client_billing.templatetags.wagtail_client_billing_tags import until

    expires = timezone.now() + left + timedelta(seconds=1)  # the second the test takes
    with translation.override("en"):
        assert until(expires) == english
    with translation.override("fr"):
        assert until(expires) == french


def test_an_ended_request_says_when_it_ended_not_when_it_would_have(
    editor, sites, connection, stripe
):
    add(editor, sites[0])
    request = BillingRequest.objects.get()
    billing.expire_overdue(now=timezone.now() + timedelta(hours=25))
    inspect = reverse("wagtail_client_billing_requests:inspect", args=[request.pk])
    page = editor.get(inspect).content.decode()
    assert "Expired at" in page and ">Expires<" not in page


def test_a_search_that_finds_nothing_says_so(editor, sites, connection, stripe):
    add(editor, sites[0])
    index = reverse("wagtail_client_billing_requests:index")
    page = editor.get(f"{index}?q=zzz-nobody").content.decode()
    assert "No billing requests match this search or these filters." in page
    assert "No billing requests here yet." not in page
    page = editor.get(f"{index}?status=paid").content.decode()
    assert "No billing requests match this search or these filters." in page


def test_a_request_page_title_writes_the_amount_as_the_reader_does(
    editor, sites, connection, stripe
):
    from django.contrib.auth import get_user_model
    from wagtail.users.models import UserProfile

    add(editor, sites[0])
    request = BillingRequest.objects.get()
    inspect = reverse("wagtail_client_billing_requests:inspect", args=[request.pk])
    assert "client@example.com · €49.90" in editor.get(inspect).content.decode()
    profile = UserProfile.get_for_user(get_user_model().objects.get(username="acme-editor"))
    profile.preferred_language = "fr"
    profile.save()
    assert "client@example.com · 49,90\xa0€" in editor.get(inspect).content.decode()
