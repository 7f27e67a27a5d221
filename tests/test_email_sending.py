"""Billing emails through a real SMTP server on loopback and through anymail's test ESP.

Requests are made through the admin (or ``billing.create_request``) against the Stripe
simulator; emails go out through django-q2 in sync mode, as in production but inline.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
from datetime import timedelta

import pytest
import requests
from anymail.backends.test import EmailBackend as AnymailTestBackend
from anymail.exceptions import AnymailRequestsAPIError
from anymail.signals import AnymailTrackingEvent, tracking
from django.core import mail as outbox
from django.urls import reverse
from django.utils import timezone
from wagtail.models import Locale, ModelLogEntry, Page

from tests.factories import grant_billing, make_site, make_user, outbox_emails, request_details
from tests.smtp import PASSWORD, USERNAME, SMTPServer, closed_port, make_certificate
from wagtail_client_billing import billing, connections, tasks
from wagtail_client_billing.mail import outbox as mail
from wagtail_client_billing.mail.queue import queue_billing_email
from wagtail_client_billing.models import BillingRequest, SiteEmailSettings, StripeConnection

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS"),
]

EmailStatus = BillingRequest.EmailStatus
Status = BillingRequest.Status
ADD = reverse("wagtail_client_billing_requests:add")
ANYMAIL_TEST_BACKEND = "anymail.backends.test.EmailBackend"


# Fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def stripe(stripe, settings):
    settings.WAGTAIL_CLIENT_BILLING = {**settings.WAGTAIL_CLIENT_BILLING, "SMTP_TIMEOUT": 2}
    return stripe


@pytest.fixture
def commit(django_capture_on_commit_callbacks):
    """Run what a real commit would (the email task) at the end of the block."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def editor(client, sites, commit):
    user = make_user("acme-editor")
    grant_billing(user, sites[0])
    client.force_login(user)
    return client


@pytest.fixture
def cert(tmp_path, monkeypatch):
    """A self-signed certificate the client trusts (as if a CA had signed it)."""
    cert_path, key_path = make_certificate(tmp_path)
    # OpenSSL reads SSL_CERT_FILE whenever a default context loads its CAs.
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))
    return cert_path, key_path


@pytest.fixture
def smtp():
    with SMTPServer() as server:
        yield server


@pytest.fixture
def smtp_auth():
    with SMTPServer(auth=True) as server:
        yield server


def use_smtp(site, server=None, *, port=None, security="none", password=None, **changes):
    """Give ``site`` Custom SMTP pointing at ``server`` (or at ``port``)."""
    email_settings = SiteEmailSettings.objects.filter(site=site).first() or SiteEmailSettings(
        site=site
    )
    email_settings.custom_smtp = True
    email_settings.host = "127.0.0.1"
    email_settings.port = port or server.port
    email_settings.security = security
    email_settings.username = USERNAME if password is not None else ""
    email_settings.from_email = "billing@acme.test"
    email_settings.reply_to = "agency@agency.test"
    for name, value in changes.items():
        setattr(email_settings, name, value)
    email_settings.set_password(password or "")
    email_settings.save()
    return email_settings


def create(site, commit, **changes):
    """A billing request, committed: its email goes out at once."""
    with commit():
        request = billing.create_request(site=site, details=request_details(**changes))
    request.refresh_from_db()
    return request


def create_queued(site, **changes):
    """A billing request whose email is queued but not sent yet (no commit ran)."""
    request = billing.create_request(site=site, details=request_details(**changes))
    queue_billing_email(request)  # its task would run on commit: it never does here
    request.refresh_from_db()
    assert request.email_status == EmailStatus.QUEUED
    return request


def time_passes(request, kind="request"):
    """Make the request's next attempt due now (as if its back-off had elapsed)."""
    request.emails.filter(kind=kind).update(due_at=timezone.now() - timedelta(seconds=1))


def drain(commit):
    """What the every-minute schedule does, with its email batches run inline."""
    with commit():
        tasks.expire_and_reconcile()


def subject(message) -> str:
    # Python's email folding of a long encoded header can leave a leading space.
    return str(message["Subject"]).strip()


def payment_path(message) -> str:
    text = message.get_body(("plain",)).get_content()
    return re.search(r"https?://[^/\s]+(/billing/pay/[^/\s]+/)", text).group(1)


def inspect_page(client, request) -> str:
    url = reverse("wagtail_client_billing_requests:inspect", args=[request.pk])
    return client.get(url).content.decode()


