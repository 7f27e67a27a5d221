"""System checks with stable ids (``wagtail_client_billing.E001`` ...)."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

from .conf import SETTING_NAME, billing_settings, setting_key, unknown_keys


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list:
    """Validate ``WAGTAIL_CLIENT_BILLING`` and the services the app depends on."""
    try:
        conf = billing_settings()
    except ImproperlyConfigured as error:
        hint = f"Fix {SETTING_NAME} in your settings."
        return [Error(str(error), hint=hint, id="wagtail_client_billing.E001")]
    messages: list = []

    def warn(message: str, hint: str, check_id: str) -> None:
        messages.append(Warning(message, hint=hint, id=f"wagtail_client_billing.{check_id}"))

    for key in unknown_keys():
        warn(
            f"{setting_key(key)} is not a setting of wagtail-client-billing.",
            "Check the spelling against the configuration reference.",
            "W001",
        )
    if not (conf.stripe_test_secret_key or conf.stripe_live_secret_key):
        warn(
            "No Stripe secret key is configured: billing requests cannot be sent.",
            f"Set {setting_key('STRIPE_TEST_SECRET_KEY')} (sk_test_...) "
            f"or {setting_key('STRIPE_LIVE_SECRET_KEY')} (sk_live_...).",
            "W002",
        )
    for mode in ("test", "live"):
        if conf.secret_key(mode) and not conf.webhook_secrets(mode):
            name = f"STRIPE_{mode.upper()}_WEBHOOK_SECRET"
            warn(
                f"A {mode}-mode Stripe key is set but no {mode}-mode webhook secret: "
                "statuses will only be updated by the reconciliation task.",
                f"Set {setting_key(name)} to the endpoint's whsec_... secret.",
                "W003",
            )
    for app, problem, check_id in (
        (
            "django_countries",
            "django-countries is not installed: the country list cannot be shown.",
            "E003",
        ),
        ("django_q", "django-q2 is not installed: emails and expiry cannot run.", "E002"),
    ):
        if not apps.is_installed(app):
            hint = f"Add {app!r} to INSTALLED_APPS."
            messages.append(Error(problem, hint=hint, id=f"wagtail_client_billing.{check_id}"))
    if apps.is_installed("django_q") and not getattr(settings, "Q_CLUSTER", None):
        warn(
            "Q_CLUSTER is not set: django-q2 falls back to its defaults.",
            "Set Q_CLUSTER (for example {'name': 'billing', 'orm': 'default'}).",
            "W004",
        )
    return messages
