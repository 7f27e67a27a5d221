"""A real browser clicks the simulator's hosted Checkout and onboarding pages."""

from __future__ import annotations

import re

import pytest
import stripe

pytestmark = pytest.mark.browser

SECRET = "whsec_browser_shared_secret"


def session_params(receiver, **changes):
    """A one-time payment session landing on the receiver's pages."""
    params = {
        "mode": "payment",
        "success_url": receiver.page_url("/success?session_id={CHECKOUT_SESSION_ID}"),
        "cancel_url": receiver.page_url("/cancelled"),
        "customer_email": "client@example.com",
        "line_items": [
            {
                "price_data": {
                    "currency": "eur",
                    "unit_amount": 12500,
                    "product_data": {"name": "Website maintenance"},
                },
                "quantity": 1,
            }
        ],
    }
    params.update(changes)
    return params


def test_paying_in_the_browser_lands_on_success_and_sends_a_signed_webhook(
    page, stripe_simulator, stripe_client, webhook_receiver
):
    stripe_simulator.add_webhook(webhook_receiver.webhook_url, SECRET)
    session = stripe_client().v1.checkout.sessions.create(params=session_params(webhook_receiver))

    page.goto(session.url)
    assert page.get_by_text("Website maintenance").is_visible()
    assert page.get_by_test_id("amount").inner_text() == "125.00 EUR"
    assert page.get_by_label("Email").input_value() == "client@example.com"
    page.get_by_role("button", name="Pay", exact=True).click()

    page.wait_for_url(re.compile(re.escape(webhook_receiver.page_url("/success"))))
    assert page.url.endswith(f"session_id={session.id}")
    [request] = webhook_receiver.wait_for("checkout.session.completed")
    event = stripe.Webhook.construct_event(request.body, request.signature, SECRET)
    assert event.data.object.id == session.id
    assert event.data.object.payment_status == "paid"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(request.body, request.signature, "whsec_other")

    page.goto(session.url)  # the same link, after payment
    assert page.get_by_role("status").inner_text().startswith("This Checkout Session is complete")
    assert page.get_by_role("button", name="Pay", exact=True).count() == 0


def test_cancel_and_delayed_payment_in_the_browser(
    page, stripe_simulator, stripe_client, webhook_receiver
):
    stripe_simulator.add_webhook(webhook_receiver.webhook_url, SECRET)
    client = stripe_client()
    session = client.v1.checkout.sessions.create(params=session_params(webhook_receiver))

    page.goto(session.url)
    page.get_by_role("button", name="Cancel", exact=True).click()
    page.wait_for_url(webhook_receiver.page_url("/cancelled"))
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"

    page.goto(session.url)
    page.get_by_role("button", name="Pay with delayed method", exact=True).click()
    page.wait_for_url(re.compile(re.escape(webhook_receiver.page_url("/success"))))
    paid_later = client.v1.checkout.sessions.retrieve(session.id)
    assert (paid_later.status, paid_later.payment_status) == ("complete", "unpaid")
    stripe_simulator.settle_async(session.id, succeed=True)
    [request] = webhook_receiver.wait_for("checkout.session.async_payment_succeeded")
    event = stripe.Webhook.construct_event(request.body, request.signature, SECRET)
    assert event.data.object.payment_status == "paid"


def test_expired_session_page_offers_no_pay_button(page, stripe_simulator, stripe_client,
                                                   webhook_receiver):  # fmt: skip
    session = stripe_client().v1.checkout.sessions.create(params=session_params(webhook_receiver))
    stripe_simulator.advance_clock(24 * 3600 + 1)
    page.goto(session.url)
    assert "has expired" in page.get_by_role("status").inner_text()
    assert page.get_by_role("button", name="Pay", exact=True).count() == 0


def test_onboarding_in_the_browser(page, stripe_simulator, stripe_client, webhook_receiver):
    stripe_simulator.add_webhook(webhook_receiver.webhook_url, SECRET, connect=True)
    client = stripe_client()
    account = client.v1.accounts.create(
        params={
            "controller": {"stripe_dashboard": {"type": "express"}},
            "country": "FR",
            "email": "agency@example.com",
        }
    )
    link = client.v1.account_links.create(
        params={
            "account": account.id,
            "type": "account_onboarding",
            "refresh_url": webhook_receiver.page_url("/refresh"),
            "return_url": webhook_receiver.page_url("/return"),
        }
    )

    page.goto(link.url)
    assert page.get_by_test_id("account").inner_text() == account.id
    page.get_by_role("button", name="Complete onboarding", exact=True).click()
    page.wait_for_url(webhook_receiver.page_url("/return"))

    account = client.v1.accounts.retrieve(account.id)
    assert account.charges_enabled and account.details_submitted and account.payouts_enabled
    [request] = webhook_receiver.wait_for("account.updated")
    event = stripe.Webhook.construct_event(request.body, request.signature, SECRET)
    assert event.account == account.id
    assert event.data.object.charges_enabled is True

    page.goto(link.url)  # a used link sends the browser to refresh_url
    page.wait_for_url(webhook_receiver.page_url("/refresh"))