# Through the site's SMTP server -------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "tls"),
    [(False, ""), (True, ""), (True, "starttls"), (True, "ssl")],
    ids=["plain", "auth", "starttls-auth", "implicit-tls-auth"],
)
def test_the_email_arrives_complete_through_the_sites_smtp(
    editor, client, sites, connection, stripe, cert, commit, auth, tls
):
    acme = sites[0]
    server = SMTPServer(auth=auth, starttls=tls == "starttls", implicit_tls=tls == "ssl", cert=cert)
    with server:
        use_smtp(acme, server, security=tls or "none", password=PASSWORD if auth else None)
        with commit():
            response = editor.post(
                f"{ADD}?site={acme.pk}",
                {
                    "email": "client@example.com",
                    "currency": "eur",
                    "amount": "49.90",
                    "description": "Website maintenance",
                    "success_url": "https://acme.test/thanks/",
                    "cancel_url": "https://acme.test/cancel/",
                    "billing_type": "monthly",
                    "nonce": f"nonce-{tls}-{auth}",
                },
            )
    assert response.status_code == 302
    request = BillingRequest.objects.get()
    assert request.email_status == EmailStatus.SENT
    assert request.email_sent_at is not None
    assert len(server.messages) == 1
    message = server.messages[0]
    assert message["From"] == "Acme Plumbing <billing@acme.test>"
    assert message["Reply-To"] == "agency@agency.test"
    assert message["To"] == "client@example.com"
    assert subject(message) == "Payment request from Acme Plumbing (€49.90)"
    assert server.inbox.envelopes == [("billing@acme.test", ["client@example.com"])]
    if auth:
        assert server.inbox.auth_attempts == 1
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    for part in (text, html):
        assert "Acme Plumbing" in part
        assert "€49.90" in part
        assert "Website maintenance" in part
        assert "Monthly" in part
        assert "The link expires on" in part
        assert request.get_payment_url() in part
        assert "https://agency.example/privacy" in part
        assert "https://agency.example/terms" in part
    assert f'href="{request.get_payment_url()}"' in html

    # The link opens the request's checkout.
    opened = client.get(payment_path(message), HTTP_HOST="acme.test")
    assert opened.status_code == 302
    assert opened["Location"] == request.checkout_url
    session = stripe.get_object(request.checkout_session_id, "checkout.session")
    assert opened["Location"] == session["url"]


def test_the_email_speaks_the_sites_language(sites, connection, stripe, smtp, commit):
    acme = sites[0]
    french, _ = Locale.objects.get_or_create(language_code="fr")
    Page.objects.filter(pk=acme.root_page_id).update(locale=french)
    use_smtp(acme, smtp)
    request = create(acme, commit)
    message = smtp.messages[0]
    assert subject(message) == "Demande de paiement de Acme Plumbing (49,90\xa0€)"
    text = message.get_body(("plain",)).get_content()
    assert "Unique" in text and "49,90\xa0€" in text
    assert "Le lien expire le" in text
    assert request.get_payment_url() in text


def test_headers_cannot_be_injected_and_are_not_html_escaped(
    sites, connection, stripe, smtp, commit
):
    acme = sites[0]
    acme.site_name = "Smith & Sons\r\nBcc: thief@evil.test"
    acme.save()
    use_smtp(acme, smtp)
    create(acme, commit)
    message = smtp.messages[0]
    assert subject(message) == "Payment request from Smith & Sons Bcc: thief@evil.test (€49.90)"
    assert message["Bcc"] is None
    assert "\n" not in message["From"]
    assert smtp.inbox.envelopes[0][1] == ["client@example.com"]


def test_the_default_backend_gets_from_and_reply_to_too(
    sites, connection, stripe, commit, settings
):
    # A From on one of SENDER_DOMAINS: others become the Reply-To only (issue 10, see
    # test_email_settings_security.py).
    settings.WAGTAIL_CLIENT_BILLING = {
        **settings.WAGTAIL_CLIENT_BILLING,
        "SENDER_DOMAINS": "acme.test",
    }
    acme = sites[0]
    SiteEmailSettings.objects.create(
        site=acme, from_email="billing@acme.test", reply_to="agency@agency.test"
    )
    create(acme, commit)
    message = outbox.outbox[0]
    assert message.from_email == "Acme Plumbing <billing@acme.test>"
    assert message.reply_to == ["agency@agency.test"]


