"""The agency overview page against a plain Wagtail ``ModelViewSet`` of the same rows.

    python benchmarks/overview.py [--sizes N ...] [--rows N] [--quick] [--repeat R]

Uses ``DATABASE_URL`` (PostgreSQL) if set, else a temporary SQLite file. Either way it
creates and migrates a fresh database of its own (``<name>_overview`` on PostgreSQL,
dropped at the end; a copy of ``run.py``'s template, see ``bench_database.py``) and
never touches the one ``DATABASE_URL`` names.

For each size (100, 10,000 and 100,000 billing requests; ``--quick``: the first two;
``--rows N``: N only) the table is grown to that many rows, spread over five sites, five
currencies, three billing types, every status and a year of creation dates, and the
overview (``/admin/client-billing/requests/overview/``) is rendered through the real
Django view as a superuser, with ``django.test.Client``: session, middleware, filters,
pagination, the totals above the listing and the template. The baseline is the index
of a plain Wagtail ``ModelViewSet`` (``/admin/bench-anchor/``, ``bench_anchor/``) over a
model with the same columns, holding the same rows (copied with ``INSERT ... SELECT``),
with the same columns and filters shown, the same ordering and page size: the page is
checked to list the same 25 rows in the same order. The same for one filtered page
(one site, Pending). The number of SQL queries per page must not grow with the table,
on either page: the benchmark fails if it does.

To show where a page's time goes, two more timings: the page's own queries replayed
bare (as it sent them, every row fetched), and ``reports.totals()`` alone (the three
aggregates per currency above the listing). On PostgreSQL it prints the ``EXPLAIN``
of the listing and count queries at the largest size (SQLite: ``EXPLAIN QUERY PLAN``).
"""

from __future__ import annotations

import argparse
import re
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
ANCHOR = "/admin/bench-anchor/"  # bench_anchor's plain ModelViewSet
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
    parser.add_argument("--rows", type=int, help="one size only: N rows (same as --sizes N)")
    parser.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES} (CI)")
    parser.add_argument("--repeat", type=int, help="pages timed per size (default 15; quick 5)")
    args = parser.parse_args(argv)
    if args.rows:
        args.sizes = [args.rows]
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


