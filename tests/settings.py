"""Settings for the test suite: the example project's, on SQLite or DATABASE_URL."""

import os

os.environ.setdefault("DJANGO_DEBUG", "0")

from example_project.settings.base import *  # noqa: F403
from example_project.settings.base import DATABASES, Q_CLUSTER

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
    # The suite's SMTP servers listen on loopback; the SSRF tests turn this off.
    "SMTP_ALLOW_PRIVATE_HOSTS": True,
}

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not Django's default shared-cache in-memory database: live-server and
    # webhook threads write at the same time as the test, and only a file database
    # honours WAL and the busy timeout (shared cache fails with "table is locked").
    import tempfile

    DATABASES["default"]["TEST"] = {
        "NAME": os.path.join(tempfile.gettempdir(), f"wcb-test-{os.getpid()}.sqlite3")
    }

ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1", ".localhost", ".test"]
