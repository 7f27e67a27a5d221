"""Encryption at rest for a site's SMTP password: the first key encrypts, every key decrypts.

Each key is stretched with HKDF-SHA256, which is not a password hash: use high-entropy keys."""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.utils.translation import gettext as _

from .conf import billing_settings, setting_key

# Fixed salt and a purpose label: the same SECRET_KEY gives a key used for nothing else.
HKDF_SALT = b"wagtail-client-billing"
HKDF_INFO = b"wagtail_client_billing.crypto.site-secrets.v1"


class UndecryptableSecret(Exception):
    """A stored secret that none of the configured keys can decrypt."""

    def __init__(self) -> None:
        message = _(
            "The stored SMTP password cannot be decrypted with the configured keys "
            "(%(setting)s or SECRET_KEY changed?). Enter the password again."
        )
        super().__init__(message % {"setting": setting_key("ENCRYPTION_KEYS")})


def _fernet() -> MultiFernet:
    """``ENCRYPTION_KEYS``, else ``SECRET_KEY`` and its fallbacks; per call, so always current."""
    fallbacks = getattr(settings, "SECRET_KEY_FALLBACKS", ()) or ()
    materials = billing_settings().encryption_keys or (settings.SECRET_KEY, *fallbacks)
    keys = []
    for material in materials:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=HKDF_SALT, info=HKDF_INFO)
        keys.append(Fernet(base64.urlsafe_b64encode(hkdf.derive(material.encode()))))
    return MultiFernet(keys)


def encrypt(plaintext: str) -> str:
    """Encrypt ``plaintext`` with the first key; "" stays ""."""
    if not plaintext:
        return ""
    return _fernet().encrypt(plaintext.encode()).decode("ascii")


def decrypt(token: str, *, rotate: bool = False) -> str:
    """Decrypt with any key (``rotate``: re-encrypt with the first), or ``UndecryptableSecret``."""
    if not token:
        return ""
    fernet = _fernet()
    try:
        if rotate:
            return fernet.rotate(token.encode("ascii")).decode("ascii")
        return fernet.decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeError, ValueError):
        # Never the token or a partial plaintext in the error: only what to do.
        raise UndecryptableSecret() from None
