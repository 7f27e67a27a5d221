"""Settings for the test suite: the example project's, on SQLite or DATABASE_URL."""

import os

os.environ.setdefault("DJANGO_DEBUG", "0")

from example_project.settings.base import *  # noqa: F403
from example_project.settings.base import Q_CLUSTER

SECRET_KEY = "tests-only-secret-key-not-for-production"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Tasks run in the calling process in unit tests; the end-to-end tests start a cluster.
Q_CLUSTER = {**Q_CLUSTER, "sync": True}

WAGTAIL_CLIENT_BILLING = {
    "STRIPE_TEST_SECRET_KEY": "sk_test_suite",
    "STRIPE_TEST_WEBHOOK_SECRET": "whsec_test_suite",
    "STRIPE_API_BASE": "http://127.0.0.1:9",  # the simulator fixture overrides this
    "REQUEST_TTL": 86400,
}

ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1", ".localhost", ".test"]
