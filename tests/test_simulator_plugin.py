"""The pytest plugin's fixtures, as integrators use them."""

from __future__ import annotations

import subprocess
import sys

import stripe


def test_plugin_imports_neither_django_nor_stripe():
    code = (
        "import sys, wagtail_client_billing.testing.pytest_plugin; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'django', 'stripe'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_stripe_client_factory(stripe_client, stripe_simulator):
    client = stripe_client()
    assert isinstance(client, stripe.StripeClient)
    account = client.v1.accounts.create(params={"type": "express"})
    scoped = stripe_client(stripe_account=account.id)
    session = scoped.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "success_url": "https://x.example/ok",
            "line_items": [
                {
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": 100,
                        "product_data": {"name": "X"},
                    },
                    "quantity": 1,
                }
            ],
        }
    )
    assert stripe_simulator.engine.store.find(session.id, "checkout.session").scope.account == (
        account.id
    )


def test_state_does_not_leak_between_tests_part_one(stripe_simulator, stripe_client):
    stripe_client().v1.accounts.create(params={"type": "standard"})
    stripe_simulator.advance_clock(3600)
    stripe_simulator.fail_next("GET", "/v1/never")


def test_state_does_not_leak_between_tests_part_two(stripe_simulator, stripe_client):
    assert stripe_client().v1.accounts.list().data == []
    assert abs(stripe_simulator.now() - stripe_simulator.engine.store.clock.time()) < 1
    assert stripe_simulator.engine.store.clock.offset == 0
    assert stripe_simulator.engine.faults.active() == []


def test_billing_stripe_settings_points_the_app_at_the_simulator(billing_stripe_settings):
    from django.conf import settings

    assert settings.WAGTAIL_CLIENT_BILLING["STRIPE_API_BASE"] == billing_stripe_settings.url
    assert "STRIPE_TEST_SECRET_KEY" in settings.WAGTAIL_CLIENT_BILLING  # the rest is kept


def test_webhook_receiver_serves_landing_pages(webhook_receiver):
    import requests

    page = requests.get(webhook_receiver.page_url("/success?session_id=cs_1"), timeout=5)
    assert page.status_code == 200 and "/success?session_id=cs_1" in page.text
    assert webhook_receiver.wait_for_visit("/success") == "/success?session_id=cs_1"
    webhook_receiver.fail_next(1, status=502)
    assert requests.post(webhook_receiver.webhook_url, data=b"{}", timeout=5).status_code == 502
    assert requests.post(webhook_receiver.webhook_url, data=b"{}", timeout=5).status_code == 200
    assert len(webhook_receiver.received()) == 1
    assert len(webhook_receiver.received(ok=False)) == 2