def test_without_settings_the_default_sender_is_used(sites, connection, stripe, commit, settings):
    create(sites[0], commit)
    assert outbox.outbox[0].from_email == settings.DEFAULT_FROM_EMAIL
    assert outbox.outbox[0].reply_to == []


# Through an anymail ESP, with tracking ------------------------------------------------------


def track(event_type, request, *, kind="request", message_id=None, **extra):
    event = AnymailTrackingEvent(
        event_type=event_type,
        message_id=request.email_message_id if message_id is None else message_id,
        metadata={"billing_request": str(request.pk), "billing_email": kind},
        recipient=request.email,
        **extra,
    )
    tracking.send(sender=object, event=event, esp_name="TestESP")


def test_an_anymail_esp_sends_it_and_tracking_updates_the_state(
    editor, sites, connection, stripe, commit, settings
):
    settings.EMAIL_BACKEND = ANYMAIL_TEST_BACKEND
    request = create(sites[0], commit)
    (message,) = outbox.outbox
    params = message.anymail_test_params
    assert params["metadata"] == {"billing_request": str(request.pk), "billing_email": "request"}
    assert "billing-request" in params["tags"]
    assert params["to"][0].addr_spec == "client@example.com"
    assert request.email_status == EmailStatus.SENT
    assert request.email_message_id != ""

    track("delivered", request)
    request.refresh_from_db()
    assert request.email_status == EmailStatus.DELIVERED
    track("opened", request)
    track("delivered", request)  # late and out of order: never goes back
    request.refresh_from_db()
    assert request.email_status == EmailStatus.OPENED
    page = inspect_page(editor, request)
    assert 'data-email-status="opened"' in page and "Opened" in page
    listing = editor.get(reverse("wagtail_client_billing_requests:index")).content.decode()
    assert "Opened" in listing

    track("complained", request)
    request.refresh_from_db()
    assert request.email_status == EmailStatus.COMPLAINED
    assert request.status == Status.PENDING  # email events never touch the request


def test_a_bounce_shows_the_reason(editor, sites, connection, stripe, commit, settings):
    settings.EMAIL_BACKEND = ANYMAIL_TEST_BACKEND
    request = create(sites[0], commit)
    track("bounced", request, mta_response="550 5.1.1 <client@example.com>: user unknown")
    request.refresh_from_db()
    assert request.email_status == EmailStatus.BOUNCED
    assert "550 5.1.1 <client@example.com>: user unknown" in request.email_error
    assert "user unknown" in inspect_page(editor, request)
    assert ModelLogEntry.objects.filter(action="wagtail_client_billing.email.tracked").exists()


def test_tracking_ignores_other_messages_and_earlier_sends(
    editor, sites, connection, stripe, commit, settings
):
    settings.EMAIL_BACKEND = ANYMAIL_TEST_BACKEND
    request = create(sites[0], commit)
    # Someone else's email through the same ESP.
    tracking.send(
        sender=object,
        event=AnymailTrackingEvent(event_type="bounced", message_id="x", metadata={}),
        esp_name="TestESP",
    )
    # An event about a send before a Resend.
    track("bounced", request, message_id="an-earlier-message")
    # Not a state we track.
    track("deferred", request)
    request.refresh_from_db()
    assert request.email_status == EmailStatus.SENT


class RefusingESP(AnymailTestBackend):
    """anymail's test ESP answering every send with an HTTP error (``STATUS``)."""

    STATUS = 422

    def post_to_esp(self, payload, message):
        response = requests.Response()
        response.status_code = self.STATUS
        response.reason = "Unprocessable Entity" if self.STATUS < 500 else "Service Unavailable"
        response._content = b'{"message": "Sender domain not verified"}'
        raise AnymailRequestsAPIError(
            "ESP refused the message", email_message=message, response=response, backend=self
        )


class UnavailableESP(RefusingESP):
    STATUS = 503


@pytest.mark.parametrize(
    ("backend", "status"),
    [("RefusingESP", EmailStatus.FAILED), ("UnavailableESP", EmailStatus.QUEUED)],
)
def test_an_esp_refusing_fails_and_an_unavailable_one_is_retried(
    sites, connection, stripe, commit, settings, backend, status
):
    settings.EMAIL_BACKEND = f"{__name__}.{backend}"
    request = create(sites[0], commit)
    assert request.email_status == status
    assert "Sender domain not verified" in request.email_error


# One connection per site and batch ----------------------------------------------------------


