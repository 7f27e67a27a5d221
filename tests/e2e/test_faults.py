"""When Stripe, the network and the SMTP server misbehave, nothing is lost or doubled.

The same real processes as the journey; the simulator injects Stripe's failures (500s,
a request that hangs past the app's timeout, webhooks dropped or sent twice) and the
client site's SMTP server goes down for a while. The editor sees a clear message and
keeps what was typed; once the faults stop, every request ends in the right status
(through retries, the webhook's idempotency and the every-minute reconciliation), and
every email went out exactly once, counted per recipient on the SMTP servers.
"""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from wagtail_client_billing.mail.outbox import RETRY_DELAYS

from . import ui
from .harness import (
    ADMIN_EMAIL,
    SESSION_LIFETIME,
    STRIPE_TIMEOUT,
    Stack,
    payment_link,
    pending_faults,
    wait_until,
)
from .seed import FRENCH_ADMIN

pytestmark = pytest.mark.browser

SITE = ("acme.localhost", "Acme Plumbing")
SUPERUSERS = [ADMIN_EMAIL, f"{FRENCH_ADMIN}@agency.localhost"]
SESSIONS = "/v1/checkout/sessions"
COMPLETED = "checkout.session.completed"
MAIL_WAIT = 60
WEBHOOK_WAIT = 60
# django-q2 looks at its schedules every 30 s and the app's runs every minute.
SCHEDULE_WAIT = 150
RETRY_DELAY = RETRY_DELAYS[0].total_seconds()  # before a failed email's second attempt


def deliveries_of(stack: Stack, event_type: str) -> list[dict]:
    return [d for d in stack.simulator.deliveries(event_type) if d["url"] == stack.webhook_url]


