"""The client's pages in a real browser: what a client sees when a link is no longer
payable (Debian's chromium via Playwright)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect
from wagtail.models import Site

from tests.test_webhooks import link
from wagtail_client_billing.models import BillingRequest

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("wagtail_root"),
]


def a_request(**fields) -> BillingRequest:
    """A request of the live server's own site (``localhost``), as Stripe left it."""
    values = {
        "site": Site.objects.get(is_default_site=True),
        "email": "client@example.com",
        "currency": "eur",
        "amount": 4990,
        "description": "Website maintenance",
        "success_url": "https://client.example/thanks/",
        "cancel_url": "https://client.example/cancel/",
        "mode": "test",
        "checkout_session_id": "cs_test_public",
        "checkout_url": "https://checkout.stripe.test/c/pay/cs_test_public",
        "expires_at": timezone.now() + timedelta(hours=20),
    }
    return BillingRequest.objects.create(**values | fields)


def test_the_expired_pages_button_looks_like_a_button(live_server, page):
    request = a_request(status="expired", expired_at=timezone.now())
    page.goto(live_server.url + request.get_payment_path())
    button = page.get_by_role("button", name="Ask for a new link")
    expect(button).to_be_visible()
    style = button.evaluate(
        """button => {
            const css = getComputedStyle(button);
            return {background: css.backgroundColor, color: css.color, cursor: css.cursor,
                    padding: parseFloat(css.paddingTop), radius: parseFloat(css.borderRadius),
                    border: css.borderTopStyle};
        }"""
    )
    # The browser's default is a grey box with a thin border and square corners.
    assert style["background"] == "rgb(46, 31, 94)", style
    assert style["color"] == "rgb(255, 255, 255)", style
    assert style["cursor"] == "pointer" and style["border"] == "none", style
    assert style["padding"] >= 8 and style["radius"] >= 6, style
    button.click()
    expect(page.get_by_role("status")).to_contain_text("has been told")


def test_a_payment_being_processed_says_so_instead_of_sending_to_checkout(live_server, page):
    link(account_id="acct_agency")  # still the agency's account
    request = a_request(payment_state="processing", account_id="acct_agency")
    page.goto(live_server.url + request.get_payment_path())
    expect(page).to_have_url(live_server.url + request.get_payment_path())
    expect(page.get_by_role("heading")).to_have_text("Your payment is being processed")
    expect(page.get_by_text("you do not need to pay again")).to_be_visible()
