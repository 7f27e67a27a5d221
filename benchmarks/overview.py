"""The agency overview page against a bare SQL query of the same page of rows.

    python benchmarks/overview.py [--sizes N ...] [--quick] [--repeat R]

Uses ``DATABASE_URL`` (PostgreSQL) if set, else a temporary SQLite file. Either way it
creates and migrates a fresh database of its own (``<name>_overview`` on PostgreSQL,
dropped at the end; a copy of ``run.py``'s template, see ``bench_database.py``) and
never touches the one ``DATABASE_URL`` names.

For each size (100, 10,000 and 100,000 billing requests; ``--quick``: the first two) the
table is grown to that many rows, spread over five sites, five currencies, three billing
types, every status and a year of creation dates, and the overview
(``/admin/client-billing/requests/overview/``) is rendered through the real Django view
as a superuser, with ``django.test.Client``: session, middleware, filters, pagination,
the totals above the listing and the template. The baseline is one bare SQL ``SELECT``
of the same 25 rows (same filter, ordering and ``LIMIT``) joined with the site's name.
The same for one filtered page (one site, Pending). The number of SQL queries per page
must not grow with the table: the benchmark fails if it does.

To show where a page's time goes, two more timings: the page's own queries replayed
bare (as it sent them, every row fetched), and ``reports.totals()`` alone (the three
aggregates per currency above the listing). On PostgreSQL it prints the ``EXPLAIN``
of the listing and count queries at the largest size (SQLite: ``EXPLAIN QUERY PLAN``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SIZES = [100, 10_000, 100_000]
QUICK_SIZES = [100, 10_000]
OVERVIEW = "/admin/client-billing/requests/overview/"
PAGE_SIZE = 25  # IndexView.paginate_by
SITES = [
    ("acme.test", "Acme Plumbing"),
    ("bakery.test", "Rue Haute Bakery"),
    ("cycles.test", "Cycles Martin"),
    ("dental.test", "Dental Studio"),
    ("eco.test", "Eco Garden"),
]
CURRENCIES = ["eur", "usd", "gbp", "jpy", "chf"]
# Out of every 20 requests: 6 pending, 8 paid, 4 expired, 2 deleted.
STATUSES = ["pending"] * 6 + ["paid"] * 8 + ["expired"] * 4 + ["deleted"] * 2
BILLING_TYPES = ["one_time", "one_time", "monthly", "yearly"]
YEAR = 365 * 86400


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", help=f"table sizes (default {DEFAULT_SIZES})"
    )
    parser.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES} (CI)")
    parser.add_argument("--repeat", type=int, help="pages timed per size (default 15; quick 5)")
    args = parser.parse_args(argv)
    args.sizes = sorted(args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES))
    args.repeat = args.repeat or (5 if args.quick else 15)
    return args


def describe_database() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT sqlite_version()")
            return f"SQLite {cursor.fetchone()[0]} (temporary file, WAL)"
        cursor.execute("SHOW server_version")
        return f"PostgreSQL {cursor.fetchone()[0]}"


def make_sites() -> list[Any]:
    from tests.factories import make_site

    return [make_site(hostname, name) for hostname, name in SITES]


def make_agency_client() -> Any:
    """A ``django.test.Client`` logged in as an agency admin (a Wagtail superuser)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    user = get_user_model().objects.create_superuser("agency", "agency@agency.test", "unused")
    client = Client()
    client.force_login(user)
    return client


