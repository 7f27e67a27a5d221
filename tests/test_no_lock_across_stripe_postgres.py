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

from tests.factories import connect_ready_account, make_site, request_details
from tests.test_billing_postgres import race
from tests.test_no_lock_across_stripe import stripe_hangs_while_others_work
from wagtail_client_billing import billing, stripe_api
from wagtail_client_billing.models import BillingRequest

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


@pytest.fixture
def ready(billing_stripe_settings, settings):
    settings.WAGTAIL_CLIENT_BILLING = {
        **settings.WAGTAIL_CLIENT_BILLING,
        "STRIPE_MAX_NETWORK_RETRIES": 0,
        "STRIPE_TIMEOUT": 10,
    }
    connect_ready_account(billing_stripe_settings)
    return make_site("acme.test", "Acme Plumbing"), billing_stripe_settings


def test_one_form_sent_five_times_at_once_makes_one_request_and_one_session(ready):
    site, stripe = ready
    stripe.hang_next("POST", "/v1/checkout/sessions", seconds=1.0)  # all arrive meanwhile
    results = race(
        [
            lambda: billing.create_request(site=site, details=request_details(), nonce="one-form")
            for _ in range(5)
        ]
    )
    made = [r for r in results if isinstance(r, BillingRequest)]
    # The others: this form went through already, or Stripe is still busy with its key
    # (the editor's retry then gets the first one).
    others = [
        r for r in results if isinstance(r, billing.AlreadySubmitted | stripe_api.StripeNoAnswer)
    ]
    assert len(made) == 1 and len(others) == 4, results
    request = BillingRequest.objects.get()
    assert request.pk == made[0].pk and request.status == BillingRequest.Status.PENDING
    sessions = list(stripe.engine.store.iter("checkout.session"))
    assert [s.data["id"] for s in sessions] == [request.checkout_session_id]
    retry = race(
        [
            lambda: billing.create_request(
                site=site, details=request_details(email="x@y.z"), nonce="one-form"
            )
        ]
    )
    assert isinstance(retry[0], billing.AlreadySubmitted)
