"""A real SMTP server on loopback (aiosmtpd) for the email tests and the benchmark.

``SMTPServer`` runs aiosmtpd in a thread: plain, with AUTH, with STARTTLS or implicit
TLS (a self-signed certificate for localhost/127.0.0.1 made here with
``cryptography``), and with scripted replies (451 then accept, 550 at RCPT or DATA).
It records what it received, how many connections delivered mail and how many TCP
connections it accepted at all. ``closed_port()`` is a port where nothing listens (the
server is down).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USERNAME = "billing@acme.test"
PASSWORD = "s3cret-Pa55word-for-smtp"


def free_port() -> int:
    """A port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def closed_port() -> int:
    """A loopback port where nothing listens: connecting is refused."""
    return free_port()


def make_certificate(directory: Path, *, ip: bool = True) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1: (cert.pem, key.pem).

    ``ip=False`` leaves 127.0.0.1 out: only a client that checks the name "localhost"
    accepts it.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost")]
                + ([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))] if ip else [])
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Inbox:
    """The aiosmtpd handler: records messages, answers as scripted."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.connections: set[tuple[str, int]] = set()
        self.auth_attempts = 0
        self.accepted = 0  # TCP connections accepted, whatever happened next
        # Consumed one per DATA before accepting; "DROP" closes the connection instead
        # of answering (the line breaks after the message was sent).
        self.data_replies: list[str] = []
        self.rcpt_reply = ""  # e.g. "550 5.1.1 No such user": refuse every recipient
        self.mail_reply = ""  # e.g. "553 5.7.1 Sender not owned": refuse the sender
        self.stall: dict[str, float] = {}  # e.g. {"DATA": 2}: seconds before answering
        self._lock = threading.Lock()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        with self._lock:
            self.connections.add(session.peer)
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        await asyncio.sleep(self.stall.get("MAIL", 0))
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.stall.get("DATA", 0))
        with self._lock:
            if self.data_replies:
                reply = self.data_replies.pop(0)
                if reply == "DROP":
                    server.transport.close()
                    return "250 OK"  # never reaches the client
                return reply
            self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 2.0.0 Message accepted for delivery"

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()
            self.envelopes.clear()
            self.connections.clear()
            self.accepted = 0


class _CountingController(Controller):
    """aiosmtpd's controller, counting every TCP connection the server accepts."""

    def factory(self):
        protocol = super().factory()
        made = protocol.connection_made

        def connection_made(transport) -> None:
            with self.handler._lock:
                self.handler.accepted += 1
            made(transport)

        protocol.connection_made = connection_made
        return protocol


class SMTPServer:
    """aiosmtpd on 127.0.0.1 in a thread; use as a context manager."""

    def __init__(
        self,
        *,
        auth: bool = False,
        starttls: bool = False,
        implicit_tls: bool = False,
        cert: tuple[Path, Path] | None = None,
        username: str = USERNAME,
        password: str = PASSWORD,
    ) -> None:
        self.inbox = Inbox()
        self.host = "127.0.0.1"
        self.port = free_port()
        self.username, self.password = username, password
        kwargs: dict[str, Any] = {"hostname": self.host, "port": self.port}
        if starttls or implicit_tls:
            if cert is None:
                raise ValueError("TLS needs a certificate (make_certificate)")
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(cert[0]), str(cert[1]))
            if starttls:
                kwargs.update(tls_context=context, require_starttls=True)
            else:
                kwargs["ssl_context"] = context
        if auth:
            kwargs.update(
                authenticator=self._authenticate,
                auth_required=True,
                auth_require_tls=starttls,
            )
        self.controller = _CountingController(self.inbox, **kwargs)

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        self.inbox.auth_attempts += 1
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.username
            and auth_data.password.decode() == self.password
        )
        return AuthResult(success=ok, handled=False)

    def __enter__(self) -> SMTPServer:
        self.controller.start()
        self.inbox.clear()  # the controller's own connection checking that it started
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def messages(self) -> list[EmailMessage]:
        return self.inbox.messages
