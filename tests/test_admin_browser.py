"""The example site's Wagtail admin in a real browser (Debian's chromium via Playwright)."""

import re

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

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