def grow(sites: list[Any], start: int, stop: int, now: Any) -> None:
    """Insert requests number ``start`` to ``stop - 1`` (bulk), spread over sites and time."""
    from django.db import connection

    from wagtail_client_billing.models import BillingRequest

    def request(number: int) -> BillingRequest:
        # A deterministic scatter over the last year (unique: the factor is prime to it).
        created = now - timedelta(seconds=(number * 7_919_993) % YEAR)
        status = STATUSES[(number * 7) % len(STATUSES)]
        return BillingRequest(
            created_at=created,
            site=sites[number % len(sites)],
            email=f"client{number}@example.com",
            currency=CURRENCIES[(number // len(sites)) % len(CURRENCIES)],
            amount=1000 + (number * 37) % 90_000,
            description=f"Website maintenance #{number}",
            success_url="https://client.example/thanks/",
            cancel_url="https://client.example/cancel/",
            billing_type=BILLING_TYPES[(number // 25) % len(BILLING_TYPES)],
            status=status,
            mode="test",
            checkout_session_id=f"cs_test_overview_{number}",
            checkout_url=f"https://checkout.stripe.test/c/pay/cs_test_overview_{number}",
            expires_at=created + timedelta(days=1),
            paid_at=created + timedelta(hours=2) if status == "paid" else None,
            expired_at=created + timedelta(days=1) if status == "expired" else None,
            deleted_at=created + timedelta(hours=1) if status == "deleted" else None,
        )

    # created_at is auto_now_add: bulk_create would stamp every row with this instant.
    # Seeding history, the benchmark lets it keep the dates given (for the insert only).
    created_at = BillingRequest._meta.get_field("created_at")
    batch = 5000
    created_at.auto_now_add = False
    try:
        for first in range(start, stop, batch):
            BillingRequest.objects.bulk_create(
                [request(number) for number in range(first, min(first + batch, stop))],
                batch_size=batch,
            )
    finally:
        created_at.auto_now_add = True
    table = BillingRequest._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f'VACUUM ANALYZE "{table}"')
        else:
            cursor.execute("ANALYZE")


def bare_page_sql(*, filtered: bool) -> str:
    """The same page of rows, written by hand: filter, order, LIMIT, the site's name."""
    from wagtail.models import Site

    from wagtail_client_billing.models import BillingRequest

    table, sites = BillingRequest._meta.db_table, Site._meta.db_table
    where = 'r."site_id" = %s AND r."status" = %s' if filtered else 'r."status" <> %s'
    return (
        f'SELECT r.*, s."site_name" FROM "{table}" r '
        f'INNER JOIN "{sites}" s ON s."id" = r."site_id" '
        f'WHERE {where} ORDER BY r."created_at" DESC LIMIT {PAGE_SIZE}'
    )


def listing_sql(client: Any, url: str) -> tuple[list[str], str, str]:
    """The page's statements, and the SQL of its listing query and of its count."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from wagtail_client_billing.models import BillingRequest

    table = BillingRequest._meta.db_table
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    if response.status_code != 200:
        raise SystemExit(f"GET {url} answered {response.status_code}")
    statements = [query["sql"] for query in captured.captured_queries]
    listing = [sql for sql in statements if f'FROM "{table}"' in sql and "LIMIT" in sql]
    count = [sql for sql in statements if f'FROM "{table}"' in sql and "SUM(" not in sql]
    count = [sql for sql in count if sql.lstrip().upper().startswith("SELECT COUNT(")]
    return statements, (listing[0] if listing else ""), (count[0] if count else "")


def explain(sql: str, params: list[Any] | None = None) -> list[str]:
    """The query plan: PostgreSQL's EXPLAIN, SQLite's EXPLAIN QUERY PLAN."""
    from django.db import connection

    if not sql:
        return []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"EXPLAIN {sql}", params)
            return [row[0] for row in cursor.fetchall()]
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        return [row[-1] for row in cursor.fetchall()]


def plan_summary(plan: list[str]) -> str:
    """The top node and every scan, e.g. "Limit <- Index Scan using wcb_req_created"."""
    if not plan:
        return ""
    nodes = [plan[0].split("  (")[0].strip()]
    for line in plan[1:]:
        node = line.strip().removeprefix("->").split("  (")[0].strip()
        if any(word in node for word in ("Scan", "Sort", "Unique", "SCAN", "SEARCH", "TEMP")):
            nodes.append(node)
    return " <- ".join(nodes)


def measure_size(
    client: Any, site: Any, size: int, repeat: int, *, filtered: bool
) -> dict[str, Any]:
    """Time one page, its bare query and the totals at the current size (medians)."""
    from django.db import connection

    from wagtail_client_billing import reports
    from wagtail_client_billing.models import BillingRequest

    url = f"{OVERVIEW}?site={site.pk}&status=pending" if filtered else OVERVIEW
    sql = bare_page_sql(filtered=filtered)
    params: list[Any] = [site.pk, "pending"] if filtered else ["deleted"]
    base = BillingRequest.objects.select_related("site")
    if filtered:
        base = base.filter(site=site)
        listed = base.filter(status="pending").count()
    else:
        listed = base.exclude(status="deleted").count()
    latest: dict[str, Any] = {}
    client.get(url)  # warm caches (content types, ...) before counting the queries
    statements, listing, count = listing_sql(client, url)
    selects = [sql for sql in statements if sql.lstrip().upper().startswith("SELECT")]

    def page() -> None:
        response = client.get(url)
        if response.status_code != 200:
            raise SystemExit(f"GET {url} answered {response.status_code}")
        latest["page"] = response.content

    def bare() -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
            email = [column[0] for column in cursor.description].index("email")
        if len(rows) != min(PAGE_SIZE, listed):
            raise SystemExit(f"the bare query returned {len(rows)} rows, not {PAGE_SIZE}")
        latest["bare"] = [row[email] for row in rows]

    def replay() -> None:
        # The page's own statements as it sent them (values inlined), fetched in full.
        with connection.cursor() as cursor:
            for statement in selects:
                cursor.execute(statement)
                cursor.fetchall()

    def totals() -> None:
        reports.totals(base)

    timings: dict[str, list[float]] = {"page": [], "bare": [], "replay": [], "totals": []}
    calls = {"page": page, "bare": bare, "replay": replay, "totals": totals}
    for call in calls.values():
        call()  # warm-up
    # Interleaved, so that a burst of load on the (shared) machine hits every side alike.
    for _ in range(repeat):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            timings[name].append(time.perf_counter() - started)
    check_same_page(latest["page"], latest["bare"])
    page_s, bare_s = statistics.median(timings["page"]), statistics.median(timings["bare"])
    return {
        "size": size,
        "filtered": filtered,
        "url": url,
        "rows_listed": listed,
        "queries": len(statements),
        "sql_s": statistics.median(timings["replay"]),
        "page_s": page_s,
        "bare_s": bare_s,
        "totals_s": statistics.median(timings["totals"]),
        "ratio": page_s / bare_s if bare_s else None,
        "plan": explain(listing),
        "bare_plan": explain(sql, params),
        "count_plan": explain(count),
        "distinct": listing.lstrip().upper().startswith("SELECT DISTINCT"),
    }


def check_same_page(content: bytes, emails: list[str]) -> None:
    """The page lists the bare query's rows (their emails), in the same order."""
    positions = [content.find(email.encode()) for email in emails]
    if -1 in positions or positions != sorted(positions):
        raise SystemExit("the overview page does not list the bare query's rows in its order")


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    from django.utils import timezone

    sites = make_sites()
    client = make_agency_client()
    now = timezone.now()
    results: list[dict[str, Any]] = []
    current = 0
    for size in args.sizes:
        started = time.perf_counter()
        grow(sites, current, size, now)
        current = size
        print(f"  {size:,} rows inserted in {time.perf_counter() - started:.1f} s", flush=True)
        for filtered in (False, True):
            results.append(measure_size(client, sites[0], size, args.repeat, filtered=filtered))
    for filtered in (False, True):
        counts = {r["size"]: r["queries"] for r in results if r["filtered"] == filtered}
        if len(set(counts.values())) != 1:
            kind = "filtered page" if filtered else "page"
            raise SystemExit(f"the overview {kind}'s query count grows with the table: {counts}")
    return results


def row(result: dict[str, Any], database: str) -> dict[str, Any]:
    """One line of run.py's table."""
    kind = "filtered (site + Pending)" if result["filtered"] else "all sites"
    return {
        "benchmark": "overview",
        "measured": f"overview page, {kind}",
        "baseline": f"bare SQL SELECT of the {PAGE_SIZE} rows",
        "time_s": result["page_s"],
        "baseline_s": result["bare_s"],
        "ratio": result["ratio"],
        "notes": (
            f"{result['size']:,} rows; {result['page_s'] * 1000:.1f} ms/page vs "
            f"{result['bare_s'] * 1000:.2f} ms; {result['queries']} queries/page "
            f"(together {result['sql_s'] * 1000:.1f} ms; totals {result['totals_s'] * 1000:.1f} ms)"
            + ("; SELECT DISTINCT" if result["distinct"] else "")
        ),
        "size": result["size"],
        "queries": result["queries"],
        "totals_s": result["totals_s"],
        "plan": plan_summary(result["plan"]),
        "database": database,
    }


def report(results: list[dict[str, Any]], database: str, repeat: int) -> None:
    print(f"\nAgency overview on {database}, median of {repeat} page(s) per line")
    print(
        f"  {'rows':>8}  {'page':26}  {'page ms':>8}  {'bare ms':>8}  {'ratio':>7}  "
        f"{'queries':>7}  {'SQL ms':>7}  {'totals ms':>9}"
    )
    for result in results:
        kind = "filtered: 1 site, Pending" if result["filtered"] else "all sites (default)"
        print(
            f"  {result['size']:>8,}  {kind:26}  {result['page_s'] * 1000:8.1f}  "
            f"{result['bare_s'] * 1000:8.2f}  {result['ratio']:6.1f}x  "
            f"{result['queries']:7d}  {result['sql_s'] * 1000:7.2f}  "
            f"{result['totals_s'] * 1000:9.2f}"
        )
    print(
        "  'queries' per page are constant across sizes (checked); 'SQL ms' is those "
        "queries replayed bare (as the page sent them, every row fetched); 'totals' is "
        "reports.totals() alone (3 of those queries: aggregates per currency)."
    )
    for result in results:
        if result["distinct"]:
            print(
                f"  note: the filtered listing runs SELECT DISTINCT over every column "
                f"({result['url']}): django-filter's multiple-choice filters ask for distinct "
                "rows; the bare query has no DISTINCT."
            )
            break
    last = max(r["size"] for r in results)
    for result in results:
        if result["size"] != last:
            continue
        which = "filtered" if result["filtered"] else "default"
        label = "EXPLAIN" if "PostgreSQL" in database else "EXPLAIN QUERY PLAN"
        print(f"  {label} of the {which} page's listing query at {last:,} rows:")
        print(f"    top node: {result['plan'][0].strip() if result['plan'] else '(none)'}")
        print(f"    path:     {plan_summary(result['plan'])}")
        print(f"    bare:     {plan_summary(result['bare_plan'])}")
        print(f"    count:    {plan_summary(result['count_plan'])}  (the paginator's)")


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark; print the report and return the table's rows."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wcb-bench-") as sqlite_dir:
        sys.path.insert(0, str(ROOT))
        from benchmarks.bench_database import create_database, set_up_django

        set_up_django(sqlite_dir)
        from django.db import connection

        old_name = create_database("overview", sqlite_dir)  # WCB_BENCH_TEMPLATE: a copy
        try:
            database = describe_database()
            print(f"Agency overview on {database}: sizes {', '.join(f'{s:,}' for s in args.sizes)}")
            results = measure(args)
        finally:
            connection.creation.destroy_test_db(old_name, verbosity=0)
    report(results, database, args.repeat)
    return [row(result, database) for result in results]


if __name__ == "__main__":
    main()
