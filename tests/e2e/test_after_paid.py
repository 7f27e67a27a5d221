"""After the payment, end to end, in English and in French: invoices, refunds, and a
subscription the agency manages.

An agency admin connects the client billing account and gives a client site its own SMTP
server (as in test_journey); the client pays a one-time and a monthly request through
the links in the emails. The one-time payment's Stripe invoice shows on the request's
page (its PDF, its hosted page) and on the client's paid page; the admin refunds a part
of it, then the rest. The subscription renews on the simulator's moved clock; then a
renewal fails, the client is told and fixes the card in Stripe's customer portal, and
the admin cancels it at the end of the period. Every change comes from Stripe's signed
webhooks reaching the real web server, every email from the real django-q2 cluster.
With ``WCB_SCREENSHOTS=dir`` the runs save the docs' screenshots.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from . import ui
from .harness import ADMIN_EMAIL, Stack, payment_link, retry_assert, subject, text_of
from .seed import FRENCH_ADMIN, FRENCH_SITE_HOSTNAME

pytestmark = pytest.mark.browser

SITES = {
    "en": ("acme.localhost", "Acme Plumbing", "admin"),
    "fr": (FRENCH_SITE_HOSTNAME, "Rue Haute Bakery", FRENCH_ADMIN),
}
DESCRIPTIONS = {
    "en": {"once": "Website redesign", "monthly": "Care plan"},
    "fr": {"once": "Refonte du site", "monthly": "Maintenance"},
}
SUPERUSERS = [ADMIN_EMAIL, f"{FRENCH_ADMIN}@agency.localhost"]  # the agency's notifications
MAIL_WAIT = 60  # seconds for the cluster to send an email (two busy cores)
WEBHOOK_WAIT = 60  # seconds for a webhook's effect to show on a page
INVOICE_ROWS = "[data-wcb-invoices] tbody tr"


def reload_until(page: Page, check: Callable[[], Any], timeout: float = WEBHOOK_WAIT) -> Any:
    """Reload ``page`` until ``check`` passes (a webhook's effect); its value."""

    def attempt() -> Any:
        page.reload()
        return check()

    return retry_assert(attempt, timeout)


@pytest.mark.parametrize("language", ["en", "fr"])
def test_invoice_refunds_subscription(stack: Stack, new_page, screenshots, language):
    w, about = ui.WORDS[language], DESCRIPTIONS[language]
    hostname, site_name, username = SITES[language]
    site_url = stack.site_url(hostname)
    shot = screenshots.in_language(language)
    inbox, notifications, sim = stack.site_smtp, stack.default_smtp, stack.simulator
    sender, reply_to = f"billing@{hostname}", f"accounts@{hostname}"
    clients = {kind: f"{kind}-{language}@client.example" for kind in ("once", "monthly")}
    overview = f"{stack.url}{ui.REQUESTS}overview/"

    # The agency's account, the site's SMTP server (and, in French, its French clients).
    admin = new_page()
    ui.log_in(admin, stack, username)
    ui.connect_account(admin, stack, w)
    ui.open_requests(admin, stack, w, site_name)
    client_language = "français" if language == "fr" else ""
    ui.set_custom_smtp(admin, w, site_name, inbox, sender, reply_to, client_language)

    # A one-time and a monthly request, each paid by the client through its email's link.
    ui.open_requests(admin, stack, w, site_name)
    ui.add_request(
        admin, w, ui.Request(clients["once"], w["amount_typed"], description=about["once"])
    )
    monthly = ui.Request(
        clients["monthly"], w["monthly_typed"], "monthly", description=about["monthly"]
    )
    ui.add_request(admin, w, monthly)
    client = new_page("fr-FR" if language == "fr" else "en-US")
    links, sessions = {}, {}
    for kind in ("once", "monthly"):
        (email,) = inbox.wait_for(clients[kind], timeout=MAIL_WAIT)
        links[kind] = payment_link(email)
        sessions[kind] = ui.pay(client, stack, links[kind])
        client.wait_for_url(f"{site_url}/")
    admin.reload()
    for kind in ("once", "monthly"):
        ui.wait_for_row(admin, clients[kind], w["paid"], timeout=WEBHOOK_WAIT)

    # 1. The one-time payment's invoice, on the request's page: its number, its PDF (the
    # simulator's real PDF) and its hosted page, which opens in a new tab.
    ui.open_request(admin, clients["once"])
    ui.wait_for_text(admin, "[data-wcb-invoices]", w["invoice_pdf"], timeout=WEBHOOK_WAIT)
    invoice = admin.locator(INVOICE_ROWS)
    expect(invoice).to_have_count(1)
    number = invoice.locator("td").first.inner_text().strip()
    assert re.fullmatch(r"[A-Z0-9]+-\d{4}", number), number
    expect(invoice).to_contain_text(w["amount_shown"])
    pdf_url = invoice.get_by_role("link", name=w["invoice_pdf"]).get_attribute("href")
    hosted_url = invoice.get_by_role("link", name=w["hosted_invoice"]).get_attribute("href")
    assert pdf_url and pdf_url.startswith(sim.url), pdf_url
    pdf = admin.request.get(pdf_url)
    assert pdf.ok and pdf.headers["content-type"].startswith("application/pdf")
    assert pdf.body().startswith(b"%PDF") and number.encode() in pdf.body()
    with admin.expect_popup() as opened:
        invoice.get_by_role("link", name=w["hosted_invoice"]).click()
    hosted = opened.value
    expect(hosted.get_by_role("heading", name=f"Invoice {number}")).to_be_visible()
    expect(hosted.get_by_role("link", name="Download invoice")).to_have_attribute("href", pdf_url)
    hosted.close()

    # Refunds: a part, typed as people write amounts in the language, then the rest (the
    # form starts at what remains). Partially refunded, then Refunded, with the totals.
    status = admin.locator("dd[data-status]")
    refunded = admin.locator("[data-wcb-refunded]")
    ui.refund(admin, w, w["refund_typed"], shot=shot)
    expect(status).to_contain_text(w["partially_refunded"])
    expect(refunded).to_have_text(w["refunded_total"].format(amount=w["refund_shown"]))
    expect(admin.locator("[data-wcb-refund]")).to_have_count(1)
    expect(admin.locator("[data-wcb-refund]")).to_contain_text(w["refund_shown"])
    ui.refund(admin, w, remaining=w["rest_typed"])
    expect(status).to_contain_text(w["refunded"])
    expect(status).not_to_contain_text(w["partially_refunded"])
    expect(refunded).to_have_text(w["refunded_total"].format(amount=w["amount_shown"]))
    expect(admin.locator("[data-wcb-refund]")).to_have_count(2)
    expect(admin.get_by_role("link", name=w["refund"], exact=True)).to_have_count(0)
    if shot:
        shot(admin, "request-refunded.png")

    # The agency is told once per refund, in the project's language (English).
    def refund_notifications() -> None:
        for superuser in SUPERUSERS:
            told = sorted(subject(m) for m in notifications.to(superuser))
            assert [s for s in told if s.startswith("Refunded")] == [
                f"Refunded €10.00: {clients['once']} ({site_name})",
                f"Refunded €39.90: {clients['once']} ({site_name})",
            ], told

    retry_assert(refund_notifications, timeout=MAIL_WAIT)

    # The client's paid page links the invoice: its PDF and its page with the receipt.
    client.goto(links["once"])
    expect(client.get_by_role("heading", name=w["paid_page"])).to_be_visible()
    paid_invoice = client.locator("[data-wcb-invoice]")
    expect(paid_invoice).to_contain_text(w["paid_invoice"].format(number=number))
    expect(paid_invoice.get_by_role("link", name=w["download_pdf"])).to_have_attribute(
        "href", pdf_url
    )
    expect(paid_invoice.get_by_role("link", name=w["see_receipt"])).to_have_attribute(
        "href", hosted_url or ""
    )
    if shot:
        shot(client, "pay-success-invoice.png")

    # 2. The monthly subscription: active, its next payment.
    session = sim.get_object(sessions["monthly"], "checkout.session")
    customer, subscription_id = session["customer"], session["subscription"]
    assert customer.startswith("cus_") and subscription_id.startswith("sub_"), session

    def period_end() -> int:
        subscription = sim.get_object(subscription_id, "subscription")
        return subscription["items"]["data"][0]["current_period_end"]

    ui.open_requests(admin, stack, w, site_name)
    ui.open_request(admin, clients["monthly"])
    ui.wait_for_text(admin, '[data-wcb-subscription="active"]', w["next_payment"])
    expect(admin.locator("[data-wcb-subscription]")).to_contain_text(w["active"])
    next_payment = admin.locator("[data-wcb-next-payment]")
    expect(next_payment).to_contain_text(w["monthly_shown"])
    first_date = next_payment.inner_text()

    # Stripe's clock passes the period's end: it renews, the next payment date moves on,
    # the renewal's invoice joins the first one.
    sim.set_clock(period_end() + 3600)

    def renewed() -> None:
        assert admin.locator("[data-wcb-next-payment]").inner_text() != first_date
        assert admin.locator(INVOICE_ROWS).count() == 2

    reload_until(admin, renewed)
    expect(admin.locator('[data-wcb-subscription="active"]')).to_be_visible()
    if shot:
        shot(admin, "subscription.png")

    # The next renewal fails: past due at Stripe; the client is told, in the site's
    # language, with the link to update the card on the client's site.
    sim.fail_renewals(customer)
    sim.set_clock(period_end() + 3600)
    card_failed = inbox.wait_for(clients["monthly"], count=2, timeout=MAIL_WAIT)[1]
    assert subject(card_failed).startswith(w["card_failed_subject"].format(site=site_name))
    assert w["update_card"] in text_of(card_failed)
    manage_url = ui.manage_link(card_failed)
    assert manage_url.startswith(f"{site_url}/billing/manage/"), manage_url
    assert sim.get_object(subscription_id, "subscription")["status"] == "past_due"
    # The request's page shows it past due, and the overview the subscription at risk,
    # whichever order the renewal's two events came in (the app reads Stripe's word again).
    # (The every-minute task reads the subscription again: up to a minute and a bit.)
    ui.wait_for_text(admin, '[data-wcb-subscription="past_due"]', w["past_due"], 100)
    admin.goto(overview)
    expect(admin.locator("[data-wcb-recurring]")).to_contain_text(w["at_risk"])

    # The client opens the link: Stripe's customer portal, in the client's language, says
    # the last payment failed; "Update payment method" pays what is due.
    client.goto(manage_url)
    client.wait_for_url(re.compile(re.escape(sim.url) + "/p/session/"))
    expect(client.get_by_role("heading", name="Billing")).to_be_visible()
    expect(client.locator("html")).to_have_attribute("lang", language)
    expect(client.get_by_role("alert")).to_contain_text("Your last payment failed")
    expect(client.get_by_test_id("card")).to_contain_text("(declined)")
    if shot:
        shot(client, "customer-portal.png")
    client.get_by_role("button", name="Update payment method", exact=True).click()
    expect(client.get_by_role("status")).to_have_text("Your payment method was updated.")
    expect(client.get_by_test_id("status")).to_have_text("active")

    # Active again in the admin; then the agency cancels it at the end of the period.
    ui.open_requests(admin, stack, w, site_name)
    ui.open_request(admin, clients["monthly"])
    ui.wait_for_text(admin, '[data-wcb-subscription="active"]', w["next_payment"])
    ui.cancel_subscription(admin, w, shot)
    ends = admin.locator("[data-wcb-ends]")
    expect(ends).to_be_visible()
    expect(admin.get_by_text(w["ends_on"], exact=True)).to_be_visible()
    expect(admin.locator("[data-wcb-next-payment]")).to_have_count(0)
    end_date = ends.inner_text().split(" · ")[0].strip()
    canceled = inbox.wait_for(clients["monthly"], count=3, timeout=MAIL_WAIT)[2]
    assert subject(canceled) == w["canceled_subject"].format(site=site_name)
    assert f"{w['stays_active']} {end_date}" in " ".join(text_of(canceled).split())

    # 3. Recurring revenue: the subscription, active until its end, still brings it.
    per_month = w["per_month"].format(amount=w["monthly_shown"])
    admin.goto(overview)
    expect(admin.locator("[data-wcb-recurring]")).to_contain_text(per_month)
    expect(admin.locator("[data-wcb-recurring]")).not_to_contain_text(w["at_risk"])
    if shot:
        shot(admin, "overview-recurring.png")
    admin.goto(f"{stack.url}/admin/")
    expect(admin.locator("[data-wcb-recurring]")).to_contain_text(per_month)

    # Each email went out once: the request, the failed payment, the cancellation to the
    # monthly client; per superuser, two payments, two refunds, one failed renewal.
    def counted() -> None:
        sent = inbox.counts()
        assert {c: sent.get(c) for c in clients.values()} == {
            clients["once"]: 1,
            clients["monthly"]: 3,
        }
        assert notifications.counts() == dict.fromkeys(SUPERUSERS, 5)

    retry_assert(counted, timeout=MAIL_WAIT)
    stack.check_alive()
