"""Encryption at rest for the secrets a site stores (its SMTP password).

``cryptography``'s Fernet (AES-128-CBC with HMAC-SHA256, timestamped tokens) behind a
``MultiFernet``: the first key encrypts, every key decrypts, ``rotate()`` re-encrypts
with the first. Keys come from ``WAGTAIL_CLIENT_BILLING["ENCRYPTION_KEYS"]`` or, when
none is set, from ``SECRET_KEY`` (then ``SECRET_KEY_FALLBACKS``, so rotating Django's
key keeps old values readable until ``rotate_billing_encryption_keys`` has run).

Each configured string is stretched to a Fernet key with HKDF-SHA256, so any long
random string works; HKDF is not a password hash, so use high-entropy keys
(``python -c "import secrets; print(secrets.token_urlsafe(32))"``).
"""

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
        super().__init__(
            _(
                "The stored SMTP password cannot be decrypted with the configured keys "
                "(%(setting)s or SECRET_KEY changed?). Enter the password again."
            )
            % {"setting": setting_key("ENCRYPTION_KEYS")}
        )


def derive_key(material: str) -> bytes:
    """A Fernet key (url-safe base64 of 32 bytes) derived from ``material`` with HKDF."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=HKDF_SALT, info=HKDF_INFO).derive(
        material.encode()
    )
    return base64.urlsafe_b64encode(raw)


def key_materials() -> tuple[str, ...]:
    """The configured key strings, the encrypting one first."""
    configured = billing_settings().encryption_keys
    if configured:
        return configured
    fallbacks = tuple(getattr(settings, "SECRET_KEY_FALLBACKS", ()) or ())
    return (settings.SECRET_KEY, *fallbacks)


def _fernet() -> MultiFernet:
    # Cheap to build (one HKDF per key): always current after a settings change.
    return MultiFernet([Fernet(derive_key(material)) for material in key_materials()])


def encrypt(plaintext: str) -> str:
    """Encrypt ``plaintext`` with the first key; "" stays ""."""
    if not plaintext:
        return ""
    return _fernet().encrypt(plaintext.encode()).decode("ascii")


def decrypt(token: str) -> str:
    """Decrypt a stored value with any configured key, or raise ``UndecryptableSecret``."""
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeError, ValueError):
        # Never the token or a partial plaintext in the error: only what to do.
        raise UndecryptableSecret() from None


def rotate(token: str) -> str:
    """Re-encrypt a stored value with the first key, or raise ``UndecryptableSecret``."""
    if not token:
        return ""
    try:
        return _fernet().rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError, ValueError):
        raise UndecryptableSecret() from None