def test_stripe_webhook_and_smtp_faults(stack: Stack, new_page):
    w = ui.WORDS["en"]
    hostname, site_name = SITE
    inbox, notifications, sim = stack.site_smtp, stack.default_smtp, stack.simulator
    clients = {
        kind: f"{kind}@client.example"
        for kind in ("dropped", "smtp-down", "stripe-500", "stripe-timeout", "after")
    }
    admin = new_page()
    client = new_page()
    ui.log_in(admin, stack, "admin")

    # Stripe answers 500 to the request and to the SDK's two retries: the agency admin
    # is told, the form keeps what was typed, and the next try works.
    sim.fail_next("POST", "/v1/accounts", times=3)
    admin.get_by_role("button", name=w["settings"], exact=True).click()
    admin.get_by_role("link", name=w["account_menu"], exact=True).click()
    admin.get_by_role("link", name=w["create_account"]).click()
    ui.field(admin, w["country"]).select_option(label=w["country_name"])
    admin.get_by_label(w["privacy"]).fill("https://agency.example/privacy")
    admin.get_by_label(w["terms"]).fill("https://agency.example/terms")
    admin.get_by_role("button", name=w["connect"], exact=True).click()
    expect(admin.get_by_role("alert")).to_contain_text("Stripe had a problem")
    expect(admin.get_by_label(w["privacy"])).to_have_value("https://agency.example/privacy")
    assert not pending_faults(stack)  # all three 500s were served
    admin.get_by_role("button", name=w["connect"], exact=True).click()
    ui.finish_onboarding(admin, stack, w)
    ui.open_requests(admin, stack, w, site_name)
    ui.set_custom_smtp(admin, w, site_name, inbox, f"billing@{hostname}", f"accounts@{hostname}")

    # The site's SMTP server goes down: the test email says why it failed, and a new
    # request's email waits in the queue with the reason, to be retried.
    inbox.down()
    ui.send_test_email(admin, w, ADMIN_EMAIL)
    expect(admin.get_by_text(w["test_failed"])).to_contain_text("connection refused")
    ui.open_requests(admin, stack, w, site_name)
    ui.add_request(admin, w, ui.Request(clients["smtp-down"], "10.00"))
    ui.row(admin, clients["smtp-down"]).get_by_role("link", name=clients["smtp-down"]).click()
    detail_url = admin.url

    def email_error() -> list[str]:
        admin.goto(detail_url)
        return admin.locator("[data-email-error]").all_text_contents()

    (error,) = wait_until(email_error, timeout=MAIL_WAIT, what="the failed email's reason")
    failed_at = time.monotonic()  # the retry is due a minute after the failure
    assert "connection refused" in error
    expect(admin.locator("[data-email-status]")).to_contain_text(w["queued"])
    ui.open_requests(admin, stack, w, site_name)
    expect(ui.row(admin, clients["smtp-down"])).to_contain_text(w["queued"])
    inbox.up()  # back; the email waits for its retry time

    # A webhook that never comes: the client paid, the request stays Pending...
    ui.add_request(admin, w, ui.Request(clients["dropped"], "18.00"))
    (email,) = inbox.wait_for(clients["dropped"], timeout=MAIL_WAIT)
    # Paying sends the invoice's invoice.created, .finalized, .paid, then the session's
    # checkout.session.completed: all four are lost.
    sim.drop_next_webhooks(4)
    session_id = ui.pay(client, stack, payment_link(email))
    wait_until(
        lambda: [d for d in deliveries_of(stack, COMPLETED) if d["fault"] == "dropped"],
        timeout=WEBHOOK_WAIT,
        what="the dropped delivery",
    )
    admin.reload()
    expect(ui.row(admin, clients["dropped"])).to_contain_text(w["pending"])
    # ... until the app asks Stripe: the reconciliation (in the every-minute schedule)
    # reads the requests still pending an hour after they were made. An hour passes for
    # the app: the request's creation time moves back. The rest of the test runs while
    # the schedule comes round (and the failed email's retry time comes).
    stack.shell(
        "from datetime import timedelta; from django.db.models import F; "
        "from wagtail_client_billing.models import BillingRequest; "
        f"print(BillingRequest.objects.filter(checkout_session_id={session_id!r})"
        ".update(created_at=F('created_at') - timedelta(hours=2)))",
        name="an-hour-later",
    )

    # Creating a request while Stripe answers 500 three times: a clear message, nothing
    # saved, the form as typed. One 500 more is absorbed by the SDK's retry.
    typed = ui.Request(clients["stripe-500"], "42.00", description="Audit")
    sim.fail_next("POST", SESSIONS, times=3)
    ui.open_add_form(admin, w)
    ui.fill_request(admin, w, typed)
    admin.get_by_role("button", name=w["send"]).click()
    expect(admin.get_by_role("alert")).to_contain_text("Stripe had a problem")
    expect(admin.get_by_role("alert")).to_contain_text("Nothing was changed")
    expect_typed(admin, w, typed)
    assert not pending_faults(stack)
    sim.fail_next("POST", SESSIONS, times=1)
    admin.get_by_role("button", name=w["send"]).click()
    expect(admin.get_by_text(w["sent"].format(email=typed.email))).to_be_visible()
    assert not pending_faults(stack)

    # Stripe takes longer than the app waits: a message, nothing listed, the form as
    # typed; Stripe makes that session anyway, and once Stripe is fast again the same
    # form goes through, once, with that very session (its idempotency key comes from
    # the form's nonce): one client, one session.
    typed = ui.Request(clients["stripe-timeout"], "33.00", description="Hosting")
    hang = STRIPE_TIMEOUT + 4
    sim.hang_next("POST", SESSIONS, times=1, seconds=hang)
    ui.open_add_form(admin, w)
    ui.fill_request(admin, w, typed)
    started = time.monotonic()
    admin.get_by_role("button", name=w["send"]).click()
    expect(admin.get_by_role("alert")).to_contain_text("try again", timeout=(hang + 30) * 1000)
    expect_typed(admin, w, typed)
    time.sleep(max(0, hang + 1 - (time.monotonic() - started)))
    admin.get_by_role("button", name=w["send"]).click()
    expect(admin.get_by_text(w["sent"].format(email=typed.email))).to_be_visible()
    expect(ui.row(admin, typed.email)).to_have_count(1)

    # A webhook sent twice: Paid once, one payment notification.
    (email,) = inbox.wait_for(clients["stripe-500"], timeout=MAIL_WAIT)
    sim.duplicate_next_webhooks(4)  # the invoice's three events and the session's
    ui.pay(client, stack, payment_link(email))
    ui.wait_for_row(admin, clients["stripe-500"], w["paid"], timeout=WEBHOOK_WAIT)
    duplicated = [d for d in deliveries_of(stack, COMPLETED) if d["fault"] != "dropped"]
    assert [(d["status"], d["fault"]) for d in duplicated][-2:] == [
        (200, None),
        (200, "duplicate"),
    ]

    # The reconciliation found the dropped payment.
    ui.wait_for_row(admin, clients["dropped"], w["paid"], timeout=SCHEDULE_WAIT)

    # Once the failed email is due again, it goes out with the site's next email (or the
    # schedule's sweep of due emails, whichever comes first): once, like the new one.
    time.sleep(max(0, failed_at + RETRY_DELAY + 1 - time.monotonic()))
    ui.add_request(admin, w, ui.Request(clients["after"], "12.00"))
    (email,) = inbox.wait_for(clients["smtp-down"], timeout=MAIL_WAIT)
    inbox.wait_for(clients["after"], timeout=MAIL_WAIT)
    ui.pay(client, stack, payment_link(email))
    ui.wait_for_row(admin, clients["smtp-down"], w["paid"], timeout=WEBHOOK_WAIT)

    # The requests nobody paid expire at Stripe (its clock passes their expiry); the
    # request that timed out had no second session made for it, so none is left over.
    sim.advance_clock(SESSION_LIFETIME + 60)
    ui.wait_for_row(admin, clients["after"], w["expired"], timeout=WEBHOOK_WAIT)
    ui.wait_for_row(admin, clients["stripe-timeout"], w["expired"], timeout=WEBHOOK_WAIT)
    expired = sim.events("checkout.session.expired")
    assert len(expired) == 2  # the two requests' sessions, and no orphan
    paid = ("dropped", "smtp-down", "stripe-500")
    for kind, address in clients.items():
        expect(ui.row(admin, address)).to_contain_text(w["paid" if kind in paid else "expired"])
        expect(ui.row(admin, address)).to_contain_text(w["email_sent"])

    # Each client's email once (the failed test email never), each payment notified
    # once to each superuser.
    def counted() -> None:
        assert inbox.counts() == dict.fromkeys(clients.values(), 1)
        assert notifications.counts() == dict.fromkeys(SUPERUSERS, len(paid))

    wait_until(lambda: _passes(counted), timeout=MAIL_WAIT, what="the notifications")
    time.sleep(2)  # nothing more arrives
    counted()
    stack.check_alive()


def expect_typed(page, w, typed: ui.Request) -> None:
    """The add form still holds what the editor typed."""
    expect(ui.field(page, w["email"])).to_have_value(typed.email)
    expect(ui.field(page, w["amount"])).to_have_value(typed.amount)
    expect(ui.field(page, w["description"])).to_have_value(typed.description)
    expect(ui.field(page, w["currency"])).to_have_value(typed.currency)
    expect(ui.field(page, w["billing_type"])).to_have_value(typed.billing_type)


def _passes(check) -> bool:
    try:
        check()
    except AssertionError:
        return False
    return True
