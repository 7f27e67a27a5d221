"""The overview and the dashboard use an index for every filter and ordering (PostgreSQL).

Each test renders the real page with one filter or ordering, captures the SQL it ran
against the billing-request table, and asks PostgreSQL for each statement's plan on a
table of a few thousand rows with fresh statistics. The filtered column must appear in
an index condition (the index does the filtering, not a scan of every row), and a page
of rows must come out of an index in order, with no sort of the whole table.
"""

from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.factories import grant_billing, make_site, make_user
from wagtail_client_billing.models import BillingRequest

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

OVERVIEW = reverse("wagtail_client_billing_requests:overview")
TABLE = BillingRequest._meta.db_table
ROWS = 6000


@pytest.fixture
def sites(db):
    sites = [make_site(f"client{n}.test", f"Client {n}") for n in range(8)]
    now = timezone.now()
    rng = random.Random(7)
    statuses = ["pending", "paid", "paid", "expired", "deleted"]
    rows = []
    for n in range(ROWS):
        status = rng.choice(statuses)
        created = now - timedelta(days=rng.uniform(0, 720))
        rows.append(
            BillingRequest(
                site=rng.choice(sites),
                token=f"tok{n}",
                email=f"client{n}@example.com",
                currency=rng.choice(["eur", "usd", "gbp", "chf", "jpy", "cad"]),
                amount=rng.randint(100, 500_000),
                description=f"Invoice {n}",
                success_url="https://example.com/ok",
                cancel_url="https://example.com/no",
                billing_type=rng.choice(["one_time", "monthly", "yearly"]),
                mode="live" if n % 10 == 0 else "test",
                status=status,
                expires_at=created + timedelta(hours=24),
                paid_at=created + timedelta(hours=2) if status == "paid" else None,
                expired_at=created + timedelta(hours=24) if status == "expired" else None,
            )
        )
    BillingRequest.objects.bulk_create(rows, batch_size=2000)
    # created_at is auto_now_add: spread it over two years as real history would be.
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} SET created_at = expires_at - interval '24 hours'"  # noqa: S608
        )
        cursor.execute(f"ANALYZE {TABLE}")
    return sites


def plans_for(client, url: str) -> list[tuple[str, dict[str, Any]]]:
    """The plan of every statement the page ran against the billing-request table."""
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    plans = []
    for query in captured.captured_queries:
        sql = query["sql"]
        if TABLE not in sql or not sql.lstrip().upper().startswith("SELECT"):
            continue
        with connection.cursor() as cursor:
            # Seq scans are costed out, so a seq scan in the plan means no index could
            # serve the statement at all.
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}")
            [explained] = cursor.fetchone()
            if isinstance(explained, str):
                explained = json.loads(explained)
            plans.append((sql, explained[0]["Plan"]))
    assert plans, f"{url} ran no query on {TABLE}"
    return plans


def nodes(plan: dict[str, Any]):
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def table_indexes() -> dict[str, str]:
    """The table's indexes, each with its predicate if it is partial."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", [TABLE])
        return {name: definition.partition(" WHERE ")[2] for name, definition in cursor.fetchall()}


def index_conditions(plan: dict[str, Any]) -> str:
    """The conditions the table's indexes apply (index, index-only and bitmap scans), a
    partial index's own predicate included (it holds only the rows that match it)."""
    ours = table_indexes()
    return " ".join(
        f"{node.get('Index Cond', '')} {ours[node['Index Name']]}"
        for node in nodes(plan)
        if node.get("Index Name") in ours
    )


def assert_no_seq_scan(sql: str, plan: dict[str, Any]) -> None:
    for node in nodes(plan):
        if node.get("Relation Name") == TABLE:
            assert node["Node Type"] != "Seq Scan", f"no index serves:\n{sql}"


def page_plan(plans: list[tuple[str, dict[str, Any]]]) -> tuple[str, dict[str, Any]]:
    """The statement that fetched the page of rows (a LIMIT, not the paginator's count,
    which has one too: it stops at CappedPaginator.cap)."""
    [page] = [
        (sql, plan)
        for sql, plan in plans
        if "LIMIT" in sql.upper() and not sql.upper().startswith("SELECT COUNT(")
    ]
    return page


def assert_page_from_index(sql: str, plan: dict[str, Any]) -> None:
    """The page comes out of an index in order: no Sort of the billing requests."""
    assert_no_seq_scan(sql, plan)
    sorts = [node for node in nodes(plan) if node["Node Type"] in ("Sort", "Incremental Sort")]
    assert not sorts, f"the page sorts rows instead of reading an index in order:\n{sql}"


@pytest.fixture
def agency_client(client):
    client.force_login(make_user("agency", agency=True))
    return client


def test_overview_default_page_reads_the_newest_rows_from_an_index(sites, agency_client):
    plans = plans_for(agency_client, OVERVIEW)
    assert_page_from_index(*page_plan(plans))
    for sql, plan in plans:
        assert_no_seq_scan(sql, plan)


@pytest.mark.parametrize(
    ("query", "column"),
    [
        ("status=paid", "status"),
        ("status=expired", "status"),
        ("currency=chf", "currency"),
        ("billing_type=yearly", "billing_type"),
        ("mode=live", "mode"),
        ("site={site}", "site_id"),
        ("site={site}&status=pending", "site_id"),
        ("created_at_from={since}", "created_at"),
    ],
)
def test_each_overview_filter_is_served_by_an_index(sites, agency_client, query, column):
    since = (timezone.now() - timedelta(days=10)).date().isoformat()
    url = f"{OVERVIEW}?{query.format(site=sites[3].pk, since=since)}"
    sql, plan = page_plan(plans_for(agency_client, url))
    if column == "created_at":
        # A date range on the ordering column: the index finds the few rows in range,
        # and sorting those few is the cheaper plan.
        assert_no_seq_scan(sql, plan)
    else:
        assert_page_from_index(sql, plan)
    assert column in index_conditions(plan), f"{column} is filtered row by row:\n{sql}"


@pytest.mark.parametrize(
    "ordering", ["email", "-email", "amount", "-amount", "created_at", "status", "-status"]
)
def test_each_overview_ordering_is_served_by_an_index(sites, agency_client, ordering):
    sql, plan = page_plan(plans_for(agency_client, f"{OVERVIEW}?ordering={ordering}"))
    assert_no_seq_scan(sql, plan)
    assert not [n for n in nodes(plan) if n["Node Type"] == "Sort"], sql


def test_totals_filter_by_status_and_date_through_indexes(sites, agency_client):
    plans = plans_for(agency_client, OVERVIEW)
    totals = [(sql, plan) for sql, plan in plans if "GROUP BY" in sql.upper()]
    # Paid this month, pending now, expired this month, recurring revenue.
    assert len(totals) == 4
    for sql, plan in totals:
        assert_no_seq_scan(sql, plan)
        assert "status" in index_conditions(plan), sql
    conditions = " ".join(index_conditions(plan) for _, plan in totals)
    assert "paid_at" in conditions and "expired_at" in conditions
    assert "subscription_status" in conditions  # the live subscriptions' partial index


def test_an_editors_dashboard_reads_their_sites_payments_through_indexes(sites, client):
    editor = make_user("editor")
    grant_billing(editor, sites[0], sites[1])
    client.force_login(editor)
    plans = plans_for(client, reverse("wagtailadmin_home"))
    for sql, plan in plans:
        assert_no_seq_scan(sql, plan)
    paid = [(sql, plan) for sql, plan in plans if "paid_at" in index_conditions(plan)]
    assert paid, "the dashboard's paid totals, latest payments and chart scan every row"
