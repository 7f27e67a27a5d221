"""Creating a billing request through the app against the bare Stripe SDK call it makes.

    python benchmarks/create_request.py [--requests N] [--rows N] [--quick] [--rounds R]

Uses ``DATABASE_URL`` (PostgreSQL) if set, else a temporary SQLite file; either way a
fresh database of its own (``<name>_create_request``, dropped at the end; a copy of
``run.py``'s template, see ``bench_database.py``). Starts the bundled Stripe simulator
in this process and connects a ready account on it, as the tests do.

- **measured**: ``billing.create_request()``, the admin form's code path: one look-up
  (the form's nonce, a pending twin, the linked account), the row inserted as
  ``creating`` and committed, the Checkout Session created with no transaction open (on
  the connected account, with an idempotency key), the row made Pending with its
  audit-log entry, its email's outbox row and the email's django-q2 task (its ORM
  broker, as in production: ``bench_settings``), on PostgreSQL in one statement; the
  signal. The admin's URLs are loaded first, as in a running site (its viewsets
  register their models then);
- **baseline**: the same Checkout Session (the parameters ``billing.checkout_params``
  builds, with the same ``Stripe-Account`` header, an idempotency key and the same SDK
  client configuration), created by one direct ``stripe.StripeClient`` call against the
  same simulator.

Both sides pay the simulator's own time, so the difference of the two is the app's own
overhead per request. They run in alternating rounds so that a burst of load on the
machine hits both alike; times are medians per request. ``--rows M`` creates them in a
table of M billing requests (a history of the site, ``bench_history.py``).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REQUESTS = 200
QUICK_REQUESTS = 40


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--requests", type=int, help=f"requests per side (default {DEFAULT_REQUESTS})"
    )
    parser.add_argument("--rows", type=int, help="billing requests in the table beforehand")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_REQUESTS} requests (CI)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    args = parser.parse_args(argv)
    args.requests = args.requests or (QUICK_REQUESTS if args.quick else DEFAULT_REQUESTS)
    args.rounds = max(1, min(args.rounds, args.requests))
    return args


def describe_database() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT sqlite_version()")
            return f"SQLite {cursor.fetchone()[0]} (temporary file, WAL)"
        cursor.execute("SHOW server_version")
        return f"PostgreSQL {cursor.fetchone()[0]}"


def point_at(simulator: Any) -> Any:
    """Point the app at the simulator (settings as the test suite's ``stripe`` fixture)."""
    from django.conf import settings
    from django.test import override_settings

    override = override_settings(
        WAGTAIL_CLIENT_BILLING={
            **settings.WAGTAIL_CLIENT_BILLING,
            "STRIPE_API_BASE": simulator.url,
            "STRIPE_MAX_NETWORK_RETRIES": 0,
            "STRIPE_TIMEOUT": 10,
        }
    )
    override.enable()  # sends setting_changed: the app re-reads its settings
    return override


def sdk_client() -> Any:
    """A ``stripe.StripeClient`` configured as the app configures its own (its own one)."""
    import stripe

    from wagtail_client_billing.conf import billing_settings

    conf = billing_settings()
    base = conf.stripe_api_base
    return stripe.StripeClient(
        conf.secret_key("test"),
        base_addresses={"api": base, "connect": base, "files": base},
        max_network_retries=conf.stripe_max_network_retries,
        http_client=stripe.RequestsClient(timeout=conf.stripe_timeout),
    )


def details(number: int) -> Any:
    from wagtail_client_billing.billing import RequestDetails

    return RequestDetails(
        email=f"client{number}@example.com",
        currency="eur",
        amount=4990 + number,
        description="Website maintenance",
        success_url="https://acme.test/thanks/",
        cancel_url="https://acme.test/cancel/",
        billing_type="one_time",
    )


def baseline_params(template: dict[str, Any], number: int) -> dict[str, Any]:
    """The app's parameters for request ``number`` (ids, email, amount, expiry)."""
    from wagtail_client_billing.billing import session_lifetime

    params = copy.deepcopy(template)
    reference = str(1_000_000 + number)
    params["client_reference_id"] = f"wcb-{reference}"
    params["customer_email"] = f"client{number}@example.com"
    params["line_items"][0]["price_data"]["unit_amount"] = 4990 + number
    params["expires_at"] = int(time.time()) + session_lifetime()
    for metadata in (params["metadata"], params["payment_intent_data"]["metadata"]):
        metadata["wagtail_client_billing_request"] = reference
    return params


def measure(args: argparse.Namespace, simulator: Any) -> dict[str, Any]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from benchmarks import bench_history
    from tests.factories import connect_ready_account, make_site, make_user
    from wagtail_client_billing import billing
    from wagtail_client_billing.models import BillingRequest

    reverse("wagtailadmin_home")  # the admin's URLs loaded (its viewsets registered), as live
    account = connect_ready_account(simulator)
    site = make_site("acme.test", "Acme Plumbing")
    if args.rows:
        bench_history.add_requests(site, args.rows, account_id=account.account_id)
    user = make_user("acme-editor")
    client = sdk_client()

    def app(number: int) -> Any:
        return billing.create_request(
            site=site, details=details(number), nonce=f"bench-nonce-{number}", user=user
        )

    params: dict[int, dict[str, Any]] = {}

    def sdk(number: int) -> None:
        client.v1.checkout.sessions.create(
            params[number],
            options={
                "stripe_account": account.account_id,
                "idempotency_key": f"bench-direct-{number}",
            },
        )

    # Warm-up (imports, connections, templates, caches); the app's own parameters as
    # the baseline's template; the statements of one more (warm) create_request().
    warm = app(-2)
    template = billing.checkout_params(warm)
    with CaptureQueriesContext(connection) as captured:
        app(-1)
    statements = len(captured.captured_queries)
    params.update({n: baseline_params(template, n) for n in range(-2, args.requests)})
    sdk(-2)
    sdk(-1)

    app_times: list[float] = []
    sdk_times: list[float] = []
    per_round = -(-args.requests // args.rounds)
    for index, first in enumerate(range(0, args.requests, per_round)):
        numbers = range(first, min(first + per_round, args.requests))
        sides = [(app, app_times), (sdk, sdk_times)]
        for call, times in sides if index % 2 == 0 else reversed(sides):
            for number in numbers:
                started = time.perf_counter()
                call(number)
                times.append(time.perf_counter() - started)

    made = BillingRequest.objects.filter(checkout_session_id__isnull=False).count()
    made -= args.rows or 0  # the history's
    if made != args.requests + 2:
        raise SystemExit(f"expected {args.requests + 2} requests with a session, found {made}")
    app_s, sdk_s = statistics.median(app_times), statistics.median(sdk_times)
    return {
        "name": "create_request",
        "benchmark": "create_request",
        "measured": "billing.create_request()",
        "baseline": "stripe SDK checkout.sessions.create",
        "requests": args.requests,
        "rounds": args.rounds,
        "time_s": app_s,
        "baseline_s": sdk_s,
        "ratio": app_s / sdk_s if sdk_s else None,
        "overhead_s": app_s - sdk_s,
        "overhead_ms": (app_s - sdk_s) * 1000,
        "rows": args.rows or 0,
        "mean_s": statistics.fmean(app_times),
        "baseline_mean_s": statistics.fmean(sdk_times),
        "statements": statements,
        "notes": (
            f"{args.requests} requests each; {app_s * 1000:.1f} ms vs {sdk_s * 1000:.1f} ms "
            f"per request: the app's own {(app_s - sdk_s) * 1000:.1f} ms "
            f"({statements} SQL statements)"
            + (f"; {args.rows:,} requests in the table" if args.rows else "")
        ),
    }


def report(result: dict[str, Any], database: str) -> None:
    print(
        f"\nCreating billing requests on {database} and the Stripe simulator: "
        f"{result['requests']} per side, {result['rounds']} alternating rounds, medians"
    )
    print(
        f"  billing.create_request()          {result['time_s'] * 1000:8.2f} ms/request  "
        f"(mean {result['mean_s'] * 1000:.2f})"
    )
    print(
        f"  SDK checkout.sessions.create      {result['baseline_s'] * 1000:8.2f} ms/request  "
        f"(mean {result['baseline_mean_s'] * 1000:.2f})"
    )
    print(f"  the app's own overhead            {result['overhead_s'] * 1000:8.2f} ms/request")
    print(f"  ratio                             {result['ratio']:8.2f} x the bare SDK call")
    print(
        f"  SQL statements per request        {result['statements']:8d}  "
        "(the look-up, the INSERT; after Stripe, Pending with its entry, email and task)"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print the report and return the numbers."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wcb-bench-") as workdir:
        sys.path.insert(0, str(ROOT))
        from benchmarks.bench_database import create_database, set_up_django

        set_up_django(workdir)
        from django.db import connection

        from wagtail_client_billing.testing.stripe_simulator import StripeSimulator

        old_name = create_database("create_request", workdir)  # WCB_BENCH_TEMPLATE: a copy
        try:
            database = describe_database()
            with StripeSimulator() as simulator:
                override = point_at(simulator)
                try:
                    result = measure(args, simulator)
                finally:
                    override.disable()
        finally:
            connection.creation.destroy_test_db(old_name, verbosity=0)
    result["database"] = database
    report(result, database)
    return result


if __name__ == "__main__":
    main()