def copy_to_anchor() -> None:
    """Make the anchor's table hold exactly the billing requests' rows (same ids)."""
    from django.db import connection

    from benchmarks.bench_anchor.models import COPIED_COLUMNS, AnchorRequest
    from wagtail_client_billing.models import BillingRequest

    source, anchor = BillingRequest._meta.db_table, AnchorRequest._meta.db_table
    columns = ", ".join(f'"{column}"' for column in COPIED_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(f'DELETE FROM "{anchor}"')
        cursor.execute(f'INSERT INTO "{anchor}" ({columns}) SELECT {columns} FROM "{source}"')
        if connection.vendor == "postgresql":
            cursor.execute(f'VACUUM ANALYZE "{anchor}"')
        else:
            cursor.execute("ANALYZE")


def listing_sql(client: Any, url: str, table: str) -> tuple[list[str], str, str]:
    """A page's statements, and the SQL of its listing query and of its count of ``table``."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

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
    """Time the overview page, the anchor's page and the totals at this size (medians)."""
    from django.db import connection

    from benchmarks.bench_anchor.models import AnchorRequest
    from wagtail_client_billing import reports
    from wagtail_client_billing.models import BillingRequest

    query = f"?site={site.pk}&status=pending" if filtered else ""
    url, anchor_url = f"{OVERVIEW}{query}", f"{ANCHOR}{query}"
    base = BillingRequest.objects.select_related("site")
    if filtered:
        base = base.filter(site=site)
        listed = base.filter(status="pending").count()
    else:
        listed = base.exclude(status="deleted").count()
    latest: dict[str, bytes] = {}
    for warm in (url, anchor_url):
        client.get(warm)  # warm caches (content types, ...) before counting the queries
    statements, listing, count = listing_sql(client, url, BillingRequest._meta.db_table)
    anchor_table = AnchorRequest._meta.db_table
    anchor_statements, anchor_listing, anchor_count = listing_sql(client, anchor_url, anchor_table)
    selects = [sql for sql in statements if sql.lstrip().upper().startswith("SELECT")]

    def get(target: str, key: str) -> None:
        response = client.get(target)
        if response.status_code != 200:
            raise SystemExit(f"GET {target} answered {response.status_code}")
        latest[key] = response.content

    def replay() -> None:
        # The page's own statements as it sent them (values inlined), fetched in full.
        with connection.cursor() as cursor:
            for statement in selects:
                cursor.execute(statement)
                cursor.fetchall()

    def totals() -> None:
        reports.totals(base)

    calls = {
        "page": lambda: get(url, "page"),
        "anchor": lambda: get(anchor_url, "anchor"),
        "replay": replay,
        "totals": totals,
    }
    timings: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        call()  # warm-up
    # Interleaved, so that a burst of load on the (shared) machine hits every side alike.
    for _ in range(repeat):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            timings[name].append(time.perf_counter() - started)
    check_same_rows(latest["page"], latest["anchor"], min(PAGE_SIZE, listed))
    page_s, anchor_s = statistics.median(timings["page"]), statistics.median(timings["anchor"])
    return {
        "size": size,
        "filtered": filtered,
        "url": url,
        "anchor_url": anchor_url,
        "rows_listed": listed,
        "queries": len(statements),
        "anchor_queries": len(anchor_statements),
        "sql_s": statistics.median(timings["replay"]),
        "page_s": page_s,
        "anchor_s": anchor_s,
        "totals_s": statistics.median(timings["totals"]),
        "ratio": page_s / anchor_s if anchor_s else None,
        "plan": explain(listing),
        "anchor_plan": explain(anchor_listing),
        "count_plan": explain(count),
        "anchor_count_plan": explain(anchor_count),
        "distinct": listing.lstrip().upper().startswith("SELECT DISTINCT"),
    }


EMAIL = re.compile(rb"client\d+@example\.com")


def listed_emails(content: bytes) -> list[bytes]:
    """The clients' emails of a page, in the order they first appear."""
    return list(dict.fromkeys(EMAIL.findall(content)))


def check_same_rows(page: bytes, anchor: bytes, expected: int) -> None:
    """Both pages list the same ``expected`` rows (their emails), in the same order."""
    emails, anchor_emails = listed_emails(page), listed_emails(anchor)
    if len(emails) != expected or emails != anchor_emails:
        raise SystemExit(
            f"the overview lists {len(emails)} rows and the anchor {len(anchor_emails)}, "
            f"expected the same {expected} in the same order"
        )


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
        copy_to_anchor()
        current = size
        print(f"  {size:,} rows inserted in {time.perf_counter() - started:.1f} s", flush=True)
        for filtered in (False, True):
            results.append(measure_size(client, sites[0], size, args.repeat, filtered=filtered))
    for filtered in (False, True):
        for key, page in (("queries", "overview"), ("anchor_queries", "anchor")):
            counts = {r["size"]: r[key] for r in results if r["filtered"] == filtered}
            if len(set(counts.values())) != 1:
                kind = "filtered page" if filtered else "page"
                raise SystemExit(f"the {page} {kind}'s query count grows with the table: {counts}")
    return results


def size_label(size: int) -> str:
    """1000 -> "1k", 1000000 -> "1M" (the suffix of the smaller sizes' row names)."""
    for unit, scale in (("M", 1_000_000), ("k", 1_000)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return str(size)


def row(result: dict[str, Any], database: str, largest: int) -> dict[str, Any]:
    """One line of run.py's table; the largest size's lines are ``overview(_filtered)``."""
    kind = "filtered (site + Pending)" if result["filtered"] else "all sites"
    name = "overview_filtered" if result["filtered"] else "overview"
    if result["size"] != largest:
        name = f"{name}_{size_label(result['size'])}"
    return {
        "name": name,
        "benchmark": "overview",
        "measured": f"overview page, {kind}",
        "baseline": f"plain ModelViewSet index, {kind}",
        "time_s": result["page_s"],
        "baseline_s": result["anchor_s"],
        "ratio": result["ratio"],
        "statements": result["queries"],
        "baseline_statements": result["anchor_queries"],
        "notes": (
            f"{result['size']:,} rows; {result['page_s'] * 1000:.1f} ms/page vs "
            f"{result['anchor_s'] * 1000:.1f} ms; {result['queries']} vs "
            f"{result['anchor_queries']} queries/page (the overview's together "
            f"{result['sql_s'] * 1000:.1f} ms; totals {result['totals_s'] * 1000:.1f} ms)"
            + ("; SELECT DISTINCT" if result["distinct"] else "")
        ),
        "rows": result["size"],
        "rows_listed": result["rows_listed"],
        "totals_s": result["totals_s"],
        "sql_s": result["sql_s"],
        "plan": plan_summary(result["plan"]),
        "anchor_plan": plan_summary(result["anchor_plan"]),
        "count_plan": plan_summary(result["count_plan"]),
        "database": database,
    }


def report(results: list[dict[str, Any]], database: str, repeat: int) -> None:
    print(f"\nAgency overview on {database}, median of {repeat} page(s) per line")
    print(
        f"  {'rows':>9}  {'page':26}  {'page ms':>8}  {'anchor ms':>9}  {'ratio':>7}  "
        f"{'queries':>7}  {'anchor q':>8}  {'SQL ms':>7}  {'totals ms':>9}"
    )
    for result in results:
        kind = "filtered: 1 site, Pending" if result["filtered"] else "all sites (default)"
        print(
            f"  {result['size']:>9,}  {kind:26}  {result['page_s'] * 1000:8.1f}  "
            f"{result['anchor_s'] * 1000:9.1f}  {result['ratio']:6.2f}x  "
            f"{result['queries']:7d}  {result['anchor_queries']:8d}  "
            f"{result['sql_s'] * 1000:7.2f}  {result['totals_s'] * 1000:9.2f}"
        )
    print(
        "  'anchor' is a plain Wagtail ModelViewSet index of the same rows "
        f"({ANCHOR}, benchmarks/bench_anchor), same columns and filters; queries per page "
        "are constant across sizes on both (checked); 'SQL ms' is the overview's queries "
        "replayed bare (as the page sent them, every row fetched); 'totals' is "
        "reports.totals() alone (3 of those queries: aggregates per currency)."
    )
    for result in results:
        if result["distinct"]:
            print(
                f"  note: the filtered listing runs SELECT DISTINCT over every column "
                f"({result['url']}): django-filter's multiple-choice filters ask for distinct "
                "rows."
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
        print(f"    count:    {plan_summary(result['count_plan'])}  (the paginator's)")
        print(f"    anchor:   {plan_summary(result['anchor_plan'])}")
        print(f"    anchor count: {plan_summary(result['anchor_count_plan'])}")


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
    largest = max(args.sizes)
    return [row(result, database, largest) for result in results]


if __name__ == "__main__":
    main()
