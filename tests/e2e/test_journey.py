"""The whole product, end to end, in English and in French.

An agency admin connects the client billing account (Stripe's onboarding on the
simulator), gives a client site its own SMTP server and sends a test email, then bills:
a one-time and a monthly request are paid by the client through the links in the emails
that the real django-q2 cluster sent; a third is deleted and its link withdrawn; a fourth
expires at Stripe. Every status comes from Stripe's signed webhooks reaching the real web
server. With ``WCB_SCREENSHOTS=dir`` the English run saves the docs' screenshots.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from . import ui
from .harness import (
    ADMIN_EMAIL,
    SESSION_LIFETIME,
    Stack,
    payment_link,
    retry_assert,
    subject,
)
from .seed import FRENCH_ADMIN, FRENCH_SITE_HOSTNAME

pytestmark = pytest.mark.browser

SITES = {
    "en": ("acme.localhost", "Acme Plumbing", "admin"),
    "fr": (FRENCH_SITE_HOSTNAME, "Rue Haute Bakery", FRENCH_ADMIN),
}
DESCRIPTIONS = {
    "en": {"once": "Website redesign", "monthly": "Care plan", "expired": "Photo shoot"},
    "fr": {"once": "Refonte du site", "monthly": "Maintenance", "expired": "Séance photo"},
}
SUPERUSERS = [ADMIN_EMAIL, f"{FRENCH_ADMIN}@agency.localhost"]  # notified of payments
MAIL_WAIT = 60  # seconds for the cluster to send an email (two busy cores)
WEBHOOK_WAIT = 60  # seconds for a webhook's effect to show in the listing


@pytest.mark.parametrize("language", ["en", "fr"])
def test_connect_bill_pay_delete_expire(stack: Stack, new_page, screenshots, language):
    w, about = ui.WORDS[language], DESCRIPTIONS[language]
    hostname, site_name, username = SITES[language]
    site_url = stack.site_url(hostname)
    shot = screenshots.in_language(language)
    inbox, notifications = stack.site_smtp, stack.default_smtp
    sender, reply_to = f"billing@{hostname}", f"accounts@{hostname}"
    clients = {
        kind: f"{kind}-{language}@client.example"
        for kind in ("once", "monthly", "withdrawn", "expired", "pending")
    }

    admin = new_page()
    ui.log_in(admin, stack, username)

    # Settings -> Client billing account: create it, onboard at "Stripe", ready.
    ui.connect_account(admin, stack, w, shot)

    # The client site's own SMTP server, and a test email through it.
    ui.open_requests(admin, stack, w, site_name)
    # The bakery's site is in the project's language (English); its clients are French.
    client_language = "français" if language == "fr" else ""
    ui.set_custom_smtp(admin, w, site_name, inbox, sender, reply_to, client_language)
    ui.send_test_email(admin, w, ADMIN_EMAIL)
    server = f"{inbox.host}:{inbox.port}"
    expect(
        admin.get_by_text(w["test_sent"].format(email=ADMIN_EMAIL, server=server))
    ).to_be_visible()
    (test_email,) = inbox.wait_for(ADMIN_EMAIL, timeout=10)
    assert subject(test_email) == w["test_subject"].format(site=site_name)
    assert sender in test_email["From"]
    if shot:
        shot(admin, "email-settings.png")

    # A one-time and a monthly billing request.
    ui.open_requests(admin, stack, w, site_name)
    once = ui.Request(clients["once"], w["amount_typed"], description=about["once"])
    ui.add_request(admin, w, once, shot)
    ui.add_request(
        admin,
        w,
        ui.Request(clients["monthly"], "29.00", "monthly", description=about["monthly"]),
    )

    # The client reads each email (sent by the cluster through the site's SMTP server),
    # opens its link, pays on Checkout and lands on the success URL.
    client = new_page("fr-FR" if language == "fr" else "en-US")
    links = {}
    for kind in ("once", "monthly"):
        (email,) = inbox.wait_for(clients[kind], timeout=MAIL_WAIT)
        assert subject(email).startswith(w["subject"].format(site=site_name))
        assert sender in email["From"] and email["Reply-To"] == reply_to
        links[kind] = payment_link(email)
        assert links[kind].startswith(f"{site_url}/billing/pay/")
        ui.pay(client, stack, links[kind], shot if kind == "once" else None)
        client.wait_for_url(f"{site_url}/")
        expect(client.get_by_role("heading", name=site_name)).to_be_visible()

    # Paid once Stripe's webhook has been processed by the web server.
    admin.reload()
    for kind in ("once", "monthly"):
        ui.wait_for_row(admin, clients[kind], w["paid"], timeout=WEBHOOK_WAIT)
    expect(ui.row(admin, clients["once"])).to_contain_text(w["amount_shown"])
    client.goto(links["once"])
    expect(client.get_by_role("heading", name=w["paid_page"])).to_be_visible()
    expect(client.get_by_text(about["once"])).to_be_visible()
    if shot:
        shot(client, "pay-success.png")

    # A third request, deleted in the admin: its link is withdrawn.
    ui.add_request(admin, w, ui.Request(clients["withdrawn"], "120.00"))
    (email,) = inbox.wait_for(clients["withdrawn"], timeout=MAIL_WAIT)
    withdrawn_link = payment_link(email)
    ui.row(admin, clients["withdrawn"]).get_by_role("link", name=clients["withdrawn"]).click()
    admin.get_by_role("link", name=w["delete"], exact=True).click()
    admin.get_by_role("button", name=w["yes_delete"]).click()
    expect(admin.get_by_text(w["deleted_message"])).to_be_visible()
    expect(ui.row(admin, clients["withdrawn"])).to_have_count(0)  # Deleted: hidden by default
    response = client.goto(withdrawn_link)
    assert response is not None and response.status == 410
    expect(client.get_by_role("heading", name=w["withdrawn_page"])).to_be_visible()

    # A fourth request expires at Stripe: in English Stripe expires the session early (its
    # checkout.session.expired event) while a fifth stays pending; in French Stripe's
    # clock passes the session's expiry.
    ui.add_request(admin, w, ui.Request(clients["expired"], "75.00", description=about["expired"]))
    (email,) = inbox.wait_for(clients["expired"], timeout=MAIL_WAIT)
    expired_link = payment_link(email)
    if language == "en":
        ui.add_request(admin, w, ui.Request(clients["pending"], "15.00", "yearly"))
        session_id = ui.checkout_session_of(client, stack, expired_link)
        stack.simulator.expire_session(session_id)
    else:
        stack.simulator.advance_clock(SESSION_LIFETIME + 60)
    admin.reload()
    ui.wait_for_row(admin, clients["expired"], w["expired"], timeout=WEBHOOK_WAIT)

    # The client's link now explains, in the site's language, and offers a new link.
    response = client.goto(expired_link)
    assert response is not None and response.status == 410
    expect(client.get_by_role("heading", name=w["expired_page"])).to_be_visible()
    expect(client.get_by_text(reply_to).first).to_be_visible()
    if shot:
        shot(client, "pay-expired.png")
    client.get_by_role("button", name=w["ask"]).click()
    expect(client.get_by_role("status")).to_contain_text(site_name)
    (asked,) = notifications.wait_for(reply_to, timeout=MAIL_WAIT)
    assert clients["expired"] in subject(asked)

    # Every status in the listing (Deleted shown when asked for).
    admin.goto(f"{stack.url}{ui.REQUESTS}{ui.ALL_STATUSES}")
    ui.wait_for_row(admin, clients["expired"], w["asked"], timeout=WEBHOOK_WAIT)
    expected = {
        "once": w["paid"],
        "monthly": w["paid"],
        "withdrawn": w["deleted"],
        "expired": w["expired"],
    }
    if language == "en":
        expected["pending"] = w["pending"]
    for kind, status in expected.items():
        expect(ui.row(admin, clients[kind])).to_contain_text(status)
    expect(ui.row(admin, clients["once"])).to_contain_text(w["email_sent"])
    if shot:
        shot(admin, "billing-requests-listing.png")

    # The paid request's page: the Stripe events that made it Paid, and its history.
    ui.row(admin, clients["once"]).get_by_role("link", name=clients["once"]).click()
    expect(admin.locator("[data-wcb-stripe-events]")).to_contain_text("checkout.session.completed")
    if shot:
        shot(admin, "billing-request-detail.png")
    admin.get_by_role("link", name=w["history"], exact=True).click()
    expect(admin.locator("#listing-results")).to_contain_text(w["paid"])
    admin.goto(f"{stack.url}{ui.REQUESTS}overview/")
    expect(ui.row(admin, clients["once"])).to_contain_text(site_name)
    if shot:
        shot(admin, "overview.png")
    admin.goto(f"{stack.url}/admin/")
    expect(admin.locator("[data-wcb-latest]")).to_contain_text(clients["once"])
    ui.check_chart(admin)  # drawn in either language (French decimals once hid it)
    if shot:
        shot(admin, "dashboard.png")

    # Each email went out exactly once: one per client, one payment notification per
    # payment to each superuser, one "new link" request to the site.
    def counted() -> None:
        sent = inbox.counts()
        expected_clients = [c for k, c in clients.items() if language == "en" or k != "pending"]
        assert {c: sent.get(c) for c in expected_clients} == dict.fromkeys(expected_clients, 1)
        assert sent.get(ADMIN_EMAIL) == 1  # the test email
        assert notifications.counts() == {**dict.fromkeys(SUPERUSERS, 2), reply_to: 1}

    retry_assert(counted, timeout=MAIL_WAIT)
    # The notifications speak the project's language.
    paid = sorted(subject(message) for message in notifications.to(ADMIN_EMAIL))
    assert [subject.split(" (")[0] for subject in paid] == [
        f"Paid: {clients['monthly']}",
        f"Paid: {clients['once']}",
    ]
    stack.check_alive()