def test_a_sites_due_emails_share_one_connection(sites, connection, stripe, commit):
    acme, bakery = sites
    with SMTPServer() as acme_server, SMTPServer() as bakery_server:
        use_smtp(acme, acme_server)
        use_smtp(bakery, bakery_server, from_email="hello@bakery.test")
        for number in range(5):
            create_queued(acme, email=f"client{number}@example.com")
        for number in range(3):
            create_queued(bakery, email=f"baker{number}@example.com")
        drain(commit)
    assert len(acme_server.messages) == 5
    assert len(bakery_server.messages) == 3
    assert len(acme_server.inbox.connections) == 1
    assert len(bakery_server.inbox.connections) == 1
    assert {r.email_status for r in BillingRequest.objects.prefetch_related("emails")} == {"sent"}
    # Each site's own sender.
    assert {m["From"] for m in bakery_server.messages} == {"Rue Haute Bakery <hello@bakery.test>"}


def test_a_batch_stops_at_its_limit_and_the_rest_follows(sites, connection, stripe, smtp, commit):
    acme = sites[0]
    use_smtp(acme, smtp)
    for number in range(3):
        create_queued(acme, email=f"client{number}@example.com")
    result = mail.send_pending_emails(acme.pk, limit=2)
    assert len(result.sent) == 2 and result.more
    with commit():
        tasks.send_pending_emails(acme.pk)
    assert len(smtp.messages) == 3


def test_a_task_delivered_twice_sends_once(sites, connection, stripe, smtp, commit):
    use_smtp(sites[0], smtp)
    request = create_queued(sites[0])
    assert tasks.send_billing_email(request.pk) is True
    assert tasks.send_billing_email(request.pk) is False  # the broker's second delivery
    drain(commit)
    assert len(smtp.messages) == 1


@pytest.mark.postgres
def test_concurrent_workers_send_once(wagtail_root, transactional_db, smtp):
    """Real threads, each with its own database connection, racing for the same emails."""
    from django.db import connection as db

    acme = make_site("acme.test", "Acme Plumbing")
    use_smtp(acme, smtp)
    # On a linked account: the emails of a request whose account is gone are not sent.
    StripeConnection.objects.create(mode="test", account_id="acct_race", charges_enabled=True)
    # Rows made directly: here a commit is real, and a created request's email would
    # go out at once through the sync-mode task.
    BillingRequest.objects.bulk_create(
        BillingRequest(
            site=acme,
            account_id="acct_race",
            email=f"client{number}@example.com",
            currency="eur",
            amount=4990,
            description="Website maintenance",
            success_url="https://acme.test/thanks/",
            cancel_url="https://acme.test/cancel/",
            checkout_session_id=f"cs_test_race_{number}",
            checkout_url=f"https://checkout.stripe.test/c/pay/cs_test_race_{number}",
            expires_at=timezone.now() + timedelta(hours=23),
        )
        for number in range(20)
    )
    outbox_emails(BillingRequest.objects.all())
    results, barrier = [], threading.Barrier(4)

    def worker():
        barrier.wait()
        try:
            results.append(len(mail.send_pending_emails(acme.pk).sent))
        finally:
            db.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(results) == 20
    recipients = sorted(str(message["To"]) for message in smtp.messages)
    assert recipients == sorted(f"client{number}@example.com" for number in range(20))
    assert {r.email_status for r in BillingRequest.objects.prefetch_related("emails")} == {"sent"}


# Faults -------------------------------------------------------------------------------------


def test_server_down_is_retried_with_back_off_then_fails(editor, sites, connection, stripe, commit):
    acme = sites[0]
    use_smtp(acme, port=closed_port())
    request = create(acme, commit)
    assert request.email_status == EmailStatus.QUEUED
    assert request.email_attempts == 1
    assert "connection refused" in request.email_error
    assert request.email_due_at - timezone.now() > timedelta(seconds=50)
    assert request.status == Status.PENDING
    assert "next attempt" in inspect_page(editor, request)

    drain(commit)  # not due yet: nothing happens
    request.refresh_from_db()
    assert request.email_attempts == 1

    delays = []
    for _attempt in range(mail.MAX_ATTEMPTS - 1):
        before = timezone.now()
        time_passes(request)
        drain(commit)
        request.refresh_from_db()
        if request.email_due_at:
            delays.append(request.email_due_at - before)
    assert request.email_status == EmailStatus.FAILED
    assert request.email_attempts == mail.MAX_ATTEMPTS
    assert request.email_due_at is None
    assert [round(d.total_seconds() / 60) for d in delays] == [5, 15, 60]
    assert request.status == Status.PENDING
    page = inspect_page(editor, request)
    assert "Failed" in page and "connection refused" in page


