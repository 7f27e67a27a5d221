"""The admin in French in a real browser: what a French agency sees drawn, not only said."""

from __future__ import annotations

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.factories import connect_ready_account, make_site, make_user, request_details
from tests.test_billing_browser import log_in
from wagtail_client_billing import billing
from wagtail_client_billing.models import BillingRequest

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("wagtail_root"),
]


def paid(site, amount: int, months_ago: int) -> None:
    """A request paid ``months_ago`` months back (the chart reads what is stored)."""
    request = billing.create_request(site=site, details=request_details(amount=amount))
    now = timezone.now()
    month = now.year * 12 + now.month - 1 - months_ago
    when = now.replace(year=month // 12, month=month % 12 + 1, day=1, hour=12)
    BillingRequest.objects.filter(pk=request.pk).update(
        status=BillingRequest.Status.PAID, paid_at=when
    )


def test_the_dashboard_chart_draws_its_bars_in_french(live_server, page, billing_stripe_settings):
    acme = make_site("acme.test", "Acme Plumbing")
    connect_ready_account(billing_stripe_settings)
    paid(acme, 12000, months_ago=0)
    paid(acme, 4990, months_ago=5)
    make_user("agence", superuser=True, language="fr")

    log_in(page, live_server.url, "agence")
    chart = page.locator("[data-wcb-dashboard] ~ figure svg")
    expect(chart).to_be_visible()
    bars = chart.locator("rect")
    expect(bars).to_have_count(12)
    # Every coordinate is a number the browser reads ("442,0" is none: nothing drawn).
    attributes = bars.evaluate_all(
        "rects => rects.map(r => ['x', 'y', 'width', 'height'].map(a => r.getAttribute(a)))"
    )
    for values in attributes:
        for value in values:
            assert value.replace(".", "", 1).isdigit(), attributes
    # Drawn with their real size: this month's bar (the tallest) and five months ago.
    heights = bars.evaluate_all("rects => rects.map(r => r.getBBox().height)")
    widths = bars.evaluate_all("rects => rects.map(r => r.getBBox().width)")
    assert heights[-1] == max(heights) > heights[-6] > 0, heights
    assert all(width > 20 for width in widths), widths
    assert heights[-6] == pytest.approx(heights[-1] * 4990 / 12000, abs=0.2)
    # The months as French abbreviates them: juin and juillet are not both "Jui".
    labels = chart.locator("text").evaluate_all("texts => texts.map(t => t.textContent)")
    assert len(set(labels)) == 12, labels
    assert "juin" in labels and "juil." in labels, labels


# The page's title (the header's last breadcrumb), if a box that clips it is narrower.
TITLE_CUT = """title => {
    const box = title.getBoundingClientRect();
    for (let parent = title.parentElement; parent; parent = parent.parentElement) {
        if (getComputedStyle(parent).overflowX === "visible") continue;
        const frame = parent.getBoundingClientRect();
        if (box.right > frame.right + 1 || box.left < frame.left - 1) {
            return `${title.textContent.trim()}: ${box.width}px shown in ${frame.width}px`;
        }
    }
    return null;
}"""


def test_french_page_titles_are_not_cut_at_1280_pixels(live_server, page, billing_stripe_settings):
    acme = make_site("acme.test", "Acme Plumbing")
    connect_ready_account(billing_stripe_settings)
    request = billing.create_request(site=acme, details=request_details())
    make_user("agence", superuser=True, language="fr")
    page.set_viewport_size({"width": 1280, "height": 800})
    log_in(page, live_server.url, "agence")
    cut = {}
    for path in (
        f"/admin/client-billing/requests/?site={acme.pk}",
        f"/admin/client-billing/requests/new/?site={acme.pk}",
        f"/admin/client-billing/requests/inspect/{request.pk}/",
        f"/admin/client-billing/requests/history/{request.pk}/",
        "/admin/client-billing/requests/overview/",
        f"/admin/client-billing/requests/email-settings/?site={acme.pk}",
        "/admin/client-billing/events/",
    ):
        page.goto(live_server.url + path)
        title = page.locator("header nav ol > li:last-child")
        expect(title).to_be_visible()
        problem = title.evaluate(TITLE_CUT)
        if problem:
            cut[path] = problem
    assert cut == {}
