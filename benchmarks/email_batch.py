"""One site's billing emails in one batch (one SMTP connection) against one connection
per message, measured in the same run against a local SMTP server.

    python benchmarks/email_batch.py [--emails N] [--quick] [--repeat R] [--security S]

Sets up Django with ``tests.settings`` on a temporary SQLite file of its own (or on a
fresh ``<name>_email_batch`` PostgreSQL database when ``DATABASE_URL`` is set), starts
aiosmtpd on loopback (``tests/smtp.py``) and queues N billing emails for one site. The
batch path is ``mail.send_pending_emails(site)`` as the django-q2 task runs it; the
per-message path is the same function with ``limit=1``, so both render, claim and
record every email the same way and differ only in connections. ``--security
starttls`` adds STARTTLS and AUTH (a self-signed certificate made for the run), where a
connection costs a TLS handshake.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_EMAILS = 500
QUICK_EMAILS = 100


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emails", type=int, help=f"emails to send (default {DEFAULT_EMAILS})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_EMAILS} emails (CI)")
    parser.add_argument("--repeat", type=int, default=1, help="measure R times, keep the best")
    parser.add_argument(
        "--security",
        choices=["none", "starttls", "both"],
        default="both",
        help="plain SMTP, STARTTLS with AUTH, or both (default)",
    )
    args = parser.parse_args(argv)
    args.emails = args.emails or (QUICK_EMAILS if args.quick else DEFAULT_EMAILS)
    return args


def set_up_django(workdir: str) -> None:
    """tests.settings on DATABASE_URL, or on a SQLite file in ``workdir``."""
    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    if not os.environ.get("DATABASE_URL"):
        os.environ["SQLITE_PATH"] = str(Path(workdir) / "unused.sqlite3")
    import django

    django.setup()
    from django.conf import settings

    # Never a real email from here, and no SMTP reply is slower than this.
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.WAGTAIL_CLIENT_BILLING = {**settings.WAGTAIL_CLIENT_BILLING, "SMTP_TIMEOUT": 10}


def create_database(workdir: str) -> str:
    """Create and migrate a fresh database; return the name to restore afterwards.

    Under ``run.py``, a copy of its migrated template (``WCB_BENCH_TEMPLATE``, see
    ``bench_database.py``) instead of migrating again.
    """
    from benchmarks.bench_database import create_database as fresh_database

    return fresh_database("email_batch", workdir)


def make_site() -> Any:
    from wagtail.models import Page, Site

    home = Page.get_first_root_node().add_child(instance=Page(title="Acme", slug="acme-bench"))
    return Site.objects.create(hostname="acme.test", site_name="Acme Plumbing", root_page=home)


def point_site_at(site: Any, server: Any, security: str) -> None:
    from tests.smtp import PASSWORD, USERNAME
    from wagtail_client_billing.models import SiteEmailSettings

    email_settings, _ = SiteEmailSettings.objects.get_or_create(site=site)
    email_settings.custom_smtp = True
    email_settings.host, email_settings.port = server.host, server.port
    email_settings.security = security
    email_settings.username = USERNAME if security == "starttls" else ""
    email_settings.set_password(PASSWORD if security == "starttls" else "")
    email_settings.from_email = "billing@acme.test"
    email_settings.reply_to = "agency@agency.test"
    email_settings.save()


def seed(site: Any, emails: int) -> None:
    """``emails`` pending requests of ``site`` with their email queued."""
    from django.utils import timezone

    from wagtail_client_billing.models import BillingRequest, StripeConnection

    # On a linked account: the emails of a request whose account is gone are not sent.
    StripeConnection.objects.get_or_create(
        mode="test", account_id="acct_bench", defaults={"charges_enabled": True}
    )
    expires = timezone.now() + timedelta(hours=23)
    BillingRequest.objects.bulk_create(
        [
            BillingRequest(
                site=site,
                account_id="acct_bench",
                email=f"client{number}@example.com",
                currency="eur",
                amount=4990 + number,
                description=f"Website maintenance #{number}",
                success_url="https://acme.test/thanks/",
                cancel_url="https://acme.test/cancel/",
                checkout_session_id=f"cs_test_bench_{number}",
                checkout_url=f"https://checkout.stripe.test/c/pay/cs_test_bench_{number}",
                expires_at=expires,
            )
            for number in range(emails)
        ],
        batch_size=1000,
    )
    requeue(site)


def requeue(site: Any) -> None:
    from wagtail_client_billing.models import BillingRequest, OutgoingEmail

    OutgoingEmail.objects.filter(site=site).delete()
    OutgoingEmail.objects.bulk_create(
        [
            OutgoingEmail(
                kind="request",
                key=f"request-{pk}",
                site=site,
                billing_request_id=pk,
                recipient=email,
                status=OutgoingEmail.Status.QUEUED,
            )  # fmt: skip
            for pk, email in BillingRequest.objects.filter(site=site).values_list("pk", "email")
        ],
        batch_size=1000,
    )


def send(site: Any, *, per_message: bool) -> int:
    """Send every queued email of the site; return how many went out."""
    from wagtail_client_billing.mail import outbox as mail

    sent = 0
    while True:
        result = mail.send_pending_emails(site.pk, limit=1 if per_message else mail.BATCH_SIZE)
        sent += len(result.sent)
        if not result.sent and not result.more:
            return sent


def measure(site: Any, server: Any, emails: int, *, per_message: bool) -> tuple[float, int]:
    """Seconds to send ``emails`` and the connections the server saw."""
    requeue(site)
    server.inbox.clear()
    started = time.perf_counter()
    sent = send(site, per_message=per_message)
    elapsed = time.perf_counter() - started
    if sent != emails or len(server.messages) != emails:
        raise SystemExit(f"expected {emails} emails, sent {sent}, received {len(server.messages)}")
    return elapsed, len(server.inbox.connections)


def run(security: str, site: Any, emails: int, repeat: int, workdir: str) -> dict[str, Any]:
    from tests.smtp import SMTPServer, make_certificate

    cert = make_certificate(Path(workdir)) if security == "starttls" else None
    if cert:
        os.environ["SSL_CERT_FILE"] = str(cert[0])  # trust the run's own certificate
    starttls = security == "starttls"
    with SMTPServer(auth=starttls, starttls=starttls, cert=cert) as server:
        point_site_at(site, server, security)
        measure(site, server, emails, per_message=False)  # warm-up: templates, caches
        best: dict[bool, tuple[float, int]] = {}
        for _ in range(repeat):
            for per_message in (False, True):
                result = measure(site, server, emails, per_message=per_message)
                if per_message not in best or result[0] < best[per_message][0]:
                    best[per_message] = result
    (batch, batch_connections), (single, single_connections) = best[False], best[True]
    label = "STARTTLS + AUTH" if starttls else "plain SMTP"
    print(f"\n{label}, {emails} emails for one site:")
    print(
        f"  one connection per batch:   {batch:7.2f} s  {emails / batch:7.0f} emails/s  "
        f"{batch_connections} connection(s)"
    )
    print(
        f"  one connection per message: {single:7.2f} s  {emails / single:7.0f} emails/s  "
        f"{single_connections} connection(s)"
    )
    print(f"  ratio (per message / batch): {single / batch:.2f}x")
    return {
        "benchmark": "email_batch",
        "measured": f"the app's send, one connection per site and batch ({label})",
        "time_s": round(batch, 3),
        "baseline": "one connection per message",
        "baseline_s": round(single, 3),
        "ratio": round(batch / single, 2),
        "notes": (
            f"{emails} emails: {emails / batch:.0f}/s vs {emails / single:.0f}/s; "
            f"{batch_connections} vs {single_connections} connections"
        ),
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    import logging
    import warnings

    logging.disable(logging.WARNING)  # the audit of 2 x N sends is not the point here
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    with tempfile.TemporaryDirectory(prefix="wcb-email-bench-") as workdir:
        set_up_django(workdir)
        from django.db import connection

        old_name = create_database(workdir)
        try:
            site = make_site()
            seed(site, args.emails)
            print(f"Database: {connection.vendor}; best of {args.repeat} run(s).")
            modes = ["none", "starttls"] if args.security == "both" else [args.security]
            return [run(security, site, args.emails, args.repeat, workdir) for security in modes]
        finally:
            connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
