"""The one place that builds email connections, and says what a sending failure means.

A site with Custom SMTP gets Django's SMTP backend pointed at its server; every other
site gets the project's ``EMAIL_BACKEND`` (Django's SMTP, or any django-anymail ESP).
Every connection has a timeout. Django 6.1 replaces ``get_connection()`` with
``MAILERS``: this module is what changes then.

``describe()`` turns an exception into a ``Failure``: a reason in plain words (the
server's own reply included, the password never) and whether trying again later can
help (connection refused, timeouts, SMTP 4xx) or not (SMTP 5xx, authentication, TLS).
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass
from email.utils import parseaddr

from django.conf import settings
from django.core.mail import get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from . import crypto
from .conf import billing_settings
from .models import SiteEmailSettings

Security = SiteEmailSettings.Security


@dataclass(frozen=True)
class Failure:
    """Why a send failed, in plain words, and whether a later attempt may succeed."""

    reason: str
    transient: bool


def timeout() -> float:
    """Seconds before an SMTP connection or reply gives up."""
    return billing_settings().smtp_timeout


def connection_for(email_settings: SiteEmailSettings) -> BaseEmailBackend:
    """A closed connection for the site: its own SMTP server, or the default backend.

    Raises ``crypto.UndecryptableSecret`` if the stored password cannot be read.
    """
    if email_settings.custom_smtp:
        return SMTPBackend(
            host=email_settings.host,
            port=email_settings.port,
            username=email_settings.username,
            password=email_settings.get_password(),
            use_tls=email_settings.security == Security.STARTTLS,
            use_ssl=email_settings.security == Security.SSL,
            timeout=timeout(),
            fail_silently=False,
        )
    backend = import_string(settings.EMAIL_BACKEND)
    if issubclass(backend, SMTPBackend) and settings.EMAIL_TIMEOUT is None:
        # Django's SMTP backend waits forever unless EMAIL_TIMEOUT is set.
        return get_connection(fail_silently=False, timeout=timeout())
    return get_connection(fail_silently=False)


def server_name(email_settings: SiteEmailSettings) -> str:
    """Where the site's emails go, for messages: "host:port" or the default backend."""
    if email_settings.custom_smtp:
        return f"{email_settings.host}:{email_settings.port}"
    return _("the default email backend")


def describe(error: BaseException, email_settings: SiteEmailSettings | None = None) -> Failure:
    """What ``error`` means for the sender, with any secret scrubbed from the reason."""
    failure = _classify(error, email_settings)
    return Failure(_scrub(failure.reason, email_settings), failure.transient)


def _server_reply(code: int, message: bytes | str) -> str:
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return f"{code} {' '.join(str(message).split())}".strip()


def _classify(error: BaseException, email_settings: SiteEmailSettings | None) -> Failure:
    where = server_name(email_settings) if email_settings is not None else ""
    if isinstance(error, crypto.UndecryptableSecret):
        return Failure(str(error), transient=False)
    esp_failure = _classify_esp(error)  # before OSError: anymail's errors are OSErrors too
    if esp_failure is not None:
        return esp_failure
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
