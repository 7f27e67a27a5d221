"""Unlinking never loses money: pending requests are withdrawn first, a payment that
arrives for an account that is gone is still applied (flagged late), and the links of
requests whose account is gone say so instead of opening Checkout."""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import timedelta

import pytest
from django.core import mail as outbox
from django.db.models.signals import post_save
from django.urls import reverse
from django.utils import timezone
from wagtail.models import ModelLogEntry

from tests.factories import grant_billing, make_site, make_user, request_details
from tests.test_billing_requests import (
    CommittingClient,
    add,
    deliver,
    last_event,
    make_french,
    session_of,
)
from tests.test_webhooks import LIVE_SECRET, make_event
from tests.test_webhooks import deliver as deliver_signed
from wagtail_client_billing import billing, connections, signals
from wagtail_client_billing.models import (
    BillingRequest,
    OutgoingEmail,
    StripeConnection,
    WebhookEvent,
)
from wagtail_client_billing.views import account as agency_views

pytestmark = pytest.mark.django_db

Status = BillingRequest.Status
UNLINK = reverse("wagtail_client_billing_agency:unlink", args=["test"])


@pytest.fixture
def site(db):
    return make_site("acme.test", "Acme Plumbing")


@pytest.fixture
def client(client, django_capture_on_commit_callbacks):
    return CommittingClient(client, django_capture_on_commit_callbacks)


@pytest.fixture
def editor(client, site):
    """An agency admin who also bills for Acme (one login is enough for these tests)."""
    user = make_user("agency", agency=True)
    grant_billing(user, site)
    client.force_login(user)
    return client


def send(editor, site, email: str) -> BillingRequest:
    add(editor, site, email=email, nonce=f"nonce-{email}")
    editor.get(reverse("wagtail_client_billing_requests:index"))  # reads "Billing request sent"
    return BillingRequest.objects.get(email=email)


def messages_of(response) -> list[str]:
    return [str(message).strip() for message in response.context["messages"]]


def linked(connection: StripeConnection) -> bool:
    connection.refresh_from_db()
    return connection.is_linked


# 1. Unlinking withdraws what it can ---------------------------------------------------


def test_the_unlink_page_counts_the_pending_requests_of_that_account(
    editor, site, connection, stripe
):
    send(editor, site, "a@example.com")
    send(editor, site, "b@example.com")
    paid = send(editor, site, "paid@example.com")
    other_mode = send(editor, site, "live@example.com")
    BillingRequest.objects.filter(pk=paid.pk).update(status=Status.PAID)
    BillingRequest.objects.filter(pk=other_mode.pk).update(mode="live")

    page = editor.get(UNLINK).content.decode()

    assert "2 billing requests are still pending on this account" in page
    assert "Withdraw 2 pending requests and unlink" in page
    assert "Yes, unlink account" not in page  # a plain unlink is not offered


def test_a_plain_unlink_is_refused_while_requests_are_pending(editor, site, connection, stripe):
    request = send(editor, site, "a@example.com")

    response = editor.post(UNLINK, follow=True)

    assert messages_of(response) == [
        "The account was not unlinked: 1 billing request is still pending on it. Withdraw it first."
    ]
    assert linked(connection)
    request.refresh_from_db()
    assert request.status == Status.PENDING
    assert session_of(stripe, request)["status"] == "open"


def test_withdraw_and_unlink_expires_each_session_then_unlinks(editor, site, connection, stripe):
    first = send(editor, site, "a@example.com")
    second = send(editor, site, "b@example.com")

    response = editor.post(UNLINK, {"withdraw": "1"}, follow=True)

    assert messages_of(response) == [
        "2 pending billing requests were withdrawn; the client billing account was unlinked."
    ]
    assert not linked(connection)
    for request in (first, second):
        request.refresh_from_db()
        assert request.status == Status.DELETED
        assert session_of(stripe, request)["status"] == "expired"  # the link is dead


