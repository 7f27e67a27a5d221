"""Settings of the end-to-end run: the example project's demo settings, configured by the
environment (``harness.Harness.environment``), plus what that environment cannot say.

- ``EMAIL_HOST``/``EMAIL_PORT``: the project's default SMTP server (an aiosmtpd server on
  loopback that the test reads), which sends the agency's payment notifications and the
  emails of sites without custom SMTP.
- ``STRIPE_TIMEOUT``: a few seconds instead of 30, so that a Stripe that hangs costs the
  test seconds, not minutes (the SDK still makes its usual retries).
"""

import os

from example_project.settings.dev import *  # noqa: F403
from example_project.settings.dev import WAGTAIL_CLIENT_BILLING

# Logins in every test: a fast hasher (the passwords are the harness's own).
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# No avatars from gravatar.com (offline): Wagtail's default one, in the screenshots too.
WAGTAIL_GRAVATAR_PROVIDER_URL = None

EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = int(os.environ.get("WCB_E2E_EMAIL_PORT", "25"))
EMAIL_TIMEOUT = 10

WAGTAIL_CLIENT_BILLING = {
    **WAGTAIL_CLIENT_BILLING,
    "STRIPE_TIMEOUT": float(os.environ.get("WCB_E2E_STRIPE_TIMEOUT", "4")),
    "SMTP_TIMEOUT": 5,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "wagtail_client_billing": {"handlers": ["console"], "level": "INFO"},
        "django_q": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
