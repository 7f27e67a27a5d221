"""The agency unlinks its Stripe account with a request still pending, in a real browser:
the request is withdrawn (its link says so) or, if the client paid first, ends Paid.

The live server is the client's site (``localhost`` on its port, so payment links point
at it); the simulator hosts Stripe Checkout.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from tests.factories import PASSWORD, connect_ready_account, make_site, make_user, request_details
from wagtail_client_billing import billing
from wagtail_client_billing.models import BillingRequest, StripeConnection

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("wagtail_root"),
]

Status = BillingRequest.Status


@pytest.fixture
def pending(live_server, billing_stripe_settings) -> BillingRequest:
    """A ready account and one pending request on the live server's site."""
    port = urlsplit(live_server.url).port
    site = make_site("localhost", "Acme Plumbing", port=port)
    connect_ready_account(billing_stripe_settings)
    make_user("agency", superuser=True)
    return billing.create_request(
        site=site,
        details=request_details(
            success_url=f"{live_server.url}/", cancel_url=f"{live_server.url}/"
        ),
    )


def open_unlink_page(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/admin/login/")
    page.fill("input[name=username]", "agency")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.get_by_role("button", name="Settings").click()
    page.get_by_role("link", name="Client billing account").click()
    page.locator("section[data-mode=test]").get_by_role("link", name="Unlink account").click()
    expect(page.get_by_text("1 billing request is still pending on this account")).to_be_visible()
    # No plain unlink while a client can still pay.
    expect(page.get_by_role("button", name="Yes, unlink account")).to_have_count(0)


def test_unlink_withdraws_the_pending_request_and_its_link_says_so(
    live_server, page, pending, billing_stripe_settings
):
    open_unlink_page(page, live_server.url)
    page.get_by_role("button", name="Withdraw 1 pending request and unlink").click()

    expect(
        page.get_by_text(
            "1 pending billing request was withdrawn; the client billing account was unlinked."
        )
    ).to_be_visible()
    expect(page.get_by_role("link", name="Create client billing account")).to_be_visible()
    assert not StripeConnection.objects.get().is_linked
    pending.refresh_from_db()
    assert pending.status == Status.DELETED
    session = billing_stripe_settings.get_object(pending.checkout_session_id, "checkout.session")
    assert session["status"] == "expired"  # Checkout itself no longer takes the money

    # The client's link now says the request was withdrawn, on the client's site.
    page.goto(pending.get_payment_url())
    expect(page.get_by_role("heading", name="This payment request was withdrawn")).to_be_visible()


def test_a_request_the_client_paid_before_the_withdraw_ends_paid(
    live_server, page, browser, pending, billing_stripe_settings
):
    stripe = billing_stripe_settings
    # The client pays on Stripe Checkout; no webhook reaches the site (none is
    # registered), as when the agency unlinks before Stripe's event arrives.
    client = browser.new_context(locale="en-US").new_page()
    try:
        client.goto(pending.get_payment_url())
        client.wait_for_url(re.compile(re.escape(stripe.url)))
        client.get_by_role("button", name="Pay", exact=True).click()
        client.wait_for_url(f"{live_server.url}/")
    finally:
        client.context.close()
    pending.refresh_from_db()
    assert pending.status == Status.PENDING

    open_unlink_page(page, live_server.url)
    page.get_by_role("button", name="Withdraw 1 pending request and unlink").click()

    expect(
        page.get_by_text(
            "1 had already been paid and is now marked Paid; "
            "the client billing account was unlinked."
        )
    ).to_be_visible()
    pending.refresh_from_db()
    assert pending.status == Status.PAID  # never lost
    assert not StripeConnection.objects.get().is_linked

    page.goto(pending.get_payment_url())
    expect(page.get_by_role("heading", name="This request has been paid")).to_be_visible()
