"""No transaction is held open across Stripe, on PostgreSQL.

Run with ``DATABASE_URL=postgres://postgres@127.0.0.1:5432/wcb_races``. The same proof as
on SQLite (a live server; an editor's create or delete kept waiting at Stripe; signed
webhooks and another editor's listing answer at once), and while Stripe keeps the editor
waiting, no connection of the test database has a transaction open: before the fix the
editor's connection sat "idle in transaction" for as long as Stripe took.
"""

from __future__ import annotations

import pytest
from django.db import connection

from tests.test_no_lock_across_stripe import stripe_hangs_while_others_work

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("wagtail_root"),
]


def no_transaction_open_across_the_wait() -> None:
    """No other connection of this database has had a transaction open for a second."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, state, now() - xact_start, left(query, 200) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND xact_start < now() - interval '1 second'"
        )
        held = cursor.fetchall()
    assert held == [], f"transactions held open while Stripe is slow: {held}"


@pytest.mark.parametrize("action", ["create", "delete"])
def test_while_stripe_hangs_no_transaction_is_open_and_others_answer_at_once(
    live_server, billing_stripe_settings, settings, action
):
    settings.WAGTAIL_CLIENT_BILLING = {
        **settings.WAGTAIL_CLIENT_BILLING,
        "STRIPE_MAX_NETWORK_RETRIES": 0,
        "STRIPE_TIMEOUT": 30,
    }
    stripe_hangs_while_others_work(
        live_server,
        billing_stripe_settings,
        action,
        during_hang=no_transaction_open_across_the_wait,
    )
