"""The one place that builds email connections, and says what a sending failure means.

A site with Custom SMTP gets ``SMTPConnection`` (Django's SMTP backend, guarded) pointed
at its server; every other site, and every notification, gets the project's
``EMAIL_BACKEND`` (Django's SMTP, guarded the same way, or any django-anymail ESP).
Django 6.1 replaces ``get_connection()`` with ``MAILERS``: this module is what changes
then.

A guarded SMTP connection:

- resolves the host once and, for a site's own server, refuses it if any address it
  resolves to is not public (loopback, private, link-local, shared, reserved,
  multicast, unspecified, IPv4-mapped or NAT64/6to4 forms of those) unless
  ``SMTP_ALLOW_PRIVATE_HOSTS`` is on: a site editor chooses that host, and must not
  be able to make the server probe its own network. It then connects to the vetted
  address itself (a second lookup could be answered differently: DNS rebinding),
  while TLS still checks the certificate against the host name;
- has one deadline (``SMTP_DEADLINE``) besides the per-read ``SMTP_TIMEOUT``: a server
  that trickles a line (or a byte) at a time never trips a read timeout, so a watchdog
  shuts the socket down when the deadline passes. Opening a connection gets one
  deadline and each message sent over it its own; ``send_message`` (a test email, a
  notification) puts the whole conversation under one, and a batch is cut at its own
  limit (``conversation(seconds)``) before django-q2 would kill its task.

``describe()`` turns an exception into a ``Failure``: a reason in plain words (the
server's own reply included when it is a real SMTP reply, never another service's bytes,
never the password) and whether trying again later can help (connection refused,
timeouts, SMTP 4xx) or not (SMTP 5xx, authentication, TLS, a refused address).
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend
from django.utils.module_loading import import_string
from django.utils.text import capfirst
from django.utils.translation import gettext as _

from . import crypto
from .conf import billing_settings
from .models import SiteEmailSettings

logger = logging.getLogger(__name__)
Security = SiteEmailSettings.Security


@dataclass(frozen=True)
class Failure:
    """Why a send failed, in plain words, and whether a later attempt may succeed."""

    reason: str
    transient: bool


class AddressNotAllowed(OSError):
    """A site's SMTP host resolves to an address this install does not connect to."""

    def __init__(self, host: str) -> None:
        super().__init__(f"{host} resolves to a non-public address")
        self.host = host


class DeadlineExceeded(TimeoutError):
    """The SMTP conversation ran past ``SMTP_DEADLINE``; the connection was cut.

    ``maybe_delivered``: the message had started to go out (DATA) when it was cut.
    """

    def __init__(self, seconds: float, *, maybe_delivered: bool = False) -> None:
        super().__init__(f"the SMTP conversation ran past {seconds:g} seconds")
        self.seconds = seconds
        self.maybe_delivered = maybe_delivered


def timeout() -> float:
    """Seconds before an SMTP connection or reply gives up."""
    return billing_settings().smtp_timeout


def deadline() -> float:
    """Seconds one SMTP conversation may last, however steadily the server answers."""
    return billing_settings().smtp_deadline