def test_authentication_refused_fails_at_once_with_the_reason(
    editor, sites, connection, stripe, smtp_auth, commit
):
    acme = sites[0]
    use_smtp(acme, smtp_auth, password="not-the-password")
    request = create(acme, commit)
    assert request.email_status == EmailStatus.FAILED
    assert request.email_attempts == 1
    assert "refused the username or password: 535" in request.email_error
    assert "not-the-password" not in request.email_error
    assert request.status == Status.PENDING
    assert "refused the username or password" in inspect_page(editor, request)

    # Fixed, then Resend: exactly one email.
    use_smtp(acme, smtp_auth, password=PASSWORD)
    with commit():
        editor.post(reverse("wagtail_client_billing_requests:resend", args=[request.pk]))
    request.refresh_from_db()
    assert request.email_status == EmailStatus.SENT
    assert len(smtp_auth.messages) == 1


def test_the_password_never_reaches_a_log_or_an_error(
    editor, sites, connection, stripe, smtp_auth, commit, caplog
):
    caplog.set_level(logging.DEBUG)  # every logger, ours and the libraries'
    acme = sites[0]
    use_smtp(acme, smtp_auth, password=PASSWORD)
    create(acme, commit)
    use_smtp(acme, smtp_auth, password=PASSWORD + "-typo")
    failed = create(acme, commit, email="second@example.com")
    assert failed.email_status == EmailStatus.FAILED
    assert len(smtp_auth.messages) == 1
    assert caplog.text and PASSWORD not in caplog.text
    assert PASSWORD not in inspect_page(editor, failed)
    assert PASSWORD not in repr(list(BillingRequest.objects.values()))
    assert PASSWORD not in repr(list(ModelLogEntry.objects.values()))


def test_451_then_accept_is_retried_and_delivered_once(sites, connection, stripe, smtp, commit):
    acme = sites[0]
    use_smtp(acme, smtp)
    smtp.inbox.data_replies = ["451 4.3.0 Temporary local problem, try again later"]
    request = create(acme, commit)
    assert request.email_status == EmailStatus.QUEUED
    assert "451 4.3.0 Temporary local problem" in request.email_error
    assert smtp.messages == []

    time_passes(request)
    drain(commit)
    drain(commit)
    request.refresh_from_db()
    assert request.email_status == EmailStatus.SENT
    assert request.email_error == ""
    assert request.email_attempts == 2
    assert len(smtp.messages) == 1


def test_550_fails_at_once_and_resend_after_the_fix_sends_one_more(
    editor, sites, connection, stripe, smtp, commit
):
    acme = sites[0]
    use_smtp(acme, smtp)
    smtp.inbox.rcpt_reply = "550 5.1.1 <client@example.com>: Recipient address rejected"
    request = create(acme, commit)
    assert request.email_status == EmailStatus.FAILED
    assert request.email_attempts == 1
    assert "550 5.1.1 <client@example.com>: Recipient address rejected" in request.email_error
    assert request.status == Status.PENDING
    page = inspect_page(editor, request)
    assert "Recipient address rejected" in page
    listing = editor.get(reverse("wagtail_client_billing_requests:index")).content.decode()
    assert "Failed" in listing
    assert ModelLogEntry.objects.filter(action=mail.ACTION_EMAIL_FAILED).count() == 1

    drain(commit)  # a failed email is never retried on its own
    assert smtp.messages == []

    smtp.inbox.rcpt_reply = ""
    with commit():
        editor.post(reverse("wagtail_client_billing_requests:resend", args=[request.pk]))
    drain(commit)
    assert len(smtp.messages) == 1
    request.refresh_from_db()
    assert request.email_status == EmailStatus.SENT


def test_a_refused_sender_fails_at_once(sites, connection, stripe, smtp, commit):
    use_smtp(sites[0], smtp)
    smtp.inbox.mail_reply = "553 5.7.1 Sender address not owned by user"
    request = create(sites[0], commit)
    assert request.email_status == EmailStatus.FAILED
    assert "refused the sender billing@acme.test: 553 5.7.1" in request.email_error


