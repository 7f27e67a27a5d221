"""Screens that guide (issue 13), as a browser draws them: one colour per status, and
email addresses that never break mid-word (Debian's chromium via Playwright)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from tests.factories import PASSWORD, grant_billing, make_site, make_user
from wagtail_client_billing.models import BillingRequest

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("wagtail_root"),
]

LONG_EMAIL = "accounts.payable.department@a-long-client-company-name.example.com"
TONES = ["pending", "paid", "expired", "deleted", "processing", "failed"]


def make_request(site, email: str, status: str, payment_state: str = "") -> BillingRequest:
    now = timezone.now()
    return BillingRequest.objects.create(
        site=site,
        mode="test",
        email=email,
        currency="eur",
        amount=4990,
        description="Website maintenance",
        success_url="https://acme.test/thanks/",
        cancel_url="https://acme.test/cancel/",
        status=status,
        payment_state=payment_state,
        expires_at=now + timedelta(hours=20),
        paid_at=now if status == "paid" else None,
        expired_at=now if status == "expired" else None,
        deleted_at=now if status == "deleted" else None,
    )


@pytest.fixture
def listing(live_server, page):
    """An editor of Acme on its listing, which holds one request of each status."""
    acme = make_site("acme.test", "Acme Plumbing")
    grant_billing(make_user("acme-editor"), acme)
    make_request(acme, "pending@example.com", "pending")
    make_request(acme, "paid@example.com", "paid")
    make_request(acme, "expired@example.com", "expired")
    make_request(acme, "deleted@example.com", "deleted")
    make_request(acme, "processing@example.com", "pending", payment_state="processing")
    make_request(acme, "failed@example.com", "pending", payment_state="failed")
    make_request(acme, LONG_EMAIL, "pending")
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("input[name=username]", "acme-editor")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
    index = reverse("wagtail_client_billing_requests:index")
    page.goto(f"{live_server.url}{index}?site={acme.pk}&status=" + "&status=".join(TONES[:4]))
    return page


def test_each_status_has_its_own_colour_from_wagtails_status_tag(listing):
    colours = {}
    for tone in TONES:
        tag = listing.get_by_role("row").filter(has_text=f"{tone}@example.com").locator(".w-status")
        expect(tag).to_have_count(1)
        expect(tag).to_have_class(f"w-status w-status--label wcb-status wcb-status--{tone}")
        colours[tone] = tag.evaluate(
            "tag => { const s = getComputedStyle(tag); return [s.backgroundColor, s.color]; }"
        )
    # Six statuses, six different colours (background and text together).
    assert len({tuple(colour) for colour in colours.values()}) == len(TONES), colours
    # Wagtail's label shape (a pill), not its plain grey tag.
    radius = listing.locator(".wcb-status--paid").evaluate(
        "tag => getComputedStyle(tag).borderTopLeftRadius"
    )
    assert radius != "2px", radius


def test_an_email_address_never_breaks_mid_word(listing):
    listing.set_viewport_size({"width": 1024, "height": 800})
    link = listing.get_by_role("link", name=LONG_EMAIL)
    expect(link).to_be_visible()
    # One line (a link broken over two lines has two boxes), as tall as a short address's.
    short = listing.get_by_role("link", name="paid@example.com")
    assert link.evaluate("a => a.getClientRects().length") == 1
    assert abs(link.bounding_box()["height"] - short.bounding_box()["height"]) < 2
