"""The demo: SQLite, console email and the Stripe simulator on 127.0.0.1:12111."""

import os

os.environ.setdefault("STRIPE_API_BASE", "http://127.0.0.1:12111")
os.environ.setdefault("STRIPE_TEST_SECRET_KEY", "sk_test_demo")
os.environ.setdefault("STRIPE_TEST_WEBHOOK_SECRET", "whsec_demo")

from .base import *  # noqa: F403