def test_a_request_paid_before_the_withdraw_ends_paid(editor, site, connection, stripe):
    paid = send(editor, site, "paid@example.com")
    other = send(editor, site, "other@example.com")
    stripe.complete_checkout(paid.checkout_session_id)  # its webhook has not arrived

    response = editor.post(UNLINK, {"withdraw": "1"}, follow=True)

    assert messages_of(response) == [
        "1 pending billing request was withdrawn; 1 had already been paid and is now marked "
        "Paid; the client billing account was unlinked."
    ]
    paid.refresh_from_db()
    other.refresh_from_db()
    assert (paid.status, other.status) == (Status.PAID, Status.DELETED)
    assert not paid.late_payment  # paid while the account was still linked
    assert not linked(connection)


def test_stripe_failing_for_some_unlinks_nothing_and_a_retry_continues(
    editor, site, connection, stripe
):
    first = send(editor, site, "a@example.com")
    second = send(editor, site, "b@example.com")
    stripe.fail_next("POST", "/v1/checkout/sessions/*/expire", status=500)

    response = editor.post(UNLINK, {"withdraw": "1"}, follow=True)

    [message] = messages_of(response)
    assert message.startswith(
        "The account was not unlinked: 1 pending billing request was withdrawn, "
        "1 could not be (a@example.com: "
    )
    assert "Stripe had a problem" in message
    assert message.endswith("Try again to withdraw the rest and unlink.")
    assert linked(connection)
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == (Status.PENDING, Status.DELETED)
    assert (
        "1 billing request is still pending on this account" in editor.get(UNLINK).content.decode()
    )

    response = editor.post(UNLINK, {"withdraw": "1"}, follow=True)

    assert messages_of(response) == [
        "1 pending billing request was withdrawn; the client billing account was unlinked."
    ]
    first.refresh_from_db()
    assert first.status == Status.DELETED
    assert not linked(connection)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("wagtail_root")
def test_a_request_created_while_withdrawing_is_withdrawn_too(editor, site, connection, stripe):
    send(editor, site, "a@example.com")
    created_meanwhile: list[BillingRequest] = []

    def another_editor_sends(sender, billing_request, **kwargs):
        # A colleague's request lands right after the first withdrawal, before the
        # unlink (the "deleted" signal is sent as the withdrawal commits, outside any
        # transaction, as a colleague's create would be).
        if not created_meanwhile:
            created_meanwhile.append(
                billing.create_request(
                    site=site,
                    details=billing.RequestDetails.of(billing_request),
                    nonce="meanwhile",
                )
            )

    signals.billing_request_deleted.connect(another_editor_sends)
    try:
        outcome = billing.withdraw_and_unlink(connection, reason="test")
    finally:
        signals.billing_request_deleted.disconnect(another_editor_sends)

    assert created_meanwhile
    assert outcome.unlinked and outcome.withdrawn == 2 and not outcome.failures
    assert not linked(connection)
    assert set(BillingRequest.objects.values_list("status", flat=True)) == {Status.DELETED}
    assert session_of(stripe, created_meanwhile[0])["status"] == "expired"


def test_a_request_committed_as_the_unlink_commits_is_withdrawn_too(
    editor, site, connection, stripe
):
    first = send(editor, site, "a@example.com")
    late_comer: list[BillingRequest] = []

    def a_create_that_read_the_connection_before(sender, instance, created, **kwargs):
        # A create that saw the account linked commits its row just as the unlink does.
        if instance.action == connections.ACTION_UNLINK and not late_comer:
            late_comer.append(
                BillingRequest.objects.create(
                    site=site,
                    **{**asdict(billing.RequestDetails.of(first)), "email": "b@example.com"},
                    mode=first.mode,
                    account_id=first.account_id,
                    expires_at=first.expires_at,
                )
            )

    post_save.connect(a_create_that_read_the_connection_before, sender=ModelLogEntry)
    try:
        outcome = billing.withdraw_and_unlink(connection, reason="test")
    finally:
        post_save.disconnect(a_create_that_read_the_connection_before, sender=ModelLogEntry)

    assert late_comer
    assert outcome.unlinked and outcome.withdrawn == 2
    late_comer[0].refresh_from_db()
    assert late_comer[0].status == Status.DELETED