def test_a_silent_server_times_out_and_is_retried(sites, connection, stripe, commit, settings):
    settings.WAGTAIL_CLIENT_BILLING = {**settings.WAGTAIL_CLIENT_BILLING, "SMTP_TIMEOUT": 1}
    with socket.socket() as silent:  # accepts connections, never says hello
        silent.bind(("127.0.0.1", 0))
        silent.listen(5)
        use_smtp(sites[0], port=silent.getsockname()[1])
        request = create(sites[0], commit)
    assert request.email_status == EmailStatus.QUEUED
    assert "did not answer within 1 seconds" in request.email_error


def test_an_untrusted_certificate_fails_at_once(sites, connection, stripe, commit, tmp_path):
    untrusted = make_certificate(tmp_path)  # SSL_CERT_FILE not set: nobody vouches for it
    with SMTPServer(starttls=True, cert=untrusted) as server:
        use_smtp(sites[0], server, security="starttls")
        request = create(sites[0], commit)
    assert request.email_status == EmailStatus.FAILED
    assert "TLS connection to 127.0.0.1" in request.email_error
    assert "CERTIFICATE_VERIFY_FAILED" in request.email_error


def test_a_connection_lost_mid_message_is_not_sent_again(sites, connection, stripe, smtp, commit):
    acme = sites[0]
    use_smtp(acme, smtp)
    first = create_queued(acme, email="first@example.com")
    second = create_queued(acme, email="second@example.com")
    smtp.inbox.data_replies = ["DROP"]
    with commit():
        tasks.send_pending_emails(acme.pk)
    first.refresh_from_db()
    second.refresh_from_db()
    # The server may have taken it: report, never guess with a second email.
    assert first.email_status == EmailStatus.FAILED
    assert "may not have arrived" in first.email_error
    # The next message reconnects.
    assert second.email_status == EmailStatus.SENT
    assert [m["To"] for m in smtp.messages] == ["second@example.com"]


def test_an_email_lost_with_its_worker_is_reported_not_resent(
    sites, connection, stripe, smtp, commit
):
    use_smtp(sites[0], smtp)
    request = create_queued(sites[0])
    request.emails.update(status=EmailStatus.SENDING, due_at=timezone.now() - timedelta(minutes=1))
    drain(commit)
    request.refresh_from_db()
    assert request.email_status == EmailStatus.FAILED
    assert "interrupted" in request.email_error
    assert smtp.messages == []


def test_an_email_for_an_ended_request_is_not_sent(sites, connection, stripe, smtp, commit):
    use_smtp(sites[0], smtp)
    request = create_queued(sites[0])
    BillingRequest.objects.filter(pk=request.pk).update(status=Status.PAID)
    drain(commit)
    request.refresh_from_db()
    assert request.email_status == EmailStatus.NOT_SENT
    assert "the request had ended" in request.email_error
    assert request.status == Status.PAID
    assert smtp.messages == []


def test_an_undecryptable_password_fails_clearly(sites, connection, stripe, smtp_auth, commit):
    email_settings = use_smtp(sites[0], smtp_auth, password=PASSWORD)
    SiteEmailSettings.objects.filter(pk=email_settings.pk).update(
        password_encrypted="gAAAAABnot-a-token-any-key-can-read"
    )
    request = create(sites[0], commit)
    assert request.email_status == EmailStatus.FAILED
    assert "cannot be decrypted with the configured keys" in request.email_error
    assert smtp_auth.messages == []


# The reminder -------------------------------------------------------------------------------


@pytest.fixture
def reminders(settings):
    settings.WAGTAIL_CLIENT_BILLING = {
        **settings.WAGTAIL_CLIENT_BILLING,
        "REMINDER_HOURS_BEFORE_EXPIRY": 4,
    }


def near_expiry(request, hours=3):
    BillingRequest.objects.filter(pk=request.pk).update(
        expires_at=timezone.now() + timedelta(hours=hours)
    )


def test_one_reminder_before_expiry(editor, sites, connection, stripe, smtp, commit, reminders):
    use_smtp(sites[0], smtp)
    request = create(sites[0], commit)
    drain(commit)  # not in the window yet
    assert len(smtp.messages) == 1

    near_expiry(request)
    drain(commit)
    drain(commit)
    assert len(smtp.messages) == 2
    reminder = smtp.messages[1]
    assert subject(reminder) == "Reminder: payment request from Acme Plumbing (€49.90)"
    assert "This is a reminder" in reminder.get_body(("plain",)).get_content()
    assert request.get_payment_url() in reminder.get_body(("html",)).get_content()
    request.refresh_from_db()
    assert request.reminder_status == EmailStatus.SENT
    assert request.reminder_sent_at is not None
    assert request.email_status == EmailStatus.SENT
    assert 'data-reminder-status="sent"' in inspect_page(editor, request)


