"""Invoices in a real browser: the agency sets what invoices say, a client pays, the
invoice Stripe made is linked on the request's page and on the client's paid page.

The live server is the client's site (``localhost`` on its port, as in
test_billing_browser); the simulator hosts Checkout and the invoice's PDF and delivers
its signed webhooks to the live server.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from tests.factories import (
    connect_ready_account,
    grant_billing,
    make_site,
    make_user,
    request_details,
)
from tests.test_billing_browser import SECRET, WEBHOOK, WEBHOOK_WAIT, log_in
from wagtail_client_billing import billing
from wagtail_client_billing.models import AgencyBillingSettings, Invoice

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("wagtail_root"),
]


def test_the_agency_sets_invoices_and_the_client_and_editor_get_the_link(
    live_server, page, browser, billing_stripe_settings
):
    stripe = billing_stripe_settings
    acme = make_site("localhost", "Acme Plumbing", port=urlsplit(live_server.url).port)
    connect_ready_account(stripe)
    make_user("agency", agency=True)
    grant_billing(make_user("acme-editor"), acme)

    # The agency's settings: a line Stripe would refuse is named, what was typed stays.
    log_in(page, live_server.url, "agency")
    page.goto(f"{live_server.url}{reverse('wagtail_client_billing_agency:index')}")
    panel = page.get_by_role("region", name="Invoices and receipts")
    expect(panel.get_by_label("Invoice one-time payments")).to_be_checked()
    panel.get_by_label("Invoice footer").fill("Payable on receipt.")
    panel.get_by_label("Invoice fields").fill("VAT number FR12345678901")
    panel.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Line 1 (“VAT number FR12345678901”): write it as")).to_be_visible()
    panel = page.get_by_role("region", name="Invoices and receipts")
    expect(panel.get_by_label("Invoice footer")).to_have_value("Payable on receipt.")
    panel.get_by_label("Invoice fields").fill("VAT number: FR12345678901")
    panel.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Invoice settings saved.")).to_be_visible()
    assert AgencyBillingSettings.objects.get().invoice_custom_fields == "VAT number: FR12345678901"

    # A request is sent; the client pays on Checkout.
    stripe.add_webhook(live_server.url + WEBHOOK, SECRET)
    home = f"{live_server.url}/"
    request = billing.create_request(
        site=acme, details=request_details(success_url=home, cancel_url=home)
    )
    client = browser.new_context(locale="en-US").new_page()
    try:
        client.goto(request.get_payment_url())
        client.wait_for_url(re.compile(re.escape(stripe.url)))
        client.get_by_role("button", name="Pay", exact=True).click()
        client.wait_for_url(home)
        stripe.wait_for_delivery(
            "invoice.paid", url=live_server.url + WEBHOOK, timeout=WEBHOOK_WAIT
        )
        invoice = Invoice.objects.get(billing_request=request)
        at_stripe = stripe.get_object(invoice.stripe_id, "invoice")
        assert at_stripe["footer"] == "Payable on receipt."
        assert at_stripe["custom_fields"] == [{"name": "VAT number", "value": "FR12345678901"}]

        # The client's link, now the paid page, links the invoice.
        stripe.wait_for_delivery(
            "checkout.session.completed", url=live_server.url + WEBHOOK, timeout=WEBHOOK_WAIT
        )
        client.goto(request.get_payment_url())
        expect(client.get_by_text(f"Invoice {invoice.number}:")).to_be_visible()
        with client.expect_popup() as opened:
            client.get_by_role("link", name="download it (PDF)").click()
        assert opened.value.url == at_stripe["invoice_pdf"]
    finally:
        client.context.close()

    # The editor of the site sees it on the request's page, the links opening a new tab.
    page.context.clear_cookies()
    log_in(page, live_server.url, "acme-editor")
    page.goto(
        f"{live_server.url}{reverse('wagtail_client_billing_requests:inspect', args=[request.pk])}"
    )
    invoices = page.get_by_role("table", name="Invoices")
    expect(invoices.get_by_role("row").filter(has_text=invoice.number)).to_contain_text("Paid")
    with page.expect_popup() as opened:
        invoices.get_by_role("link", name="Invoice page and receipt").click()
    assert opened.value.url == at_stripe["hosted_invoice_url"]
