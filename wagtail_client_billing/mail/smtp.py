"""The one place that builds email connections (Django 6.1's ``MAILERS`` changes only this).

A site's own SMTP host (an editor's choice) must resolve to public addresses only (no probing
our network); it is resolved once and that address used (DNS rebinding), TLS checking the name.
A watchdog cuts each step (open, send, close) at ``SMTP_DEADLINE``: trickled bytes never trip
the read timeout."""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import smtplib
import socket
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from django.conf import settings
from django.core.mail import get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend
from django.utils.module_loading import import_string

from ..conf import billing_settings
from ..models import SiteEmailSettings

logger = logging.getLogger(__name__)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Python's own flags disagree between versions and miss ranges (multicast is "global").
_NOT_PUBLIC = ("private", "loopback", "link_local", "multicast", "reserved", "unspecified")


class AddressNotAllowed(OSError):
    """A site's SMTP host resolves to an address this install does not connect to."""

    def __init__(self, host: str) -> None:
        super().__init__(f"{host} resolves to a non-public address")
        self.host = host


class DeadlineExceeded(TimeoutError):
    """The SMTP conversation was cut at its deadline; ``maybe_delivered`` if DATA began."""

    def __init__(self, seconds: float, *, maybe_delivered: bool = False) -> None:
        super().__init__(f"the SMTP conversation ran past {seconds:g} seconds")
        self.seconds = seconds
        self.maybe_delivered = maybe_delivered


def timeout() -> float:
    """Seconds before an SMTP connection or reply gives up."""
    return billing_settings().smtp_timeout


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``address`` is public unicast (IPv6 mapped, 6to4, NAT64: by their IPv4)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public_address(embedded)
        if address.is_site_local:
            return False
    return address.is_global and not any(getattr(address, f"is_{flag}") for flag in _NOT_PUBLIC)


def _resolve(host: str, port: int, seconds: float) -> list[tuple[Any, ...]]:
    # The resolver has no timeout: it runs in a thread left behind if it answers too late.
    answer: list[Any] = []

    def lookup() -> None:
        try:
            answer.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except Exception as error:  # raised in the caller's thread
            answer.append(error)

    thread = threading.Thread(target=lookup, name="wcb-smtp-resolve", daemon=True)
    thread.start()
    thread.join(max(0.0, seconds))
    if not answer:
        raise DeadlineExceeded(billing_settings().smtp_deadline)
    if isinstance(answer[0], Exception):
        raise answer[0]
    return answer[0]


# When everything inside ``conversation()`` must be done (monotonic clock).
_conversation_end: ContextVar[float | None] = ContextVar("wcb_smtp_end", default=None)


@contextlib.contextmanager
def conversation(seconds: float | None = None) -> Iterator[None]:
    """One deadline (default ``SMTP_DEADLINE``) over every SMTP step inside, together."""
    if seconds is None:
        seconds = billing_settings().smtp_deadline
    token = _conversation_end.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _conversation_end.reset(token)


class _Watchdog:
    """Resolves, vets, connects; a guard thread (one while steps follow each other, not one per
    step) cuts a step past its deadline with ``shutdown()`` on a dup of the socket (valid even
    if smtplib closed its own; a blocked read returns at once)."""

    def __init__(self, *, public_only: bool) -> None:
        self.public_only = public_only
        self.seconds = billing_settings().smtp_deadline
        self.expired = False
        self.data_started = False
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._socket: socket.socket | None = None
        self._stepping = False  # a step runs; it ends at ``_end``
        self._end = 0.0
        self._guard_until: float | None = None  # None: no guard thread

    def remaining(self) -> float:
        return self._end - time.monotonic() if self._stepping else self.seconds

    @contextlib.contextmanager
    def watch(self) -> Iterator[None]:
        """Run one step under the deadline; steps nested in it share it."""
        if self._stepping:
            yield
            return
        end = min(time.monotonic() + self.seconds, _conversation_end.get() or float("inf"))
        with self._lock:
            self._end, self._stepping = end, True
            self.expired = self.data_started = False
            if self._guard_until is None:
                self._guard_until = end
                threading.Thread(target=self._guard, name="wcb-smtp-deadline", daemon=True).start()
            elif end < self._guard_until:
                self._wake.notify()
        try:
            yield
        except Exception as error:
            if self.expired and not isinstance(error, DeadlineExceeded):
                raise DeadlineExceeded(self.seconds, maybe_delivered=self.data_started) from error
            raise
        finally:
            with self._lock:
                self._stepping = False
                if self._socket is None:  # closed: the guard may go
                    self._wake.notify()
        if self.expired:
            # Cut, yet no error: smtplib took a truncated "220-..." line for a whole reply.
            raise DeadlineExceeded(self.seconds, maybe_delivered=self.data_started)

    def _guard(self) -> None:
        """Sleep until the running step's end and cut it there; leave between steps."""
        with self._lock:
            while self._stepping:
                left = self._end - time.monotonic()
                if left <= 0:
                    self.expired = True
                    self._cut()
                    break
                self._guard_until = self._end
                self._wake.wait(left)
            self._guard_until = None

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
                break
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
            self.detach()
            with self._lock:
                self._socket = sock.dup()
                if self.expired:
                    self._cut()
            return sock
        if self.remaining() <= 0:
            raise DeadlineExceeded(self.seconds) from error
        raise error

    def detach(self) -> None:  # the connection was closed
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None


class _GuardedSMTP(smtplib.SMTP):
    """smtplib.SMTP connecting through its watchdog."""

    watchdog: _Watchdog
    _host: str  # smtplib's own: the name TLS checks the certificate against

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
    smtp._host = host
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


def connection_for(email_settings: SiteEmailSettings | None) -> BaseEmailBackend:
    """A closed connection for the site (``UndecryptableSecret`` if its password is unreadable)."""
    if email_settings is not None and email_settings.custom_smtp:
        return SMTPConnection(
            host=email_settings.host,
            port=email_settings.port,
            username=email_settings.username,
            password=email_settings.get_password(),
            use_tls=email_settings.security == SiteEmailSettings.Security.STARTTLS,
            use_ssl=email_settings.security == SiteEmailSettings.Security.SSL,
            timeout=timeout(),
            fail_silently=False,
            public_only=not billing_settings().smtp_allow_private_hosts,
        )
    backend = import_string(settings.EMAIL_BACKEND)
    if backend is SMTPBackend:
        # The project's server may be anywhere, but without EMAIL_TIMEOUT Django waits forever.
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
