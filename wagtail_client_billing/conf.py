"""The one reader of ``WAGTAIL_CLIENT_BILLING``; its errors name the exact key to set."""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

SETTING_NAME = "WAGTAIL_CLIENT_BILLING"
STRIPE_API_BASE_DEFAULT = "https://api.stripe.com"

# Stripe Checkout accepts an ``expires_at`` between 30 minutes and 24 hours from now.
REQUEST_TTL_MIN = 30 * 60
REQUEST_TTL_MAX = 24 * 60 * 60

DEFAULTS: dict[str, Any] = {
    "STRIPE_TEST_SECRET_KEY": "",
    "STRIPE_LIVE_SECRET_KEY": "",
    "STRIPE_TEST_WEBHOOK_SECRET": (),
    "STRIPE_LIVE_WEBHOOK_SECRET": (),
    "STRIPE_API_BASE": STRIPE_API_BASE_DEFAULT,
    "STRIPE_MAX_NETWORK_RETRIES": 2,
    "STRIPE_TIMEOUT": 30,
    "REQUEST_TTL": REQUEST_TTL_MAX,
    "ENCRYPTION_KEYS": (),
    "STRIPE_CONNECT": True,
    "REMINDER_HOURS_BEFORE_EXPIRY": None,
    "SMTP_TIMEOUT": 20,
    "SMTP_DEADLINE": 60,
    "SMTP_ALLOW_PRIVATE_HOSTS": False,
    "SENDER_DOMAINS": (),
    "TEST_EMAILS_PER_MINUTE": 3,
}


def setting_key(name: str) -> str:
    """Spell a key the way a user writes it in settings.py."""
    return f"{SETTING_NAME}[{name!r}]"


def _raw() -> dict[str, Any]:
    value = getattr(settings, SETTING_NAME, None)
    if not isinstance(value, dict | None):
        raise ImproperlyConfigured(
            f"{SETTING_NAME} must be a dict, got {type(value).__name__}. "
            f"Set {SETTING_NAME} = {{...}} in your settings."
        )
    return value or {}


def _string(raw: dict[str, Any], name: str, prefix: tuple[str, ...] = (), wanted: str = "") -> str:
    value = raw.get(name, DEFAULTS[name])
    if not isinstance(value, str | None):
        raise ImproperlyConfigured(f"{setting_key(name)} must be a string.")
    value = (value or "").strip()
    if value and prefix and not value.startswith(prefix):
        # Never echo the value itself: it may be a secret.
        raise ImproperlyConfigured(f"{setting_key(name)} must be {wanted}.")
    return value


def _strings(raw: dict[str, Any], name: str, prefix: str = "", wanted: str = "") -> tuple[str, ...]:
    value = raw.get(name, DEFAULTS[name])
    if value is None or isinstance(value, str):
        value = [value or ""]  # one string, or none ("" is dropped below)
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ImproperlyConfigured(f"{setting_key(name)} must be a string or a list of strings.")
    values = tuple(v.strip() for v in value if v.strip())
    if not all(v.startswith(prefix) for v in values):
        raise ImproperlyConfigured(f"{setting_key(name)} must hold {wanted}.")
    return values


def _boolean(raw: dict[str, Any], name: str) -> bool:
    value = raw.get(name, DEFAULTS[name])
    if not isinstance(value, bool):
        raise ImproperlyConfigured(f"{setting_key(name)} must be True or False.")
    return value


def _number(raw: dict[str, Any], name: str, minimum: float, maximum: float) -> Any:
    value = raw.get(name, DEFAULTS[name])
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ImproperlyConfigured(f"{setting_key(name)} must be a number.")
    if not minimum <= value <= maximum:
        raise ImproperlyConfigured(
            f"{setting_key(name)} must be between {minimum} and {maximum}, got {value}."
        )
    return value


def _secret_key(raw: dict[str, Any], mode: str) -> str:
    prefixes = (f"sk_{mode}_", f"rk_{mode}_")
    wanted = f"a {mode}-mode Stripe secret key starting with {' or '.join(prefixes)}"
    return _string(raw, f"STRIPE_{mode.upper()}_SECRET_KEY", prefixes, wanted)


def _webhook_secrets(raw: dict[str, Any], mode: str) -> tuple[str, ...]:
    wanted = "webhook signing secrets starting with whsec_"
    return _strings(raw, f"STRIPE_{mode.upper()}_WEBHOOK_SECRET", "whsec_", wanted)