def test_an_unlink_while_stripe_makes_the_session_sends_nothing(site, connection, stripe):
    # The editor's create has read the account as linked and waits for Stripe; the
    # agency unlinks meanwhile (nothing is Pending yet, so nothing to withdraw). When
    # Stripe answers, the request must not become Pending on the unlinked account.
    from tests.test_billing_requests import sessions_at_stripe

    def unlink_meanwhile(sender, instance, created, **kwargs):
        if created and instance.status == BillingRequest.CREATING:
            assert billing.withdraw_and_unlink(connection, reason="test").unlinked

    post_save.connect(unlink_meanwhile, sender=BillingRequest)
    try:
        with pytest.raises(billing.NotReadyToCharge, match="unlinked while"):
            billing.create_request(
                site=site,
                details=request_details(email="c@example.com"),
            )
    finally:
        post_save.disconnect(unlink_meanwhile, sender=BillingRequest)

    assert not BillingRequest.objects.exists()  # nothing pending, nothing half-made
    (session,) = sessions_at_stripe(connection)
    assert session.status == "expired"  # the session nobody was sent is withdrawn
    assert outbox.outbox == []
    assert not linked(connection)


def test_the_unlink_view_runs_outside_any_request_transaction():
    # Withdrawing calls Stripe once per request: ATOMIC_REQUESTS must not wrap it.
    assert agency_views.unlink._non_atomic_requests == {"default"}


def test_only_that_connections_requests_are_withdrawn(editor, site, connection, stripe):
    ours = send(editor, site, "ours@example.com")
    connections.unlink(connection, reason="test")
    replacement = StripeConnection.objects.create(
        mode="test", account_id="acct_replacement", country="FR", charges_enabled=True
    )

    assert connections.pending_requests(replacement).count() == 0
    assert billing.withdraw_and_unlink(replacement, reason="test").unlinked
    ours.refresh_from_db()
    assert ours.status == Status.PENDING  # another account's request is not touched


# 2. Money taken is applied whatever the account's state now ---------------------------


def assert_paid_late(request: BillingRequest) -> None:
    request.refresh_from_db()
    assert request.status == Status.PAID
    assert request.late_payment
    assert OutgoingEmail.objects.filter(
        kind=OutgoingEmail.Kind.PAID, billing_request=request
    ).exists()


def test_a_payment_after_unlinking_is_applied_flagged_and_notified(
    editor, client, site, connection, stripe, caplog
):
    request = send(editor, site, "a@example.com")
    connections.unlink(connection, reason="deauthorized at Stripe")
    stripe.complete_checkout(request.checkout_session_id)

    with caplog.at_level(logging.WARNING):
        assert deliver(client, last_event(stripe, "checkout.session.completed")).status_code == 200

    assert WebhookEvent.objects.get(type="checkout.session.completed").status == "processed"
    assert_paid_late(request)
    assert any(
        r.levelno == logging.WARNING
        and "unlinked" in r.getMessage()
        and str(request.pk) in r.getMessage()
        for r in caplog.records
    )


def test_a_delayed_payment_settling_after_unlinking_is_applied(
    editor, client, site, connection, stripe
):
    request = send(editor, site, "a@example.com")
    stripe.complete_checkout(request.checkout_session_id, delayed=True)
    deliver(client, last_event(stripe, "checkout.session.completed"))
    connections.unlink(connection, reason="test")
    stripe.settle_async(request.checkout_session_id)

    deliver(client, last_event(stripe, "checkout.session.async_payment_succeeded"))

    assert_paid_late(request)


def test_a_payment_for_a_replaced_account_is_applied(editor, client, site, connection, stripe):
    request = send(editor, site, "a@example.com")
    connections.unlink(connection, reason="test")
    StripeConnection.objects.create(mode="test", account_id="acct_new", country="FR")
    stripe.complete_checkout(request.checkout_session_id)

    deliver(client, last_event(stripe, "checkout.session.completed"))

    assert_paid_late(request)


def test_a_payment_after_stripe_deauthorized_the_account_is_applied(
    editor, client, site, connection, stripe
):
    request = send(editor, site, "a@example.com")
    stripe.complete_checkout(request.checkout_session_id)
    completed = last_event(stripe, "checkout.session.completed")
    deliver(client, stripe.deauthorize(connection.account_id))
    assert not linked(connection)

    deliver(client, completed)  # delivered late, after the deauthorization

    assert_paid_late(request)


