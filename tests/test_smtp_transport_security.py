"""How SMTP connections are made: where they may go, what of a server's answer is shown,
how long a conversation may last, and notifications going through the same layer.

Real servers on loopback: aiosmtpd (``tests.smtp``) and, for what aiosmtpd will not
do, tiny TCP servers of this module's own (a NATS-like banner, a slow drip, silence).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tests import test_email_sending, test_notifications
from tests.factories import make_user
from tests.smtp import PASSWORD, SMTPServer, closed_port, make_certificate
from tests.test_billing_requests import deliver, last_event
from tests.test_email_sending import create_queued, use_smtp
from wagtail_client_billing import tasks
from wagtail_client_billing.mail import outbox as mail
from wagtail_client_billing.mail import smtp as mailers
from wagtail_client_billing.mail.queue import unsent
from wagtail_client_billing.models import BillingRequest, OutgoingEmail

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS"),
]

# The fixtures of the email and notification tests, shared.
stripe, commit = test_email_sending.stripe, test_email_sending.commit
client, setup = test_notifications.client, test_notifications.setup
# The agency's "Payment received" email in the outbox.
paid_notifications = OutgoingEmail.objects.filter(kind=OutgoingEmail.Kind.PAID)

EmailStatus = BillingRequest.EmailStatus
PRIVATE = "resolves to a private or local address"
SECRET = "nats-secret-token-7f3a9c"


def configure(settings, **keys) -> None:
    settings.WAGTAIL_CLIENT_BILLING = {**settings.WAGTAIL_CLIENT_BILLING, **keys}


@pytest.fixture
def public_only(settings, stripe):
    """The production default: a site's SMTP host must be a public address."""
    configure(settings, SMTP_ALLOW_PRIVATE_HOSTS=False)


@pytest.fixture
def smtp():
    with SMTPServer() as server:
        yield server


def send_test(email_settings) -> str:
    """The test email's failure reason ("" if it was sent)."""
    try:
        mail.send_test_email(email_settings, "me@acme.test")
    except mail.EmailFailed as error:
        return str(error)
    return ""


def send_batch(site, commit) -> BillingRequest:
    """One queued billing email sent by the worker's batch; the request afterwards."""
    request = create_queued(site)
    with commit():
        tasks.send_pending_emails(site.pk)
    request.refresh_from_db()
    return request


class RawServer:
    """A TCP server on loopback that is not SMTP: ``talk(connection)`` runs per client in
    a thread. Every connection is closed after ``lifetime`` seconds, so a client that would
    wait forever (the code before its fix) ends the test, slowly, instead of hanging it."""

    def __init__(self, talk, *, lifetime: float = 12) -> None:
        self.talk = talk
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.stop = threading.Event()
        self._timer = threading.Timer(lifetime, self.close)

    def __enter__(self) -> RawServer:
        threading.Thread(target=self._serve, daemon=True).start()
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        self.close()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(conn)
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        try:
            self.talk(conn, self.stop)
        except OSError:
            pass

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        for conn in self.accepted:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()


# SSRF: a site's SMTP host may only be a public address ---------------------------------------

REFUSED_HOSTS = [
    "127.0.0.1",
    "localhost",
    "[::1]",
    "::ffff:127.0.0.1",
    "0.0.0.0",  # noqa: S104 (the address a client must not connect to)
    "169.254.169.254",
    "10.1.2.3",
]


@pytest.mark.parametrize("host", REFUSED_HOSTS)
def test_a_private_host_is_refused_for_the_test_email(sites, public_only, smtp, host):
    email_settings = use_smtp(sites[0], smtp, host=host)
    started = time.monotonic()
    reason = send_test(email_settings)
    assert f"The SMTP server {host} {PRIVATE}" in reason
    assert "this install only sends to public mail servers" in reason
    assert time.monotonic() - started < 1  # refused before any connection is tried
    assert smtp.inbox.accepted == 0  # no TCP connection at all
    assert smtp.messages == []


@pytest.mark.parametrize("host", REFUSED_HOSTS)
def test_a_private_host_is_refused_for_the_workers_batch(
    sites, connection, public_only, smtp, commit, host
):
    use_smtp(sites[0], smtp, host=host)
    request = send_batch(sites[0], commit)
    assert request.email_status == EmailStatus.FAILED  # configuration: retrying cannot help
    assert PRIVATE in request.email_error
    assert smtp.inbox.accepted == 0
    assert smtp.messages == []