def test_reminders_are_off_by_default(sites, connection, stripe, smtp, commit):
    use_smtp(sites[0], smtp)
    request = create(sites[0], commit)
    near_expiry(request)
    drain(commit)
    assert len(smtp.messages) == 1
    request.refresh_from_db()
    assert request.reminder_status == EmailStatus.NOT_SENT


def test_no_reminder_when_the_first_email_failed_or_the_request_ended(
    sites, connection, stripe, smtp, commit, reminders
):
    use_smtp(sites[0], smtp)
    smtp.inbox.rcpt_reply = "550 5.1.1 No such user"
    failed = create(sites[0], commit, email="nobody@example.com")
    smtp.inbox.rcpt_reply = ""
    paid = create(sites[0], commit, email="paid@example.com")
    BillingRequest.objects.filter(pk=paid.pk).update(status=Status.PAID)
    near_expiry(failed)
    near_expiry(paid)
    drain(commit)
    assert [m["To"] for m in smtp.messages] == ["paid@example.com"]
    assert {r.reminder_status for r in BillingRequest.objects.prefetch_related("emails")} == {""}


def test_no_email_invites_to_pay_once_the_requests_account_is_gone(
    sites, connection, stripe, smtp, commit, reminders
):
    # Deauthorized at Stripe (nothing could be withdrawn): the request stays Pending
    # until it expires, but its link says it no longer works, so no email invites the
    # client to use it: neither the reminder nor a first email still queued.
    use_smtp(sites[0], smtp)
    reminded = create(sites[0], commit, email="reminded@example.com")
    queued = create(sites[0], commit, email="queued@example.com")
    connections.unlink(connection, reason="deauthorized at Stripe")
    near_expiry(reminded)
    queued.emails.filter(kind="request").update(status=EmailStatus.QUEUED)
    drain(commit)
    drain(commit)
    assert len(smtp.messages) == 2  # only the two first emails, sent before the unlink
    for request in (reminded, queued):
        request.refresh_from_db()
    assert reminded.reminder_status == EmailStatus.NOT_SENT
    assert "account was unlinked" in reminded.reminder_error
    assert queued.email_status == EmailStatus.NOT_SENT
    assert "account was unlinked" in queued.email_error


def test_the_reminder_is_tracked_like_the_first_email(
    sites, connection, stripe, commit, settings, reminders
):
    settings.EMAIL_BACKEND = ANYMAIL_TEST_BACKEND
    request = create(sites[0], commit)
    near_expiry(request)
    drain(commit)
    request.refresh_from_db()
    reminder = outbox.outbox[1]
    assert reminder.anymail_test_params["metadata"]["billing_email"] == "reminder"
    track("delivered", request, kind="reminder", message_id=request.reminder_message_id)
    request.refresh_from_db()
    assert request.reminder_status == EmailStatus.DELIVERED
    assert request.email_status == EmailStatus.SENT


def test_a_reminder_retries_like_the_first_email(
    sites, connection, stripe, smtp, commit, reminders
):
    use_smtp(sites[0], smtp)
    request = create(sites[0], commit)
    near_expiry(request)
    smtp.inbox.data_replies = ["421 4.7.0 Too busy, try later"]
    drain(commit)
    request.refresh_from_db()
    assert request.reminder_status == EmailStatus.QUEUED
    assert "421 4.7.0" in request.reminder_error
    time_passes(request, "reminder")
    drain(commit)
    request.refresh_from_db()
    assert request.reminder_status == EmailStatus.SENT
    assert len(smtp.messages) == 2


def test_a_connection_closed_without_a_word_says_so():
    """The reason never ends on an empty "closed: " when the server said nothing."""
    import smtplib

    from wagtail_client_billing.mail.failures import describe

    failure = describe(smtplib.SMTPServerDisconnected())
    assert failure.reason.endswith("was closed: no reason given")
    assert failure.transient
    said = describe(smtplib.SMTPServerDisconnected("Connection unexpectedly closed"))
    assert said.reason.endswith("was closed: Connection unexpectedly closed")
