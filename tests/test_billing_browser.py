"""A billing request from the editor's form to the client's payment, in a real browser.

The live server is site A (``localhost`` on the live server's port, so that the payment
link built from ``site.root_url`` points at it); the simulator hosts Stripe Checkout and
delivers its signed webhooks to the live server's endpoint.
"""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from tests.factories import PASSWORD, connect_ready_account, grant_billing, make_site, make_user
from wagtail_client_billing.models import BillingRequest

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("wagtail_root"),
]

WEBHOOK = "/billing/stripe/webhook/"
SECRET = "whsec_test_suite"  # tests/settings.py
CLIENT_EMAIL = "client@example.com"
WEBHOOK_WAIT = 15  # seconds


def log_in(page: Page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/admin/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/admin/")


def row_of(page: Page, email: str):
    return page.get_by_role("row").filter(has_text=email)


def reload_until_status(page: Page, email: str, status: str, timeout: float) -> None:
    """Reload the listing until the request's row shows ``status``, at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        text = row_of(page, email).text_content() or ""  # as written, not as styled
        if status in text:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the row still reads {text!r} after {timeout} s")
        page.reload()


def test_editor_sends_client_pays_editor_sees_paid_other_site_sees_nothing(
    live_server, page, browser, billing_stripe_settings
):
    stripe = billing_stripe_settings
    port = urlsplit(live_server.url).port
    acme = make_site("localhost", "Acme Plumbing", port=port)
    bakery = make_site("bakery.test", "Rue Haute Bakery")
    connect_ready_account(stripe)
    grant_billing(make_user("acme-editor"), acme)
    grant_billing(make_user("bakery-editor"), bakery)
    success_url = f"{live_server.url}/"  # site A's home page
    # Webhooks reach the live server from here on, not before: the onboarding's
    # account.updated above is not delivered, so no request races the set-up's writes,
    # and the test reads the database only when no request or delivery is in flight.
    stripe.add_webhook(live_server.url + WEBHOOK, SECRET)

    # The editor of site A sends a billing request.
    log_in(page, live_server.url, "acme-editor")
    page.get_by_role("navigation", name="Main menu").get_by_role(
        "link", name="Client billing", exact=True
    ).click()
    expect(page.get_by_role("heading", name="Client billing")).to_be_visible()
    # The header's "+ Add billing request" (the empty listing offers the same link).
    page.get_by_role("navigation", name="Actions").get_by_role(
        "link", name="Add billing request"
    ).click()
    page.get_by_label("Email").fill(CLIENT_EMAIL)
    page.get_by_label("Currency").select_option("eur")
    page.get_by_label("Amount").fill("49.90")
    page.get_by_label("Success URL").fill(success_url)
    page.get_by_label("Cancel URL").fill(success_url)
    page.get_by_label("Billing type").select_option(label="One-time")
    page.get_by_role("button", name="Send billing request").click()

    expect(page.get_by_text(f"Billing request sent to {CLIENT_EMAIL}.")).to_be_visible()
    expect(row_of(page, CLIENT_EMAIL)).to_contain_text("Pending")

    # The row's menu copies the payment link (checked against the detail view's below)
    # and resends the email, back on the same listing.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    row_of(page, CLIENT_EMAIL).get_by_role("button", name=re.compile("More options")).click()
    page.get_by_role("button", name="Copy payment link").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()  # it says so
    page.wait_for_function("async () => (await navigator.clipboard.readText()) !== ''")
    copied = page.evaluate("navigator.clipboard.readText()")
    page.keyboard.press("Escape")  # the menu stays open after copying
    expect(page.get_by_role("button", name="Resend email")).to_be_hidden()
    row_of(page, CLIENT_EMAIL).get_by_role("button", name=re.compile("More options")).click()
    page.get_by_role("button", name="Resend email").click()
    expect(page.get_by_text(f"The email to {CLIENT_EMAIL} is queued.")).to_be_visible()
    expect(row_of(page, CLIENT_EMAIL)).to_contain_text("Pending")

    # Its detail view gives the payment link, on site A's own address.
    row_of(page, CLIENT_EMAIL).get_by_role("link", name=CLIENT_EMAIL).click()
    link = page.get_by_label("Payment link").input_value()
    assert re.fullmatch(re.escape(live_server.url) + r"/billing/pay/[\w-]{40,}/", link)
    assert copied == link
    page.evaluate("navigator.clipboard.writeText('')")
    page.get_by_role("button", name="Copy payment link").click()  # the detail view's own
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    expect(page.get_by_role("button", name="Copy payment link")).to_be_visible()  # 2 s later
    page.wait_for_function("async () => (await navigator.clipboard.readText()) !== ''")
    assert page.evaluate("navigator.clipboard.readText()") == link
    listing_url = f"{live_server.url}{reverse('wagtail_client_billing_requests:index')}"

    # The client opens the link, pays on Stripe Checkout, lands on the success URL.
    page.goto(link)
    page.wait_for_url(re.compile(re.escape(stripe.url)))
    expect(page.get_by_text("49.90")).to_be_visible()
    page.get_by_role("button", name="Pay", exact=True).click()
    page.wait_for_url(success_url)
    expect(page.get_by_role("heading", name="Acme Plumbing")).to_be_visible()

    # Paid only once Stripe's signed webhook has reached the live server.
    stripe.wait_for_delivery(
        "checkout.session.completed", url=live_server.url + WEBHOOK, timeout=WEBHOOK_WAIT
    )
    page.goto(listing_url)
    reload_until_status(page, CLIENT_EMAIL, "Paid", timeout=WEBHOOK_WAIT)
    request = BillingRequest.objects.get()
    assert (request.site, request.amount, request.currency) == (acme, 4990, "eur")
    assert link == f"{live_server.url}{request.get_payment_path()}"
    assert request.status == BillingRequest.Status.PAID and not request.late_payment

    # The editor of another site sees none of it.
    other = browser.new_context(locale="en-US").new_page()
    try:
        log_in(other, live_server.url, "bakery-editor")
        other.get_by_role("navigation", name="Main menu").get_by_role(
            "link", name="Client billing", exact=True
        ).click()
        expect(other.get_by_text("Rue Haute Bakery").first).to_be_visible()
        expect(other.get_by_text(CLIENT_EMAIL)).to_have_count(0)
        detail = reverse("wagtail_client_billing_requests:inspect", args=[request.pk])
        assert other.goto(f"{live_server.url}{detail}").status == 404
        assert other.goto(f"{listing_url}?site={acme.pk}").status == 404
        expect(other.get_by_text(CLIENT_EMAIL)).to_have_count(0)
    finally:
        other.context.close()
