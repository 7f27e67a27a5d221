"""The expiry sweep against a raw SQL UPDATE of the same rows, measured in the same run.

    python benchmarks/expiry_sweep.py [--rows N] [--quick] [--batch-size B] [--repeat R]

Uses ``DATABASE_URL`` (PostgreSQL) if set, else a temporary SQLite file. Either way it
creates and migrates a fresh database of its own (``<name>_expiry_sweep`` on PostgreSQL,
dropped at the end) and never touches the one ``DATABASE_URL`` names.

Each measurement starts from the same seed: N pending requests whose ``expires_at`` has
passed. ``billing.expire_overdue()`` does more than the bare UPDATE (an audit-log entry
and a signal for every flipped row), but it must stay set-based: the number of SQL
statements it issues is printed, one ``UPDATE ... RETURNING`` per batch (on PostgreSQL
inside the ``WITH`` statement that also writes the batch's audit entries), never one per
row.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ROWS = 100_000
QUICK_ROWS = 10_000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, help=f"overdue requests (default {DEFAULT_ROWS:,})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} rows")
    parser.add_argument("--batch-size", type=int, help="the sweep's batch size (the app's)")
    parser.add_argument("--repeat", type=int, default=1, help="measure R times, keep the best")
    args = parser.parse_args(argv)
    args.rows = args.rows or (QUICK_ROWS if args.quick else DEFAULT_ROWS)
    return args


def set_up_django(sqlite_dir: str) -> None:
    """tests.settings on DATABASE_URL, or on a SQLite file in ``sqlite_dir``."""
    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    if not os.environ.get("DATABASE_URL"):
        os.environ["SQLITE_PATH"] = str(Path(sqlite_dir) / "unused.sqlite3")
    import django

    django.setup()


def create_database(workdir: str) -> str:
    """Create and migrate a fresh database; return the name to restore afterwards.

    Under ``run.py``, a copy of its migrated template (``WCB_BENCH_TEMPLATE``, see
    ``bench_database.py``) instead of migrating again.
    """
    from benchmarks.bench_database import create_database as fresh_database

    return fresh_database("expiry_sweep", workdir)


def describe_database() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT sqlite_version()")
            return f"SQLite {cursor.fetchone()[0]} (temporary file, WAL)"
        cursor.execute("SHOW server_version")
        return f"PostgreSQL {cursor.fetchone()[0]}"


def seed(rows: int) -> Any:
    """Exactly ``rows`` pending requests, all overdue; return the sweep's ``now``."""
    from django.db import connection
    from django.utils import timezone
    from wagtail.models import ModelLogEntry, Site

    from wagtail_client_billing.models import BillingRequest

    BillingRequest.objects.all().delete()
    ModelLogEntry.objects.all().delete()
    site = Site.objects.get(is_default_site=True)
    now = timezone.now()
    overdue = now - timedelta(hours=1)
    BillingRequest.objects.bulk_create(
        (
            BillingRequest(
                site=site,
                email=f"client{i}@example.com",
                currency="eur",
                amount=1000 + i % 9000,
                description="Website maintenance",
                success_url="https://client.example/thanks/",
                cancel_url="https://client.example/cancel/",
                mode="test",
                checkout_session_id=f"cs_test_bench_{i}",
                expires_at=overdue - timedelta(seconds=i % 3600),
            )
            for i in range(rows)
        ),
        batch_size=5000,
    )
    # Fresh statistics and no dead rows from the previous measurement, so that both
    # measurements start from the same table.
    table = BillingRequest._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f'VACUUM ANALYZE "{table}"')
            cursor.execute(f'VACUUM ANALYZE "{ModelLogEntry._meta.db_table}"')
        else:
            cursor.execute("ANALYZE")
    return now


