"""What a sending failure means, in plain words, and whether trying again may help."""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
from email.utils import parseaddr
from typing import Any

from anymail.exceptions import AnymailError, AnymailRecipientsRefused
from django.utils.text import capfirst
from django.utils.translation import gettext as _
from requests.exceptions import ReadTimeout  # anymail's own dependency

from .. import crypto
from ..models import SiteEmailSettings
from .smtp import AddressNotAllowed, DeadlineExceeded, timeout

# What ssl reports when the server answers in plain text (SSL/TLS on a STARTTLS port).
PLAIN_TEXT_ANSWER = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG")


class EmailFailed(Exception):
    """A send failed: why, in plain words, and whether a later attempt may succeed."""

    def __init__(self, reason: str, transient: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


def server_name(email_settings: SiteEmailSettings | None) -> str:
    """Where the site's emails go, for messages: "host:port" or the default backend."""
    if email_settings is not None and email_settings.custom_smtp:
        return f"{email_settings.host}:{email_settings.port}"
    return _("the default email backend")


def describe(error: BaseException, email_settings: SiteEmailSettings | None = None) -> EmailFailed:
    """What ``error`` means for the sender, with the SMTP password scrubbed from the reason."""
    if isinstance(error, crypto.UndecryptableSecret):
        failure = EmailFailed(str(error), transient=False)
    elif isinstance(error, AnymailError):  # before OSError: anymail's errors are OSErrors too
        failure = _describe_esp(error)
    else:
        failure = _describe_smtp(error, email_settings)
    reason = failure.reason[:2000]
    if email_settings is not None and email_settings.has_password:
        with contextlib.suppress(crypto.UndecryptableSecret):  # should a server ever echo it
            if password := email_settings.get_password():
                reason = reason.replace(password, "********")
    return EmailFailed(capfirst(reason), failure.transient)


def _describe_smtp(error: BaseException, email_settings: SiteEmailSettings | None) -> EmailFailed:
    code, reply = _reply(error)
    busy = code is not None and 400 <= code < 500  # SMTP 4xx: try again later
    sender = str(getattr(error, "sender", ""))
    values: dict[str, Any] = {
        "server": server_name(email_settings),
        "host": email_settings.host if email_settings else getattr(error, "host", ""),
        "seconds": f"{error.seconds if isinstance(error, DeadlineExceeded) else timeout():g}",
        "code": code,
        "reply": reply,
        "sender": parseaddr(sender)[1] or sender,
        "error": error,
    }
    if isinstance(error, AddressNotAllowed):
        transient = False
        reason = _(
            "The SMTP server %(host)s resolves to a private or local address; this "
            "install only sends to public mail servers."
        )
    elif isinstance(error, DeadlineExceeded):
        transient, reason = True, _("%(server)s did not finish within %(seconds)s seconds.")
    elif isinstance(error, smtplib.SMTPConnectError) and busy:
        # Only a busy server's code ("421 try later"): a non-SMTP service may say anything.
        transient, reason = True, _("%(server)s is not accepting email right now (SMTP %(code)s).")
    elif isinstance(error, smtplib.SMTPConnectError) or (
        code is not None and not 200 <= code <= 599
    ):
        # Not SMTP (a NATS banner...): echoing its bytes would make the test email a port scanner.
        transient, reason = False, _("%(server)s did not answer as an SMTP server.")
    elif isinstance(error, smtplib.SMTPAuthenticationError):
        transient, reason = False, _("The SMTP server refused the username or password: %(reply)s")
    elif isinstance(error, smtplib.SMTPNotSupportedError):
        transient, reason = False, _("The SMTP server %(server)s does not support this: %(error)s")
    elif isinstance(error, smtplib.SMTPRecipientsRefused):
        transient, reason = busy, _("The SMTP server refused the recipient: %(reply)s")
    elif isinstance(error, smtplib.SMTPSenderRefused):
        transient, reason = busy, _("The SMTP server refused the sender %(sender)s: %(reply)s")
    elif isinstance(error, smtplib.SMTPResponseException):
        transient, reason = busy, _("The SMTP server answered: %(reply)s")
    elif isinstance(error, ssl.SSLError) and getattr(error, "reason", "") in PLAIN_TEXT_ANSWER:
        transient = False
        reason = _(
            "The TLS connection to %(server)s failed: this port does not speak SSL/TLS "
            "from the start. Choose STARTTLS (usually port 587) or check the port "
            "(SSL/TLS is usually 465)."
        )
    elif isinstance(error, ssl.SSLError | ssl.CertificateError):
        # A certificate or protocol mismatch is configuration: retrying cannot fix it.
        transient, reason = False, _("The TLS connection to %(server)s failed: %(error)s")
        values["error"] = getattr(error, "reason", None) or error
    elif isinstance(error, ConnectionRefusedError):
        transient, reason = True, _("Could not connect to %(server)s: connection refused.")
    elif isinstance(error, TimeoutError) or isinstance(error.__context__, TimeoutError):
        # (smtplib reports a read that timed out as "Connection unexpectedly closed".)
        transient, reason = True, _("%(server)s did not answer within %(seconds)s seconds.")
    elif isinstance(error, socket.gaierror):
        transient, reason = True, _("Could not find the SMTP server %(server)s: %(error)s")
        values["error"] = error.strerror or error
    elif isinstance(error, smtplib.SMTPServerDisconnected | ConnectionError):
        transient, reason = True, _("The connection to %(server)s was closed: %(error)s")
        values["error"] = str(error) or _("no reason given")
    elif isinstance(error, OSError):
        transient, reason = True, _("Could not reach %(server)s: %(error)s")
    else:  # a bug or a configuration error: trying again will not help
        transient, reason = False, _("The email could not be sent: %(error)s")
        values["error"] = f"{type(error).__name__}: {error}"
    return EmailFailed(reason % values, transient)


def _reply(error: BaseException) -> tuple[int | None, str]:
    """The SMTP reply an error carries (smtplib's code -1: the line had none), or None."""
    message: bytes | str
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code, message = next(iter(error.recipients.values()), (550, b""))
    elif isinstance(error, smtplib.SMTPResponseException):
        code, message = error.smtp_code, error.smtp_error
    else:
        return None, ""
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return code, f"{code} {' '.join(str(message).split())}".strip()


def _describe_esp(error: AnymailError) -> EmailFailed:
    """An anymail ESP's errors: HTTP semantics, where 5xx and 429 are the transient ones."""
    text = {"error": " ".join(str(error).split())}
    if isinstance(error, AnymailRecipientsRefused):
        return EmailFailed(_("The email service refused the recipient: %(error)s") % text, False)
    status = error.status_code
    if status is None and isinstance(error.__cause__, ReadTimeout):
        # The ESP may have queued it before the answer was lost: never send it twice.
        reason = _(
            "The email service did not answer in time: the email may not have arrived. "
            "Resend it if the client did not get it."
        )
        return EmailFailed(reason, transient=False)
    reason = _("The email service refused the email: %(error)s") % text
    return EmailFailed(reason, transient=status is None or status == 429 or status >= 500)