def _api_base(raw: dict[str, Any]) -> str:
    value = _string(raw, "STRIPE_API_BASE") or STRIPE_API_BASE_DEFAULT
    if not value.startswith(("http://", "https://")):
        raise ImproperlyConfigured(
            f"{setting_key('STRIPE_API_BASE')} must be an http(s) URL such as "
            f"{STRIPE_API_BASE_DEFAULT}."
        )
    return value.rstrip("/")


def _reminder_hours(raw: dict[str, Any], request_ttl: int) -> float | None:
    name = "REMINDER_HOURS_BEFORE_EXPIRY"
    if raw.get(name) in (None, 0):
        return None  # off
    hours = _number(raw, name, 0, 24)
    # A reminder due at or before creation would follow the first email at once.
    if hours * 3600 >= request_ttl:
        raise ImproperlyConfigured(
            f"{setting_key(name)} must be less than {setting_key('REQUEST_TTL')} "
            f"({request_ttl / 3600:g} hours), got {hours}."
        )
    return float(hours)


def _sender_domains(raw: dict[str, Any]) -> tuple[str, ...]:
    """Domains a site's From may use through the default backend (lower case, no "@")."""
    domains = tuple(d.lower().lstrip("@") for d in _strings(raw, "SENDER_DOMAINS"))
    for domain in domains:
        if not domain or "." not in domain or any(c in domain for c in " /:@"):
            raise ImproperlyConfigured(
                f"{setting_key('SENDER_DOMAINS')} must list domain names such as "
                f"example.com, got {domain!r}."
            )
    return domains


class BillingSettings:
    """The validated ``WAGTAIL_CLIENT_BILLING`` settings; ``ImproperlyConfigured`` if wrong."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.request_ttl = int(_number(raw, "REQUEST_TTL", REQUEST_TTL_MIN, REQUEST_TTL_MAX))
        self.stripe_test_secret_key = _secret_key(raw, "test")
        self.stripe_live_secret_key = _secret_key(raw, "live")
        self.stripe_test_webhook_secrets = _webhook_secrets(raw, "test")
        self.stripe_live_webhook_secrets = _webhook_secrets(raw, "live")
        self.stripe_api_base = _api_base(raw)
        self.stripe_max_network_retries = int(_number(raw, "STRIPE_MAX_NETWORK_RETRIES", 0, 10))
        self.stripe_timeout = float(_number(raw, "STRIPE_TIMEOUT", 1, 600))
        self.encryption_keys = _strings(raw, "ENCRYPTION_KEYS")
        self.direct = not _boolean(raw, "STRIPE_CONNECT")
        self.reminder_hours_before_expiry = _reminder_hours(raw, self.request_ttl)
        self.smtp_timeout = float(_number(raw, "SMTP_TIMEOUT", 1, 300))
        self.smtp_deadline = float(_number(raw, "SMTP_DEADLINE", 1, 600))
        self.smtp_allow_private_hosts = _boolean(raw, "SMTP_ALLOW_PRIVATE_HOSTS")
        self.sender_domains = _sender_domains(raw)
        self.test_emails_per_minute = int(_number(raw, "TEST_EMAILS_PER_MINUTE", 1, 60))

    def secret_key(self, mode: str) -> str:
        """The Stripe secret key for ``mode`` ("test" or "live"), or "" if not set."""
        return self.stripe_live_secret_key if mode == "live" else self.stripe_test_secret_key

    def webhook_secrets(self, mode: str) -> tuple[str, ...]:
        """Every webhook signing secret configured for ``mode`` (several during rotation)."""
        live = mode == "live"
        return self.stripe_live_webhook_secrets if live else self.stripe_test_webhook_secrets


@functools.cache
def billing_settings() -> BillingSettings:
    """The settings, read once (again after a change of ``WAGTAIL_CLIENT_BILLING``)."""
    return BillingSettings(_raw())


def unknown_keys() -> list[str]:
    """Keys in ``WAGTAIL_CLIENT_BILLING`` that the app does not know (likely typos)."""
    return sorted(set(_raw()) - set(DEFAULTS))


@receiver(setting_changed)
def _clear_cache(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING_NAME:
        billing_settings.cache_clear()