def time_raw_update(now: Any) -> tuple[float, int]:
    """The baseline: the bare set-based UPDATE of the same rows, nothing else."""
    from django.db import connection, transaction

    from wagtail_client_billing.models import BillingRequest

    table = BillingRequest._meta.db_table
    sql = (
        f'UPDATE "{table}" SET "status" = %s, "expired_at" = %s '
        'WHERE "status" = %s AND "expires_at" <= %s'
    )
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, ["expired", now, "pending", now])
        count = cursor.rowcount
    return time.perf_counter() - started, count


def time_update_and_log(now: Any) -> tuple[float, int] | None:
    """The floor (PostgreSQL): the same UPDATE feeding one audit entry per row into
    Wagtail's log table in the same statement, with the entry's data built in SQL and no
    label formatting, no batches: the least any sweep that keeps an audit trail does."""
    from django.contrib.contenttypes.models import ContentType
    from django.db import connection, transaction
    from wagtail.models import ModelLogEntry

    from wagtail_client_billing.models import BillingRequest

    if connection.vendor != "postgresql":
        return None
    table, log = BillingRequest._meta.db_table, ModelLogEntry._meta.db_table
    sql = (
        f'WITH f AS (UPDATE "{table}" SET "status" = %s, "expired_at" = %s '
        'WHERE "status" = %s AND "expires_at" <= %s '
        "RETURNING id, site_id, email, amount, currency, billing_type) "
        f'INSERT INTO "{log}" (content_type_id, label, action, data, timestamp, object_id, '
        "content_changed, deleted) SELECT %s, f.email, %s, jsonb_build_object('site', "
        "f.site_id, 'email', f.email, 'amount', f.amount, 'currency', f.currency, "
        "'billing_type', f.billing_type, 'source', 'sweep'), %s, f.id::text, false, false "
        "FROM f"
    )
    content_type = ContentType.objects.get_for_model(BillingRequest).pk
    action = "wagtail_client_billing.request.expired"
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, ["expired", now, "pending", now, content_type, action, now])
        count = cursor.rowcount
    return time.perf_counter() - started, count