# Where a site's SMTP server may be ---------------------------------------------------------

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``address`` is a public unicast address (a site's SMTP server may be there).

    IPv6 forms that carry an IPv4 address (IPv4-mapped, 6to4, NAT64) are judged by the
    IPv4 address they reach. Python's own flags disagree between versions and miss some
    ranges (multicast counts as global), so every flag is checked.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public_address(embedded)
        if address.is_site_local:
            return False
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def _resolve(host: str, port: int, seconds: float) -> list[tuple[Any, ...]]:
    """getaddrinfo within ``seconds``: the resolver has no timeout of its own, so it runs
    in a thread that is left behind if it answers too late."""
    answer: dict[str, Any] = {}

    def lookup() -> None:
        try:
            answer["addresses"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except Exception as error:  # handed to the caller's thread
            answer["error"] = error

    thread = threading.Thread(target=lookup, name="wcb-smtp-resolve", daemon=True)
    thread.start()
    thread.join(max(0.0, seconds))
    if thread.is_alive():
        raise DeadlineExceeded(deadline())
    if "error" in answer:
        raise answer["error"]
    return answer["addresses"]


# The deadline ------------------------------------------------------------------------------

# Set by ``conversation()``: when everything sent inside must be done (monotonic clock).
_conversation_end: ContextVar[float | None] = ContextVar("wcb_smtp_end", default=None)


@contextlib.contextmanager
def conversation(seconds: float | None = None) -> Iterator[None]:
    """A deadline over every SMTP step inside (open, send, close) together, by default
    ``SMTP_DEADLINE``; each step still ends by its own deadline if that comes first."""
    token = _conversation_end.set(time.monotonic() + (deadline() if seconds is None else seconds))
    try:
        yield
    finally:
        _conversation_end.reset(token)


class _Watchdog:
    """Resolves, vets and connects; cuts the connection when a step runs past its deadline.

    The cut is a ``shutdown()`` from a timer thread on a duplicate of the socket (a
    duplicate stays valid even if smtplib closes its own, so the timer can never hit a
    descriptor number reused by something else): a read blocked in smtplib returns at
    once, whatever the server is trickling.
    """

    def __init__(self, *, public_only: bool) -> None:
        self.public_only = public_only
        self.seconds = deadline()
        self.expired = False
        self.data_started = False
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._step = 0  # which watched step a timer belongs to
        self._watching = False
        self._end = 0.0

    def remaining(self) -> float:
        """Seconds left in the current step."""
        if not self._watching:
            return self.seconds
        return self._end - time.monotonic()

    @contextlib.contextmanager
    def watch(self) -> Iterator[None]:
        """Run one step (open, send, close) under the deadline; steps inside it share it."""
        if self._watching:
            yield
            return
        limit = _conversation_end.get()
        self._end = time.monotonic() + self.seconds
        if limit is not None:
            self._end = min(self._end, limit)
        with self._lock:
            self._step += 1
            self._watching = True
            self.expired = self.data_started = False
        timer = threading.Timer(max(0.0, self.remaining()), self._expire, args=(self._step,))
        timer.daemon = True
        timer.start()
        try:
            yield
        except Exception as error:
            if self.expired and not isinstance(error, DeadlineExceeded):
                raise DeadlineExceeded(self.seconds, maybe_delivered=self.data_started) from error
            raise
        finally:
            timer.cancel()
            with self._lock:
                self._watching = False
        if self.expired:
            # Cut, yet no error: smtplib took the line the cut truncated ("220" of a
            # "220-..." that never ended) for a whole reply. The step did not finish.
            raise DeadlineExceeded(self.seconds, maybe_delivered=self.data_started)

    def _expire(self, step: int) -> None:
        with self._lock:
            if step != self._step or not self._watching:
                return  # that step finished in time
            self.expired = True
            self._cut()

    def _cut(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)

    def connect(self, host: str, port: int, read_timeout: Any, source: Any) -> socket.socket:
        """A socket connected to a vetted address of ``host`` (resolved once)."""
        addresses = _resolve(host, port, self.remaining())
        if self.public_only and not all(
            is_public_address(ipaddress.ip_address(sockaddr[0])) for *_, sockaddr in addresses
        ):
            # Every address, not only the first: the resolver's order may differ next time.
            raise AddressNotAllowed(host)
        if not isinstance(read_timeout, int | float):
            read_timeout = timeout()
        error: OSError = OSError(f"{host} has no address")
        for family, kind, protocol, _name, sockaddr in addresses:
            left = self.remaining()
            if left <= 0:
                raise DeadlineExceeded(self.seconds) from error
            sock = socket.socket(family, kind, protocol)
            try:
                sock.settimeout(min(read_timeout, left))
                if source:
                    sock.bind(source)
                sock.connect(sockaddr)
            except OSError as failed:
                sock.close()
                error = failed
                continue
            sock.settimeout(read_timeout)
            self.attach(sock)
            return sock
        if self.remaining() <= 0:
            raise DeadlineExceeded(self.seconds) from error
        raise error

    def attach(self, sock: socket.socket) -> None:
        """Watch ``sock`` (a new connection)."""
        with self._lock:
            self.detach_locked()
            self._socket = sock.dup()
            if self.expired:
                self._cut()

    def detach(self) -> None:
        """Stop watching the connection (it was closed)."""
        with self._lock:
            self.detach_locked()

    def detach_locked(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class _GuardedSMTP(smtplib.SMTP):
    """smtplib.SMTP connecting through its watchdog (the socket part only)."""

    watchdog: _Watchdog

    def _get_socket(self, host: str, port: int, timeout: Any) -> socket.socket:
        return self.watchdog.connect(host, port, timeout, self.source_address)

    def data(self, msg: Any) -> tuple[int, bytes]:
        self.watchdog.data_started = True
        return super().data(msg)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.watchdog.detach()


class _GuardedSMTPSSL(smtplib.SMTP_SSL, _GuardedSMTP):
    """SMTP_SSL wraps the socket that ``_GuardedSMTP`` connects (its MRO comes first)."""


def _open_smtp(
    smtp_class: type[_GuardedSMTP], watchdog: _Watchdog, host: str, port: int, **params: Any
) -> smtplib.SMTP:
    """What ``smtplib.SMTP(host, port, ...)`` does, with the watchdog in place first."""
    smtp = smtp_class(**params)  # no host: nothing connects yet
    smtp.watchdog = watchdog
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # an address literal: "[2001:db8::1]"
    smtp._host = host  # the name TLS checks the certificate against
    try:
        code, message = smtp.connect(host, port)
        if code != 220:
            raise smtplib.SMTPConnectError(code, message)
    except BaseException:
        smtp.close()
        raise
    return smtp


class SMTPConnection(SMTPBackend):
    """Django's SMTP backend, resolving and vetting the host once and under a deadline."""

    def __init__(self, *args: Any, public_only: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.watchdog = _Watchdog(public_only=public_only)

    @property
    def connection_class(self) -> Any:
        smtp_class = _GuardedSMTPSSL if self.use_ssl else _GuardedSMTP
        return functools.partial(_open_smtp, smtp_class, self.watchdog)

    def open(self) -> bool | None:
        if self.connection:
            return False
        with self.watchdog.watch():
            return super().open()

    def close(self) -> None:
        with self.watchdog.watch():
            super().close()

    def send_messages(self, email_messages: Any) -> int:
        with self.watchdog.watch():
            return super().send_messages(email_messages)


# Connections -------------------------------------------------------------------------------


def connection_for(email_settings: SiteEmailSettings | None) -> BaseEmailBackend:
    """A closed connection for the site: its own SMTP server, or the default backend.

    Raises ``crypto.UndecryptableSecret`` if the stored password cannot be read.
    """
    if email_settings is None or not email_settings.custom_smtp:
        return default_connection()
    return SMTPConnection(
        host=email_settings.host,
        port=email_settings.port,
        username=email_settings.username,
        password=email_settings.get_password(),
        use_tls=email_settings.security == Security.STARTTLS,
        use_ssl=email_settings.security == Security.SSL,
        timeout=timeout(),
        fail_silently=False,
        # A site editor typed this host: only public servers, unless the install says.
        public_only=not billing_settings().smtp_allow_private_hosts,
    )


def default_connection() -> BaseEmailBackend:
    """A closed connection through the project's ``EMAIL_BACKEND``."""
    backend = import_string(settings.EMAIL_BACKEND)
    if backend is SMTPBackend:
        # The project's own server (EMAIL_HOST) may be anywhere: it is not a site
        # editor's choice. It still gets the deadline; Django alone waits forever
        # unless EMAIL_TIMEOUT is set.
        return SMTPConnection(fail_silently=False, timeout=settings.EMAIL_TIMEOUT or timeout())
    if issubclass(backend, SMTPBackend) and settings.EMAIL_TIMEOUT is None:
        return get_connection(fail_silently=False, timeout=timeout())
    return get_connection(fail_silently=False)


def close_quietly(backend: BaseEmailBackend) -> None:
    """Close a connection that may be dead: that must never fail a send or a batch."""
    try:
        backend.close()
    except Exception:
        logger.debug("Closing the email connection failed.", exc_info=True)


def send_message(
    message: EmailMessage, email_settings: SiteEmailSettings | None = None
) -> Failure | None:
    """Send one message over a connection of its own, the whole SMTP conversation under
    one deadline: the site's connection, or the default one. The failure, or None."""
    with conversation():
        backend = None
        try:
            backend = connection_for(email_settings)
            backend.send_messages([message])
        except Exception as error:
            return describe(error, email_settings)
        finally:
            if backend is not None:
                close_quietly(backend)
    return None


def server_name(email_settings: SiteEmailSettings | None) -> str:
    """Where the site's emails go, for messages: "host:port" or the default backend."""
    if email_settings is not None and email_settings.custom_smtp:
        return f"{email_settings.host}:{email_settings.port}"
    return _("the default email backend")


def describe(error: BaseException, email_settings: SiteEmailSettings | None = None) -> Failure:
    """What ``error`` means for the sender, with any secret scrubbed from the reason."""
    failure = _classify(error, email_settings)
    return Failure(capfirst(_scrub(failure.reason, email_settings)), failure.transient)


def _server_reply(code: int, message: bytes | str) -> str:
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return f"{code} {' '.join(str(message).split())}".strip()


def _reply_code(error: BaseException) -> int | None:
    """The SMTP reply code an error carries (smtplib's -1: the line had none), or None."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return next(iter(error.recipients.values()), (550, b""))[0]
    if isinstance(error, smtplib.SMTPResponseException):
        return error.smtp_code
    return None


def _classify(error: BaseException, email_settings: SiteEmailSettings | None) -> Failure:
    where = server_name(email_settings)
    if isinstance(error, crypto.UndecryptableSecret):
        return Failure(str(error), transient=False)
    esp_failure = _classify_esp(error)  # before OSError: anymail's errors are OSErrors too
    if esp_failure is not None:
        return esp_failure
    if isinstance(error, AddressNotAllowed):
        return Failure(
            _(
                "The SMTP server %(host)s resolves to a private or local address; this "
                "install only sends to public mail servers."
            )
            % {"host": email_settings.host if email_settings else error.host},
            transient=False,
        )
    if isinstance(error, DeadlineExceeded):
        return Failure(
            _("%(server)s did not finish within %(seconds)s seconds.")
            % {"server": where, "seconds": f"{error.seconds:g}"},
            transient=True,
        )
    code = _reply_code(error)
    if isinstance(error, smtplib.SMTPConnectError) and code is not None and 400 <= code < 500:
        # A real server that is busy ("421 try later"): its text is not shown, only the
        # code, as a non-SMTP service could say anything after three digits.
        return Failure(
            _("%(server)s is not accepting email right now (SMTP %(code)s).")
            % {"server": where, "code": code},
            transient=True,
        )
    if isinstance(error, smtplib.SMTPConnectError) or (code is not None and not 200 <= code <= 599):
        # Not an SMTP reply (a NATS banner, a Redis error...): never echo another
        # service's bytes, which would make the test email a port scanner's reader.
        return Failure(
            _("%(server)s did not answer as an SMTP server.") % {"server": where},
            transient=False,
        )
    if isinstance(error, smtplib.SMTPAuthenticationError):
        reply = _server_reply(error.smtp_code, error.smtp_error)
        return Failure(
            _("The SMTP server refused the username or password: %(reply)s") % {"reply": reply},
            transient=False,
        )
    if isinstance(error, smtplib.SMTPNotSupportedError):
        return Failure(
            _("The SMTP server %(server)s does not support this: %(error)s")
            % {"server": where, "error": error},
            transient=False,
        )
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code, message = next(iter(error.recipients.values()), (550, b""))
        reply = _server_reply(code, message)
        return Failure(
            _("The SMTP server refused the recipient: %(reply)s") % {"reply": reply},
            transient=400 <= code < 500,
        )
    if isinstance(error, smtplib.SMTPSenderRefused):
        reply = _server_reply(error.smtp_code, error.smtp_error)
        return Failure(
            _("The SMTP server refused the sender %(sender)s: %(reply)s")
            % {"sender": parseaddr(str(error.sender))[1] or error.sender, "reply": reply},
            transient=400 <= error.smtp_code < 500,
        )
    if isinstance(error, smtplib.SMTPResponseException):
        reply = _server_reply(error.smtp_code, error.smtp_error)
        return Failure(
            _("The SMTP server answered: %(reply)s") % {"reply": reply},
            transient=400 <= error.smtp_code < 500,
        )
    if isinstance(error, ssl.SSLError) and getattr(error, "reason", "") in (
        "WRONG_VERSION_NUMBER",
        "RECORD_LAYER_FAILURE",
        "PACKET_LENGTH_TOO_LONG",
    ):
        # The server answered in plain text: SSL/TLS chosen for a STARTTLS or plain port.
        return Failure(
            _(
                "The TLS connection to %(server)s failed: this port does not speak SSL/TLS "
                "from the start. Choose STARTTLS (usually port 587) or check the port "
                "(SSL/TLS is usually 465)."
            )
            % {"server": where},
            transient=False,
        )
    if isinstance(error, ssl.SSLError | ssl.CertificateError):
        # A certificate or protocol mismatch is configuration: retrying cannot fix it.
        return Failure(
            _("The TLS connection to %(server)s failed: %(error)s")
            % {"server": where, "error": getattr(error, "reason", None) or error},
            transient=False,
        )
    if isinstance(error, ConnectionRefusedError):
        return Failure(
            _("Could not connect to %(server)s: connection refused.") % {"server": where},
            transient=True,
        )
    # smtplib reports a read that timed out as "Connection unexpectedly closed".
    if isinstance(error, TimeoutError) or isinstance(error.__context__, TimeoutError):
        return Failure(
            _("%(server)s did not answer within %(seconds)s seconds.")
            % {"server": where, "seconds": f"{timeout():g}"},
            transient=True,
        )
    if isinstance(error, socket.gaierror):
        return Failure(
            _("Could not find the SMTP server %(server)s: %(error)s")
            % {"server": where, "error": error.strerror or error},
            transient=True,
        )
    if isinstance(error, smtplib.SMTPServerDisconnected | ConnectionError):
        return Failure(
            _("The connection to %(server)s was closed: %(error)s")
            % {"server": where, "error": error or _("no reason given")},
            transient=True,
        )
    if isinstance(error, OSError):
        return Failure(
            _("Could not reach %(server)s: %(error)s") % {"server": where, "error": error},
            transient=True,
        )
    # Anything else is a bug or a configuration error: trying again will not help.
    return Failure(
        _("The email could not be sent: %(error)s") % {"error": f"{type(error).__name__}: {error}"},
        transient=False,
    )


def _classify_esp(error: BaseException) -> Failure | None:
    """An anymail ESP's errors: HTTP semantics, where 5xx and 429 are the transient ones."""
    from anymail.exceptions import AnymailError, AnymailRecipientsRefused

    if not isinstance(error, AnymailError):
        return None
    text = " ".join(str(error).split())
    if isinstance(error, AnymailRecipientsRefused):
        return Failure(
            _("The email service refused the recipient: %(error)s") % {"error": text},
            transient=False,
        )
    status = error.status_code
    if status is None and is_read_timeout(error.__cause__):
        # The ESP may have queued it before the answer was lost: never send it twice.
        return Failure(
            _(
                "The email service did not answer in time: the email may not have arrived. "
                "Resend it if the client did not get it."
            ),
            transient=False,
        )
    return Failure(
        _("The email service refused the email: %(error)s") % {"error": text},
        transient=status is None or status == 429 or status >= 500,
    )


def is_read_timeout(error: BaseException | None) -> bool:
    """A request that was sent but whose answer never came (``requests``' ReadTimeout)."""
    try:
        from requests.exceptions import ReadTimeout
    except ImportError:
        return False
    return isinstance(error, ReadTimeout)


def _scrub(reason: str, email_settings: SiteEmailSettings | None) -> str:
    """Remove the SMTP password from a reason, should a server ever echo it."""
    reason = reason[:2000]
    if email_settings is None or not email_settings.has_password:
        return reason
    try:
        password = email_settings.get_password()
    except crypto.UndecryptableSecret:
        return reason
    return reason.replace(password, "********") if password else reason
