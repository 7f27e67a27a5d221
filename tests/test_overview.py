"""The agency overview: every site's requests, totals per currency, export, query counts."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.factories import grant_billing, make_user
from wagtail_client_billing import reports
from wagtail_client_billing.models import BillingRequest

pytestmark = pytest.mark.django_db

OVERVIEW = reverse("wagtail_client_billing_requests:overview")
Status = BillingRequest.Status


def make_request(
    site,
    *,
    status="pending",
    currency="eur",
    amount=1000,
    email="c@example.com",
    description="Work",
    paid_days_ago=None,
    created_days_ago=0,
    expired_days_ago=None,
    mode="test",
):
    now = timezone.now()
    return BillingRequest.objects.create(
        site=site,
        mode=mode,
        email=email,
        currency=currency,
        amount=amount,
        description=description,
        success_url="https://example.com/ok",
        cancel_url="https://example.com/no",
        status=status,
        expires_at=now + timedelta(hours=20),
        paid_at=None if paid_days_ago is None else now - timedelta(days=paid_days_ago),
        expired_at=None if expired_days_ago is None else now - timedelta(days=expired_days_ago),
    )


@pytest.fixture
def agency_client(client):
    client.force_login(make_user("agency", agency=True))
    return client


def test_totals_per_currency_mixed_months_and_statuses(sites):
    acme, bakery = sites
    now = timezone.now()
    days_into_month = (now - reports.month_start(now)).days
    make_request(acme, status="paid", amount=5000, paid_days_ago=0)
    make_request(bakery, status="paid", amount=2500, paid_days_ago=0)
    make_request(acme, status="paid", currency="usd", amount=900, paid_days_ago=0)
    make_request(acme, status="paid", amount=7000, paid_days_ago=days_into_month + 3)  # last month
    make_request(acme, status="pending", amount=1200)
    make_request(bakery, status="pending", currency="jpy", amount=5000)
    make_request(acme, status="expired", amount=300, expired_days_ago=0)
    make_request(acme, status="deleted", amount=99999)

    totals = reports.totals(BillingRequest.objects.all())
    paid = {t.currency: (t.amount, t.count) for t in totals["paid_this_month"]}
    pending = {t.currency: (t.amount, t.count) for t in totals["pending"]}
    expired = {t.currency: (t.amount, t.count) for t in totals["expired_this_month"]}
    assert paid == {"eur": (7500, 2), "usd": (900, 1)}
    assert pending == {"eur": (1200, 1), "jpy": (5000, 1)}
    assert expired == {"eur": (300, 1)}


def test_pending_now_counts_only_links_that_can_still_be_paid(agency_client, sites):
    """Past its expiry a Pending request waits minutes for the sweep to expire it: its link
    can no longer be paid, so it is not money the client still owes, on either page."""
    acme, _ = sites
    make_request(acme, status="pending", amount=1200)
    overdue = make_request(acme, status="pending", amount=99900)
    BillingRequest.objects.filter(pk=overdue.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )

    totals = reports.totals(BillingRequest.objects.all())
    assert [(t.currency, t.amount, t.count) for t in totals["pending"]] == [("eur", 1200, 1)]
    page = totals_section(agency_client.get(OVERVIEW).content.decode())
    pending = page[page.index('data-total="pending"') : page.index('data-total="expired')]
    assert "€12.00" in pending and "€999.00" not in pending
    panel = agency_client.get(reverse("wagtailadmin_home")).content.decode()
    panel = panel[panel.index("data-wcb-mode") :]
    assert "€12.00" in panel and "€999.00" not in panel
    # The listing still shows it Pending until the sweep expires it.
    listing = agency_client.get(f"{OVERVIEW}?status=pending").content.decode()
    assert "€999.00" in listing


def test_paid_per_month_covers_twelve_months(sites):
    acme, _ = sites
    make_request(acme, status="paid", amount=5000, paid_days_ago=0)
    make_request(acme, status="paid", amount=1000, paid_days_ago=400)  # too old
    series = reports.paid_per_month(BillingRequest.objects.all())
    assert list(series) == ["eur"]
    assert len(series["eur"]) == 12
    assert series["eur"][-1][1] == 5000
    assert sum(value for _, value in series["eur"]) == 5000


def test_overview_lists_every_site_with_totals(agency_client, sites):
    acme, bakery = sites
    make_request(acme, email="acme-client@example.com", status="paid", paid_days_ago=0)
    make_request(bakery, email="bakery-client@example.com")
    page = agency_client.get(OVERVIEW).content.decode()
    assert "acme-client@example.com" in page and "bakery-client@example.com" in page
    assert "Acme Plumbing" in page and "Rue Haute Bakery" in page
    assert "Paid this month" in page and "€10.00" in page


def test_overview_filters_by_site_status_and_search(agency_client, sites):
    acme, bakery = sites
    make_request(acme, email="one@example.com", description="Logo")
    make_request(
        bakery, email="two@example.com", description="Hosting", status="paid", paid_days_ago=1
    )
    page = agency_client.get(f"{OVERVIEW}?site={bakery.pk}").content.decode()
    assert "two@example.com" in page and "one@example.com" not in page
    page = agency_client.get(f"{OVERVIEW}?status=pending").content.decode()
    assert "one@example.com" in page and "two@example.com" not in page
    page = agency_client.get(f"{OVERVIEW}?q=hosting").content.decode()
    assert "two@example.com" in page and "one@example.com" not in page


def test_export_csv_has_amounts_in_major_units(agency_client, sites):
    acme, bakery = sites
    make_request(acme, email="kwd@example.com", currency="kwd", amount=12340)
    make_request(bakery, email="jpy@example.com", currency="jpy", amount=5000, mode="live")
    response = agency_client.get(f"{OVERVIEW}?export=csv")
    assert response.status_code == 200
    content = (
        b"".join(response.streaming_content).decode()
        if response.streaming
        else (response.content.decode())
    )
    rows = list(csv.DictReader(io.StringIO(content)))
    by_email = {row["Email"]: row for row in rows}
    assert by_email["kwd@example.com"]["Amount"] == "12.340"
    assert by_email["kwd@example.com"]["Currency"] == "KWD"
    assert by_email["jpy@example.com"]["Amount"] == "5000"
    assert by_email["jpy@example.com"]["Site"] == "Rue Haute Bakery"
    assert by_email["jpy@example.com"]["Mode"] == "Live mode"
    assert by_email["kwd@example.com"]["Mode"] == "Test mode"

    live_only = agency_client.get(f"{OVERVIEW}?export=csv&mode=live")
    content = (
        b"".join(live_only.streaming_content).decode()
        if live_only.streaming
        else (live_only.content.decode())
    )
    assert [row["Email"] for row in csv.DictReader(io.StringIO(content))] == ["jpy@example.com"]


def csv_rows(response) -> list[dict[str, str]]:
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return list(csv.DictReader(io.StringIO(content.decode())))


@pytest.mark.parametrize(
    "description",
    ['=HYPERLINK("http://evil.example","Pay")', "+1+2", "-2+3", "@SUM(A1:A9)", "\tTab", "\rCR"],
)
def test_export_csv_never_starts_a_cell_with_a_formula(agency_client, sites, description):
    # CSV injection: a spreadsheet runs a cell starting with = + - @ tab or CR as a
    # formula; the export prefixes it with a quote (OWASP), so it opens as text.
    make_request(sites[0], description=description, email="-x@example.com")
    (row,) = csv_rows(agency_client.get(f"{OVERVIEW}?export=csv"))
    assert row["Description"] == "'" + description
    assert row["Email"] == "'-x@example.com"
    assert row["Amount"] == "10.00"  # numbers are left as they are


def test_export_csv_leaves_ordinary_text_alone(agency_client, sites):
    make_request(sites[0], description="Website, May = 3 pages", email="a@example.com")
    (row,) = csv_rows(agency_client.get(f"{OVERVIEW}?export=csv"))
    assert row["Description"] == "Website, May = 3 pages"
    assert row["Email"] == "a@example.com"


def test_export_xlsx_writes_formula_looking_text_as_text(agency_client, sites):
    import openpyxl

    make_request(sites[0], description="=1+1")
    response = agency_client.get(f"{OVERVIEW}?export=xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(b"".join(response.streaming_content))).active
    cells = [cell for row in sheet.iter_rows() for cell in row if cell.value == "=1+1"]
    assert cells and all(cell.data_type == "s" for cell in cells)


def test_export_xlsx(agency_client, sites):
    make_request(sites[0])
    response = agency_client.get(f"{OVERVIEW}?export=xlsx")
    assert response.status_code == 200
    assert "spreadsheetml" in response["Content-Type"]


def test_site_editors_cannot_open_the_overview(client, sites):
    user = make_user("editor")
    grant_billing(user, sites[0])
    client.force_login(user)
    assert client.get(OVERVIEW).status_code == 403
    assert client.get(f"{OVERVIEW}?export=csv").status_code == 403
    results = reverse("wagtail_client_billing_requests:overview_results")
    assert client.get(results).status_code == 403  # the listing's partial too
    assert OVERVIEW not in client.get(reverse("wagtailadmin_home")).content.decode()


def add_rows(sites, start, count):
    acme, bakery = sites
    BillingRequest.objects.bulk_create(
        [
            BillingRequest(
                site=acme if i % 2 else bakery,
                email=f"c{i}@example.com",
                currency="eur" if i % 3 else "usd",
                amount=1000 + i,
                description="Work",
                success_url="https://example.com/ok",
                cancel_url="https://example.com/no",
                status=["pending", "paid", "expired"][i % 3],
                paid_at=timezone.now() if i % 3 == 1 else None,
                expires_at=timezone.now() + timedelta(hours=1),
                token=f"token-{i}",
            )
            for i in range(start, start + count)
        ]
    )


def test_a_long_listing_counts_up_to_10_000_and_says_so(agency_client, sites):
    """Past 10,000 requests the paginator's count stops (a million cost what 10,000 do);
    the page says "more than", and its last reachable page points to the filters."""
    add_rows(sites, 0, 10_020)  # 10,020 listed, 5,010 a site
    with CaptureQueriesContext(connection) as captured:
        page = agency_client.get(OVERVIEW).content.decode()
    assert "More than 10,000 billing requests" in page and "Page 1 of 400" in page
    assert "data-wcb-capped" not in page  # there are further pages
    counts = [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"].upper()]
    assert any("LIMIT 10001" in sql for sql in counts), counts  # the count reads no further
    last = agency_client.get(f"{OVERVIEW}?p=400").content.decode()
    assert len(re.findall(r"c\d+@example\.com\s*</a>", last)) == 25
    assert "The list stops after 10,000 billing requests: filter or search it" in last
    filtered = agency_client.get(f"{OVERVIEW}?status=pending&status=paid&status=expired")
    assert "There are more than 10,000 matches" in filtered.content.decode()
    french = Client()
    french.force_login(make_user("agence", agency=True, language="fr"))
    page = french.get(f"{OVERVIEW}?p=400").content.decode()
    assert "Plus de 10\xa0000 demandes de facturation" in page
    assert "La liste s'arrête après 10\xa0000 demandes de facturation" in page

    # Below the cap: Wagtail's own exact count, in the site's listing and the overview.
    site_listing = reverse("wagtail_client_billing_requests:index") + f"?site={sites[0].pk}"
    page = agency_client.get(site_listing).content.decode()
    assert "5010 billing requests" in page and "Page 1 of 201" in page
    page = agency_client.get(f"{OVERVIEW}?status=pending").content.decode()
    assert "There are 3,340 matches" in page and "data-wcb-capped" not in page
    assert "More than" not in page


def queries_for(client, url):
    client.get(url)  # warm caches (content types, permissions, sessions)
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_overview_query_count_is_the_same_for_10_and_1000_rows(agency_client, sites):
    add_rows(sites, 0, 10)
    with_10 = queries_for(agency_client, OVERVIEW)
    add_rows(sites, 10, 990)
    with_1000 = queries_for(agency_client, OVERVIEW)
    assert with_10 == with_1000
    assert with_1000 <= 25


def test_dashboard_shows_only_the_editors_sites(client, sites):
    acme, bakery = sites
    make_request(acme, email="acme-payer@example.com", status="paid", amount=4200, paid_days_ago=0)
    make_request(acme, status="pending", amount=1500)
    make_request(
        bakery, email="bakery-payer@example.com", status="paid", amount=9900, paid_days_ago=0
    )
    make_request(bakery, status="pending", currency="gbp", amount=3000)
    user = make_user("acme-editor")
    grant_billing(user, acme)
    client.force_login(user)
    page = client.get(reverse("wagtailadmin_home")).content.decode()
    panel = page[page.index("data-wcb-dashboard") :]
    assert "€42.00" in panel and "€15.00" in panel
    assert "acme-payer@example.com" in panel
    assert "bakery-payer@example.com" not in page
    assert "€99.00" not in page and "£30.00" not in page
    assert "<svg" in panel and "<desc" in panel  # readable without JavaScript


def test_no_dashboard_panel_for_users_who_cannot_bill(client, sites):
    client.force_login(make_user("writer"))
    assert "data-wcb-dashboard" not in client.get(reverse("wagtailadmin_home")).content.decode()


def test_dashboard_query_count_is_the_same_for_10_and_1000_rows(agency_client, sites):
    home = reverse("wagtailadmin_home")
    add_rows(sites, 0, 10)
    with_10 = queries_for(agency_client, home)
    add_rows(sites, 10, 990)
    assert queries_for(agency_client, home) == with_10


def set_active_mode(mode):
    from wagtail_client_billing.models import AgencyBillingSettings

    row = AgencyBillingSettings.load()
    row.active_mode = mode
    row.save()


def totals_section(page: str) -> str:
    start = page.index("data-wcb-totals")
    return page[start : page.index("</section>", start)]


def test_totals_and_dashboard_count_only_the_active_modes_money(agency_client, sites):
    acme, _ = sites
    make_request(acme, email="rehearsal@example.com", status="paid", amount=7700,
                 paid_days_ago=0, mode="test")  # fmt: skip
    make_request(acme, email="real@example.com", status="paid", amount=5000,
                 paid_days_ago=0, mode="live")  # fmt: skip
    make_request(acme, status="pending", amount=300, mode="test")
    home = reverse("wagtailadmin_home")

    set_active_mode("live")
    totals = totals_section(agency_client.get(OVERVIEW).content.decode())
    assert "€50.00" in totals and "€77.00" not in totals and "€3.00" not in totals
    assert "Live mode: test payments are not counted." in totals
    panel = agency_client.get(home).content.decode()
    panel = panel[panel.index("data-wcb-mode") :]
    assert "real@example.com" in panel and "rehearsal@example.com" not in panel
    assert "€77.00" not in panel

    set_active_mode("test")
    page = agency_client.get(OVERVIEW).content.decode()
    totals = totals_section(page)
    assert "€77.00" in totals and "€3.00" in totals and "€50.00" not in totals
    assert "Test mode: only test payments are counted." in totals
    # The listing itself still shows every request, whatever its mode.
    assert "real@example.com" in page and "rehearsal@example.com" in page


def test_both_listings_show_25_requests_a_page(agency_client, sites):
    add_rows(sites, 0, 60)  # 30 a site
    site_listing = reverse("wagtail_client_billing_requests:index") + f"?site={sites[0].pk}"
    for url in (OVERVIEW, site_listing):
        page = agency_client.get(url).content.decode()
        assert len(re.findall(r"c\d+@example\.com\s*</a>", page)) == 25, url


def test_totals_with_nothing_say_no_requests(agency_client, sites):
    page = agency_client.get(OVERVIEW).content.decode()
    assert page.count("No requests") == 3  # paid this month, pending now, expired this month