def test_the_projects_own_backend_is_not_restricted(public_only, settings, smtp):
    """The agency's EMAIL_HOST is the project's choice, not a site editor's."""
    from django.core.mail import EmailMessage

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp.port
    backend = mailers.connection_for(None)  # no site settings: the project's backend
    assert backend.send_messages([EmailMessage("Hello", "Body", to=["me@acme.test"])]) == 1
    backend.close()
    assert len(smtp.messages) == 1


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2a00:1450:4001::1", True),
        ("64:ff9b::808:808", True),  # NAT64 of a public address
        ("100.64.0.1", False),  # shared address space (carrier-grade NAT)
        ("192.168.1.1", False),
        ("172.16.0.1", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("fc00::1", False),
        ("fe80::1", False),
        ("fec0::1", False),
        ("ff02::1", False),
        ("::", False),
        ("::ffff:10.0.0.1", False),
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
    ],
)
def test_which_addresses_are_public(address, public):
    assert mailers.is_public_address(ipaddress.ip_address(address)) is public


def test_tls_checks_the_host_name_and_dns_is_asked_once(sites, stripe, tmp_path, monkeypatch):
    """The vetted address is the one connected to (no second lookup an attacker's DNS
    could answer differently), while TLS still checks the certificate for the name."""
    cert = make_certificate(tmp_path, ip=False)  # valid for "localhost" only
    monkeypatch.setenv("SSL_CERT_FILE", str(cert[0]))
    lookups: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def recording_getaddrinfo(host, *args, **kwargs):
        lookups.append(host)
        return real_getaddrinfo(host, *args, **kwargs)

    with SMTPServer(auth=True, starttls=True, cert=cert) as server:
        email_settings = use_smtp(
            sites[0], server, host="localhost", security="starttls", password=PASSWORD
        )
        monkeypatch.setattr(socket, "getaddrinfo", recording_getaddrinfo)
        assert send_test(email_settings) == ""
    assert len(server.messages) == 1
    assert lookups == ["localhost"]


# A server that is not SMTP: its bytes are never shown ---------------------------------------


def nats(conn: socket.socket, stop: threading.Event) -> None:
    """What a NATS server says to anyone who connects."""
    conn.sendall(
        b'INFO {"server_id":"' + SECRET.encode() + b'","version":"2.10.0",'
        b'"auth_required":true,"max_payload":1048576}\r\n'
    )
    stop.wait()


def greets_then_babbles(conn: socket.socket, stop: threading.Event) -> None:
    """A 220 greeting, then anything but SMTP (as a Redis-like service would answer)."""
    conn.sendall(b"220 cache.internal ready\r\n")
    reader = conn.makefile("rb")
    while reader.readline():
        conn.sendall(b"-ERR unknown command, " + SECRET.encode() + b"\r\n")


@pytest.mark.parametrize("talk", [nats, greets_then_babbles], ids=["banner", "after-greeting"])
def test_a_non_smtp_servers_bytes_are_never_shown(sites, connection, stripe, commit, talk):
    with RawServer(talk) as server:
        email_settings = use_smtp(sites[0], port=server.port)
        reason = send_test(email_settings)
        request = send_batch(sites[0], commit)
    where = f"127.0.0.1:{server.port}"
    assert reason == f"{where} did not answer as an SMTP server."
    assert request.email_error == f"{where} did not answer as an SMTP server."
    assert request.email_status == EmailStatus.FAILED
    for text in (reason, request.email_error):
        assert SECRET not in text
        assert "INFO" not in text and "ERR" not in text


def test_a_busy_greeting_shows_only_its_code_and_is_retried(sites, connection, stripe, commit):
    def busy(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"421 " + SECRET.encode() + b" too busy\r\n")
        stop.wait()

    with RawServer(busy) as server:
        use_smtp(sites[0], port=server.port)
        request = send_batch(sites[0], commit)
    assert request.email_status == EmailStatus.QUEUED
    expected = f"127.0.0.1:{server.port} is not accepting email right now (SMTP 421)."
    assert request.email_error == expected