def test_a_payment_event_of_another_account_is_never_applied(
    editor, client, site, connection, stripe
):
    request = send(editor, site, "a@example.com")
    connections.unlink(connection, reason="test")
    session = {**session_of(stripe, request), "status": "complete", "payment_status": "paid"}

    for account in ("acct_someone_else", None):
        deliver_signed(client, make_event("checkout.session.completed", session, account=account))

    request.refresh_from_db()
    assert request.status == Status.PENDING
    assert list(WebhookEvent.objects.values_list("status", flat=True)) == ["ignored", "ignored"]


def test_a_payment_event_of_the_other_mode_is_never_applied(
    editor, client, site, connection, stripe, settings
):
    settings.WAGTAIL_CLIENT_BILLING = {
        **settings.WAGTAIL_CLIENT_BILLING,
        "STRIPE_LIVE_WEBHOOK_SECRET": LIVE_SECRET,
    }
    request = send(editor, site, "a@example.com")
    connections.unlink(connection, reason="test")
    session = {**session_of(stripe, request), "status": "complete", "payment_status": "paid"}
    event = make_event(
        "checkout.session.completed", session, account=connection.account_id, livemode=True
    )

    deliver_signed(client, event, secret=LIVE_SECRET)

    request.refresh_from_db()
    assert request.status == Status.PENDING
    assert WebhookEvent.objects.get().status == "ignored"


def test_events_not_about_money_stay_ignored_after_unlinking(
    editor, client, site, connection, stripe
):
    request = send(editor, site, "a@example.com")
    connections.unlink(connection, reason="test")
    stripe.expire_session(request.checkout_session_id)

    deliver(client, last_event(stripe, "checkout.session.expired"))

    event = WebhookEvent.objects.get(type="checkout.session.expired")
    assert (event.status, event.note) == (
        "ignored",
        f"account {connection.account_id} was unlinked",
    )
    request.refresh_from_db()
    assert request.status == Status.PENDING


def test_reconciliation_settles_a_request_of_an_unlinked_account(editor, site, connection, stripe):
    request = send(editor, site, "a@example.com")
    connections.unlink(connection, reason="test")
    stripe.complete_checkout(request.checkout_session_id)  # the webhook is lost
    BillingRequest.objects.filter(pk=request.pk).update(
        created_at=timezone.now() - timedelta(hours=2)
    )

    assert billing.reconcile() == 1

    assert_paid_late(request)


# 3. Links and Resend of requests whose account is gone --------------------------------


def test_the_pay_link_of_a_gone_account_says_it_no_longer_works(
    editor, client, site, connection, stripe
):
    request = send(editor, site, "a@example.com")
    link = request.get_payment_path()
    assert client.get(link, HTTP_HOST="acme.test").status_code == 302  # to Checkout
    connections.unlink(connection, reason="deauthorized at Stripe")

    response = client.get(link, HTTP_HOST="acme.test")

    page = response.content.decode()
    assert response.status_code == 410
    assert "This payment link no longer works" in page
    assert "Acme Plumbing can no longer take payments through it" in page
    assert 'href="mailto:billing@localhost"' in page  # the site's contact (DEFAULT_FROM_EMAIL)
    assert session_of(stripe, request)["url"] not in page


def test_the_gone_page_is_in_the_sites_language(editor, client, site, connection, stripe):
    request = send(editor, site, "a@example.com")
    make_french(site)
    connections.unlink(connection, reason="deauthorized at Stripe")

    response = client.get(request.get_payment_path(), HTTP_HOST="acme.test")

    assert response.status_code == 410
    assert 'lang="fr"' in response.content.decode()  # the strings: once translated


def test_resend_of_a_gone_account_is_refused_and_not_offered(editor, site, connection, stripe):
    request = send(editor, site, "a@example.com")
    kept = outbox.outbox[:]
    connections.unlink(connection, reason="deauthorized at Stripe")

    response = editor.post(
        reverse("wagtail_client_billing_requests:resend", args=[request.pk]), follow=True
    )

    assert messages_of(response) == [
        "This billing request's Stripe account was unlinked, so its payment link no longer "
        "works: the email was not sent again."
    ]
    assert outbox.outbox == kept
    listing = editor.get(reverse("wagtail_client_billing_requests:index")).content.decode()
    assert "Resend email" not in listing
    detail = editor.get(reverse("wagtail_client_billing_requests:inspect", args=[request.pk]))
    assert "Resend email" not in detail.content.decode()
