"""Hearing when money arrives, and clients asking for a new link: each once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from tests.factories import (
    connect_ready_account,
    grant_billing,
    make_site,
    make_user,
    request_details,
)
from tests.test_billing_requests import CommittingClient, deliver, last_event
from wagtail_client_billing import billing
from wagtail_client_billing.mail.outbox import LOST_AFTER, NOTIFICATION_KINDS
from wagtail_client_billing.models import AgencyBillingSettings, BillingRequest, OutgoingEmail

pytestmark = pytest.mark.django_db
Status = BillingRequest.Status


@pytest.fixture
def client(client, django_capture_on_commit_callbacks):
    return CommittingClient(client, django_capture_on_commit_callbacks)


@pytest.fixture
def setup(billing_stripe_settings, django_capture_on_commit_callbacks):
    site = make_site("acme.test", "Acme Plumbing")
    make_user("boss", superuser=True)  # boss@example.com hears about payments by default
    connect_ready_account(billing_stripe_settings)
    with django_capture_on_commit_callbacks(execute=True):
        request = billing.create_request(
            site=site,
            details=request_details(billing_type="monthly"),
        )
    mail.outbox.clear()  # the client's billing email
    return site, request, billing_stripe_settings


def agency_emails():
    clients = {"client@example.com", "other@example.com"}  # their billing emails
    return [m for m in mail.outbox if not clients.intersection(m.to)]


def test_one_payment_email_for_five_duplicate_deliveries(client, setup):
    site, request, stripe = setup
    stripe.complete_checkout(request.checkout_session_id)
    event = last_event(stripe, "checkout.session.completed")
    for _ in range(5):
        assert deliver(client, event).status_code == 200
    sent = agency_emails()
    assert len(sent) == 1
    assert sent[0].to == ["boss@example.com"]
    assert "Paid: client@example.com (Acme Plumbing)" in sent[0].subject
    assert "€49.90" in sent[0].subject
    assert notifications.get().sent_at is not None


def test_configured_recipients_and_switching_off(client, setup):
    site, request, stripe = setup
    client.force_login(make_user("agency", agency=True))
    response = client.post(
        reverse("wagtail_client_billing_agency:notifications"),
        {"notify_payments": "on", "notification_recipients": "money@agency.test\nceo@agency.test"},
    )
    assert response.status_code == 302
    stripe.complete_checkout(request.checkout_session_id)
    deliver(client, last_event(stripe, "checkout.session.completed"))
    assert agency_emails()[0].to == ["money@agency.test", "ceo@agency.test"]

    client.post(reverse("wagtail_client_billing_agency:notifications"), {})
    assert AgencyBillingSettings.load().notify_payments is False


def test_bad_recipient_is_refused(client, setup):
    client.force_login(make_user("agency", agency=True))
    page = client.post(
        reverse("wagtail_client_billing_agency:notifications"),
        {"notify_payments": "on", "notification_recipients": "not an address"},
        follow=True,
    ).content.decode()
    assert "not an address is not a valid email address" in page
    assert AgencyBillingSettings.load().notification_recipients == ""


def test_subscription_payment_failure_is_told_once(client, setup):
    site, request, stripe = setup
    stripe.complete_checkout(request.checkout_session_id)
    deliver(client, last_event(stripe, "checkout.session.completed"))
    mail.outbox.clear()
    base = last_event(stripe, "customer.subscription.created")
    for number in range(3):  # Stripe's dunning: the subscription stays past_due
        event = {
            **base,
            "id": f"evt_past_due_{number}",
            "type": "customer.subscription.updated",
            "data": {"object": {**base["data"]["object"], "status": "past_due"}},
        }
        deliver(client, event)
        deliver(client, event)  # and a duplicate delivery
    sent = agency_emails()
    assert len(sent) == 1
    assert "Subscription payment failed" in sent[0].subject
    request.refresh_from_db()
    assert request.subscription_status == "past_due"


def test_client_asks_for_a_new_link_once(client, setup):
    site, request, stripe = setup
    billing.expire_overdue(now=timezone.now() + timedelta(days=2))
    link = request.get_payment_path()
    page = client.get(link, HTTP_HOST="acme.test").content.decode()
    assert "Ask for a new link" in page

    ask = reverse("wagtail_client_billing:ask_for_new_link", args=[request.token])
    for _ in range(3):  # impatient clicks and reloads
        assert client.post(ask, HTTP_HOST="acme.test").status_code == 302
    sent = agency_emails()
    assert len(sent) == 1
    assert "client@example.com asks for a new payment link" in sent[0].subject
    assert sent[0].to == ["billing@localhost"]  # the site's contact address (default sender)
    page = client.get(link, HTTP_HOST="acme.test").content.decode()
    assert "You asked for a new link" in page
    request.refresh_from_db()
    assert request.client_asked_at is not None

    editor = make_user("acme-editor")
    grant_billing(editor, site)
    client.force_login(editor)
    listing = client.get(reverse("wagtail_client_billing_requests:index")).content.decode()
    assert "client asked for a new link" in listing


def test_pending_requests_cannot_ask(client, setup):
    site, request, stripe = setup
    ask = reverse("wagtail_client_billing:ask_for_new_link", args=[request.token])
    client.post(ask, HTTP_HOST="acme.test")
    assert agency_emails() == []
    request.refresh_from_db()
    assert request.client_asked_at is None


def test_asking_with_a_bad_token_is_a_clear_404(client, setup):
    response = client.post("/billing/pay/nope/new-link/", HTTP_HOST="acme.test")
    assert response.status_code == 404
    assert client.get("/billing/pay/nope/new-link/", HTTP_HOST="acme.test").status_code == 405


Kind = OutgoingEmail.Kind
# The notifications in the outbox (not the clients' billing emails).
notifications = OutgoingEmail.objects.filter(kind__in=NOTIFICATION_KINDS)
AGENCY_PAGE = reverse("wagtail_client_billing_agency:index")


def send_again_url(notification):
    return reverse("wagtail_client_billing_agency:send_notification_again", args=[notification.pk])


def test_a_notification_that_failed_is_shown_and_sent_again_once(client, setup, settings):
    from tests.smtp import closed_port

    site, request, stripe = setup
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", closed_port(), 5
    stripe.complete_checkout(request.checkout_session_id)
    assert deliver(client, last_event(stripe, "checkout.session.completed")).status_code == 200
    request.refresh_from_db()
    assert request.status == Status.PAID  # the payment is never held up by the agency's mail
    notification = notifications.get()
    assert notification.sent_at is None
    assert "refused" in notification.error.lower()

    client.force_login(make_user("agency", agency=True))
    page = client.get(AGENCY_PAGE).content.decode()
    assert "Notifications that did not go out" in page
    assert "Payment received" in page
    assert notification.error in page
    assert send_again_url(notification) in page

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"  # mail fixed
    page = client.post(send_again_url(notification), follow=True).content.decode()
    assert "The notification is on its way again." in page
    assert "Notifications that did not go out" not in page
    assert len(agency_emails()) == 1
    assert "Paid: client@example.com (Acme Plumbing)" in agency_emails()[0].subject

    page = client.post(send_again_url(notification), follow=True).content.decode()
    assert "already sent, or is being sent right now" in page
    assert len(agency_emails()) == 1  # a second press never sends it twice


def test_no_recipients_is_a_clear_reason_in_the_reader_language(client, setup):
    site, request, stripe = setup
    from django.contrib.auth import get_user_model

    get_user_model().objects.filter(username="boss").update(email="")
    stripe.complete_checkout(request.checkout_session_id)
    deliver(client, last_event(stripe, "checkout.session.completed"))
    assert agency_emails() == []

    admin = make_user("agency", agency=True)
    client.force_login(admin)
    page = client.get(AGENCY_PAGE).content.decode()
    assert "No address to send to: add recipients" in page

    from wagtail.users.models import UserProfile

    profile = UserProfile.get_for_user(admin)
    profile.preferred_language = "fr"
    profile.save()
    page = client.get(AGENCY_PAGE).content.decode()
    assert "Aucune adresse" in page
    assert "Renvoyer" in page

    client.post(
        reverse("wagtail_client_billing_agency:notifications"),
        {"notify_payments": "on", "notification_recipients": "money@agency.test"},
    )
    client.post(send_again_url(notifications.get()))
    assert [m.to for m in agency_emails()] == [["money@agency.test"]]


def test_a_lost_or_never_taken_notification_is_shown_only_once_it_is_late(client, setup):
    site, request, stripe = setup
    other = billing.create_request(
        site=site, details=request_details(email="other@example.com", amount=1000)
    )
    now = timezone.now()
    # Claimed (sending) now, and an hour ago: the claim is lost LOST_AFTER after it.
    sending = OutgoingEmail.objects.create(
        key="sending", kind=Kind.PAID, site=site, billing_request=request,
        status=OutgoingEmail.Status.SENDING, due_at=now + LOST_AFTER,
    )  # fmt: skip
    lost = OutgoingEmail.objects.create(
        key="lost", kind=Kind.PAID, site=site, billing_request=request,
        status=OutgoingEmail.Status.SENDING, due_at=now - timedelta(hours=1) + LOST_AFTER,
    )  # fmt: skip
    never_taken = OutgoingEmail.objects.create(
        key="never", kind=Kind.NEW_LINK_ASKED, site=site, billing_request=other,
        status=OutgoingEmail.Status.QUEUED, due_at=now + timedelta(days=1),  # not sent meanwhile
    )  # fmt: skip
    OutgoingEmail.objects.filter(pk=never_taken.pk).update(created_at=now - timedelta(hours=1))

    client.force_login(make_user("agency", agency=True))
    page = client.get(AGENCY_PAGE).content.decode()
    assert "Interrupted while sending: it may or may not have gone out." in page
    assert "Not taken up: is the django-q2 cluster running?" in page
    assert send_again_url(lost) in page and send_again_url(never_taken) in page
    assert send_again_url(sending) not in page  # still in the worker's hands

    client.post(send_again_url(sending))
    assert agency_emails() == []
    client.post(send_again_url(never_taken))
    assert [m.to for m in agency_emails()] == [["billing@localhost"]]
    assert "other@example.com asks for a new payment link" in agency_emails()[0].subject