def test_a_real_smtp_reply_is_still_shown(sites, stripe, smtp):
    smtp.inbox.mail_reply = "553 5.7.1 Sender not owned"
    reason = send_test(use_smtp(sites[0], smtp))
    assert "refused the sender billing@acme.test: 553 5.7.1 Sender not owned" in reason


# One deadline per conversation ---------------------------------------------------------------


def drip_lines(conn: socket.socket, stop: threading.Event) -> None:
    """A greeting that never ends: a continuation line every half second."""
    while not stop.wait(0.5):
        conn.sendall(b"220-still warming up\r\n")


def drip_bytes(conn: socket.socket, stop: threading.Event) -> None:
    """One greeting line, a byte every half second: no read ever times out."""
    for byte in b"220-" + b"." * 10_000:
        if stop.wait(0.5):
            return
        conn.sendall(bytes([byte]))


@pytest.mark.parametrize("talk", [drip_lines, drip_bytes], ids=["lines", "bytes"])
def test_a_slow_drip_cannot_hold_the_test_email(sites, stripe, settings, talk):
    configure(settings, SMTP_TIMEOUT=3, SMTP_DEADLINE=2)
    with RawServer(talk) as server:
        email_settings = use_smtp(sites[0], port=server.port)
        started = time.monotonic()
        reason = send_test(email_settings)
        elapsed = time.monotonic() - started
    assert elapsed < 5
    assert reason == f"127.0.0.1:{server.port} did not finish within 2 seconds."


@pytest.mark.parametrize("talk", [drip_lines, drip_bytes], ids=["lines", "bytes"])
def test_a_slow_drip_cannot_hold_the_worker(sites, connection, stripe, settings, commit, talk):
    configure(settings, SMTP_TIMEOUT=3, SMTP_DEADLINE=2)
    with RawServer(talk) as server:
        use_smtp(sites[0], port=server.port)
        started = time.monotonic()
        request = send_batch(sites[0], commit)
        elapsed = time.monotonic() - started
    assert elapsed < 5
    # A slow server may be quicker later: tried again with the usual back-off.
    assert request.email_status == EmailStatus.QUEUED
    assert request.email_error == f"127.0.0.1:{server.port} did not finish within 2 seconds."


def test_a_batch_is_cut_before_django_q_would_kill_its_task(
    sites, connection, stripe, settings, commit
):
    """A per-step deadline longer than the task may run: the batch's own limit cuts it, so
    no email is left "sending" by a killed task (to be reported lost 15 minutes later)."""
    configure(settings, SMTP_TIMEOUT=30, SMTP_DEADLINE=30)
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 4}
    assert mail.time_limit() == 5
    with RawServer(drip_lines, lifetime=20) as server:
        use_smtp(sites[0], port=server.port)
        started = time.monotonic()
        request = send_batch(sites[0], commit)
        elapsed = time.monotonic() - started
    assert elapsed < 8
    assert request.email_status == EmailStatus.QUEUED
    assert "did not finish within" in request.email_error


@pytest.mark.parametrize(
    ("stall", "status", "reason"),
    [
        ("MAIL", EmailStatus.QUEUED, "did not finish within 1 seconds."),
        ("DATA", EmailStatus.FAILED, "it may not have arrived"),
    ],
)
def test_a_message_cut_by_its_deadline_is_retried_only_if_it_cannot_have_arrived(
    sites, connection, stripe, settings, smtp, commit, stall, status, reason
):
    """Cut before DATA: the server cannot have it, it is tried again. Cut after: it may
    have arrived, so it is reported, never sent twice on a guess."""
    configure(settings, SMTP_TIMEOUT=5, SMTP_DEADLINE=1)
    use_smtp(sites[0], smtp)
    smtp.inbox.stall[stall] = 2
    request = send_batch(sites[0], commit)
    assert request.email_status == status
    assert reason in request.email_error


def test_each_message_of_a_batch_has_its_own_deadline(sites, connection, stripe, smtp, commit):
    """A batch over one connection: opening gets one deadline, each message its own, so a
    long batch to a healthy server is never cut (the batch has its own time budget)."""
    use_smtp(sites[0], smtp)
    first = create_queued(sites[0], email="first@example.com")
    second = create_queued(sites[0], email="second@example.com")
    with commit():
        tasks.send_pending_emails(sites[0].pk)
    for request in (first, second):
        request.refresh_from_db()
        assert request.email_status == EmailStatus.SENT
    assert len(smtp.messages) == 2
    assert len(smtp.inbox.connections) == 1


