"""The example site's Wagtail admin in a real browser (Debian's chromium via Playwright)."""

import re

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from tests.factories import make_user
from tests.test_billing_browser import log_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("wagtail_root"),
]


def test_admin_logs_in_and_sees_the_dashboard(live_server, page):
    get_user_model().objects.create_superuser("agency", "agency@example.com", "s3cret-pass!")

    page.goto(f"{live_server.url}/admin/")
    assert "/admin/login/" in page.url
    page.fill("input[name=username]", "agency")
    page.fill("input[name=password]", "wrong password")
    page.click("button[type=submit]")
    expect(page.get_by_text("didn't match")).to_be_visible()

    page.fill("input[name=username]", "agency")
    page.fill("input[name=password]", "s3cret-pass!")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
    expect(page).to_have_title(re.compile("Dashboard"))
    expect(page.get_by_role("heading", name=re.compile("Agency billing demo"))).to_be_visible()


def test_the_sidebar_item_has_its_credit_card_icon(live_server, page):
    """Wagtail has no credit-card icon: ours is registered (``register_icons``) and drawn."""
    make_user("agency", superuser=True)
    log_in(page, live_server.url, "agency")

    item = page.locator("a.sidebar-menu-item__link", has_text="Client billing").first
    expect(item).to_be_visible()
    use = item.locator("svg use")
    assert use.get_attribute("href") == "#icon-wcb-credit-card"
    # The symbol is in the page's icon sprite (loaded by Wagtail) and the item draws it:
    # a card, 16 by 12 (an unknown icon draws nothing: 0 by 0).
    page.wait_for_function("document.getElementById('icon-wcb-credit-card') !== null")
    drawn = use.evaluate("use => { const box = use.getBBox(); return [box.width, box.height]; }")
    assert drawn == [16, 12], drawn
