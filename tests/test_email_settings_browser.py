"""A site's email settings in a real browser: the SMTP server's fields appear only with
Custom SMTP ticked (Debian's chromium via Playwright)."""

from __future__ import annotations

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from tests.factories import make_user
from tests.test_billing_browser import log_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("wagtail_root"),
]

SMTP_FIELDS = ("host", "port", "username", "password", "security")


def test_smtp_fields_show_only_with_custom_smtp(live_server, page):
    make_user("agency", superuser=True)
    log_in(page, live_server.url, "agency")
    page.goto(live_server.url + reverse("wagtail_client_billing_requests:email_settings"))

    custom = page.get_by_label("Custom SMTP")
    expect(custom).not_to_be_checked()
    for name in SMTP_FIELDS:
        expect(page.locator(f"[name={name}]").first).to_be_hidden()
    expect(page.get_by_label("From", exact=True)).to_be_visible()  # used either way
    # Nothing is marked required (Wagtail marks required fields' labels with an asterisk).
    settings_form = page.locator("form[data-wcb-email-settings]")
    assert settings_form.locator(".w-required-mark:visible").count() == 0

    custom.check()
    for name in SMTP_FIELDS:
        expect(page.locator(f"[name={name}]").first).to_be_visible()
    assert settings_form.locator(".w-required-mark:visible").count() == 1  # Security
    custom.uncheck()
    expect(page.locator("[name=host]")).to_be_hidden()

    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text("saved", exact=False).first).to_be_visible()
