"""What a sending failure means: ``describe()`` turns an exception into a ``Failure``, a
reason in plain words (the server's own reply included when it is a real SMTP reply,
never another service's bytes, never the password) and whether trying again later can
help (connection refused, timeouts, SMTP 4xx) or not (SMTP 5xx, authentication, TLS, a
refused address)."""

from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass
from email.utils import parseaddr

from anymail.exceptions import AnymailError, AnymailRecipientsRefused
from django.utils.text import capfirst
from django.utils.translation import gettext as _

from .. import crypto
from ..models import SiteEmailSettings
from .smtp import AddressNotAllowed, DeadlineExceeded, timeout


@dataclass(frozen=True)
class Failure:
    """Why a send failed, in plain words, and whether a later attempt may succeed."""

    reason: str
    transient: bool


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
    try:  # requests comes with anymail's HTTP ESPs, not with SMTP-only installs
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