def time_sweep(now: Any, batch_size: int) -> tuple[float, int, list[str]]:
    """``billing.expire_overdue()``, with the SQL statements it issued."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from wagtail_client_billing import billing

    with CaptureQueriesContext(connection) as captured:
        started = time.perf_counter()
        flipped = billing.expire_overdue(now=now, batch_size=batch_size)
        elapsed = time.perf_counter() - started
    return elapsed, len(flipped), [query["sql"] for query in captured.captured_queries]


def statement_kinds(statements: list[str]) -> dict[str, int]:
    """How many statements of each kind, e.g. {"UPDATE": 21, "SELECT": 20, "INSERT": 100};
    an ``executemany`` (Django logs "5000 times: INSERT ...") counts as "INSERT (many)"."""
    kinds: dict[str, int] = {}
    for sql in statements:
        many = re.match(r"\s*\d+ times: ", sql)
        sql = sql[many.end() :] if many else sql
        kind = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else "?"
        kind += " (many)" if many else ""
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def check_all_expired(rows: int) -> None:
    from wagtail_client_billing.models import BillingRequest

    left = BillingRequest.objects.exclude(status="expired").count()
    if left or BillingRequest.objects.count() != rows:
        raise SystemExit(f"expected {rows:,} expired requests, {left:,} are not")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    raw_times, sweep_times, floor_times = [], [], []
    statements: list[str] = []
    for _ in range(args.repeat):
        now = seed(args.rows)
        raw_time, raw_count = time_raw_update(now)
        check_all_expired(args.rows)
        raw_times.append(raw_time)

        now = seed(args.rows)
        if floor := time_update_and_log(now):
            check_all_expired(args.rows)
            floor_times.append(floor[0])

        now = seed(args.rows)
        sweep_time, sweep_count, statements = time_sweep(now, args.batch_size)
        check_all_expired(args.rows)
        sweep_times.append(sweep_time)
        if raw_count != args.rows or sweep_count != args.rows:
            raise SystemExit(f"flipped {raw_count:,} (raw) and {sweep_count:,} (sweep)")
    kinds = statement_kinds(statements)
    # Each batch: an UPDATE ... RETURNING, on its own or (PostgreSQL) in a WITH feeding
    # the audit entries' INSERT.
    batch_statements = sum(1 for sql in statements if "UPDATE" in sql and "RETURNING" in sql)
    batches = -(-args.rows // args.batch_size)  # ceil
    sweep, raw = min(sweep_times), min(raw_times)
    floor = min(floor_times) if floor_times else None
    return {
        "name": "expiry_sweep",
        "benchmark": "expiry_sweep",
        "measured": "billing.expire_overdue()",
        "baseline": "raw SQL UPDATE",
        "rows": args.rows,
        "time_s": sweep,
        "baseline_s": raw,
        "ratio": sweep / raw if raw else None,
        "floor_s": floor,
        "floor_ratio": sweep / floor if floor else None,
        "batch_statements": batch_statements,
        "statements": len(statements),
        "statement_kinds": kinds,
        "batches": batches,
        "batch_size": args.batch_size,
        "repeat": args.repeat,
        "sweep_times_s": sweep_times,
        "raw_times_s": raw_times,
        "notes": (
            f"{args.rows:,} rows; {batch_statements} UPDATE ... RETURNING "
            f"(batches of {args.batch_size:,}), {len(statements)} statements in all"
            + (
                f"; {sweep / floor:.2f}x the floor (the UPDATE feeding one audit row per "
                f"request, one statement: {floor / raw:.2f}x the raw UPDATE)"
                if floor
                else ""
            )
        ),
    }


def report(result: dict[str, Any], database: str) -> None:
    kinds = ", ".join(
        f"{count} {kind}" for kind, count in sorted(result["statement_kinds"].items())
    )
    per_second = result["rows"] / result["time_s"] if result["time_s"] else 0
    best = " (best of {repeat})".format(**result) if result["repeat"] > 1 else ""
    print(f"Expiry sweep over {result['rows']:,} overdue pending requests on {database}{best}")
    print(f"  billing.expire_overdue()  {result['time_s']:9.3f} s  ({per_second:,.0f} rows/s)")
    print(f"  raw SQL UPDATE            {result['baseline_s']:9.3f} s")
    if result["floor_s"]:
        print(f"  floor: UPDATE + audit rows {result['floor_s']:8.3f} s  (one statement)")
    print(f"  ratio                     {result['ratio']:9.2f} x the raw UPDATE")
    if result["floor_s"]:
        print(f"                            {result['floor_ratio']:9.2f} x the floor")
    print(f"  SQL statements            {result['statements']:9d}  ({kinds})")
    print(
        f"  UPDATE ... RETURNING      {result['batch_statements']:9d}  "
        f"for {result['batches']} batch(es) of up to {result['batch_size']:,} rows "
        "(one more, empty, when the last batch is full): set-based, not a loop over rows"
    )
    if result["repeat"] > 1:
        sweeps = ", ".join(f"{t:.3f}" for t in result["sweep_times_s"])
        raws = ", ".join(f"{t:.3f}" for t in result["raw_times_s"])
        median = statistics.median(result["sweep_times_s"]) / statistics.median(
            result["raw_times_s"]
        )
        print(f"  all runs: sweep {sweeps} s; raw {raws} s; ratio of medians {median:.2f}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print the report and return the numbers."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wcb-bench-") as sqlite_dir:
        set_up_django(sqlite_dir)
        from django.db import connection

        from wagtail_client_billing.billing.sweep import BATCH_SIZE

        args.batch_size = args.batch_size or BATCH_SIZE
        old_name = create_database(sqlite_dir)
        try:
            database = describe_database()
            result = measure(args)
        finally:
            connection.creation.destroy_test_db(old_name, verbosity=0)
    result["database"] = database
    report(result, database)
    return result


if __name__ == "__main__":
    main()