# Notifications go through the mail layer -----------------------------------------------------


def drain(django_capture_on_commit_callbacks) -> None:
    """What the every-minute schedule does, with its tasks run inline."""
    with django_capture_on_commit_callbacks(execute=True):
        tasks.expire_and_reconcile()


def pay(client, stripe, request) -> None:
    stripe.complete_checkout(request.checkout_session_id)
    assert deliver(client, last_event(stripe, "checkout.session.completed")).status_code == 200


def use_default_smtp(settings, port: int) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, None


def test_a_notification_is_retried_until_the_server_is_back(
    client, setup, settings, django_capture_on_commit_callbacks
):
    site, request, stripe = setup
    server = SMTPServer()  # not started yet: its port refuses connections
    use_default_smtp(settings, server.port)
    pay(client, stripe, request)
    notification = paid_notifications.get()
    assert notification.sent_at is None
    refused = "Could not connect to the default email backend: connection refused."
    assert notification.error == refused
    assert notification.attempts == 1
    assert notification.due_at - timezone.now() > timedelta(seconds=50)
    client.force_login(make_user("agency", agency=True))
    page = client.get(reverse("wagtail_client_billing_agency:index")).content.decode()
    assert f"{refused} Next attempt:" in page

    drain(django_capture_on_commit_callbacks)  # not due yet: nothing happens
    notification.refresh_from_db()
    assert notification.attempts == 1

    paid_notifications.update(due_at=timezone.now() - timedelta(seconds=1))
    drain(django_capture_on_commit_callbacks)  # still down: the next back-off step
    notification.refresh_from_db()
    assert notification.attempts == 2
    assert notification.due_at - timezone.now() > timedelta(minutes=4)

    with server:
        paid_notifications.update(due_at=timezone.now() - timedelta(seconds=1))
        drain(django_capture_on_commit_callbacks)
        drain(django_capture_on_commit_callbacks)  # once sent, never again
    notification.refresh_from_db()
    assert notification.sent_at is not None
    assert notification.error == ""
    assert notification.due_at is None
    assert len(server.messages) == 1
    assert "Paid: client@example.com" in str(server.messages[0]["Subject"])


def test_a_notification_gives_up_after_its_attempts(
    client, setup, settings, django_capture_on_commit_callbacks
):
    site, request, stripe = setup
    use_default_smtp(settings, closed_port())
    pay(client, stripe, request)
    for _attempt in range(mail.MAX_ATTEMPTS + 1):
        paid_notifications.filter(due_at__isnull=False).update(
            due_at=timezone.now() - timedelta(seconds=1)
        )
        drain(django_capture_on_commit_callbacks)
    notification = paid_notifications.get()
    assert notification.attempts == mail.MAX_ATTEMPTS
    assert notification.due_at is None
    assert "connection refused" in notification.error
    assert list(unsent()) == [notification]  # shown, with Send again


def test_a_silent_server_holds_a_notification_no_longer_than_the_timeout(
    client, setup, settings, django_capture_on_commit_callbacks
):
    site, request, stripe = setup
    configure(settings, SMTP_TIMEOUT=1)
    with RawServer(lambda conn, stop: stop.wait()) as server:  # accepts, never says hello
        use_default_smtp(settings, server.port)
        started = time.monotonic()
        pay(client, stripe, request)
        elapsed = time.monotonic() - started
    assert elapsed < 5
    notification = paid_notifications.get()
    assert notification.error == "The default email backend did not answer within 1 seconds."
    assert notification.due_at is not None


def test_a_refused_notification_fails_at_once(
    client, setup, settings, smtp, django_capture_on_commit_callbacks
):
    site, request, stripe = setup
    use_default_smtp(settings, smtp.port)
    smtp.inbox.rcpt_reply = "550 5.1.1 No such user"
    pay(client, stripe, request)
    notification = paid_notifications.get()
    assert notification.error == "The SMTP server refused the recipient: 550 5.1.1 No such user"
    assert notification.due_at is None
    assert notification.attempts == 1
