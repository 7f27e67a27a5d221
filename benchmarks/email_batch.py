"""One site's billing emails sent by the app against a bare smtplib loop on one
connection, measured in the same run against the same local SMTP server.

    python benchmarks/email_batch.py [--emails N] [--rows N] [--quick] [--repeat R]
                                     [--security S]

Sets up Django with ``tests.settings`` on a temporary SQLite file of its own (or on a
fresh ``<name>_email_batch`` PostgreSQL database when ``DATABASE_URL`` is set), starts
aiosmtpd on loopback (``tests/smtp.py``) and queues N billing emails for one site
(default 500; ``--quick`` 100). ``--rows M`` puts them among M billing requests of the
site (the others' emails sent long ago: history the queue must skip).

- **measured**: ``mail.send_pending_emails(site)`` until the queue is empty, as the
  django-q2 task runs it: due emails read, each claimed, rendered, sent and recorded,
  one SMTP connection per batch;
- **baseline**: the same N messages (the bytes the server received from the app),
  sent by ``smtplib`` in a loop on ONE connection (``sendmail`` per message) to the
  same server: the SMTP conversation alone;
- **floor**: the baseline's loop with one durable write per email before it goes (its
  outbox row's ``UPDATE`` from queued to sending, committed): the least an outbox that
  never sends an email twice pays, before rendering or composing a byte (``floor_s``,
  and the app's ``floor_ratio``);
- for reference: the same emails rendered and composed (``messages.billing_email``) and
  sent by Django's SMTP backend on one connection, without the outbox.

``--security starttls`` adds STARTTLS and AUTH (a self-signed certificate made for the
run) on both sides; ``both`` (the default) measures plain SMTP and then STARTTLS.
"""

from __future__ import annotations

import argparse
import os
import smtplib
import ssl
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_EMAILS = 500
QUICK_EMAILS = 100
BATCH_PREFIX = "cs_test_bench_"  # the requests whose emails are sent
HISTORY_PREFIX = "cs_test_history_"  # --rows: the others, their emails sent long ago


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emails", type=int, help=f"emails to send (default {DEFAULT_EMAILS})")
    parser.add_argument(
        "--rows", type=int, help="billing requests of the site (default: the emails' own)"
    )
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
    if args.rows:
        args.emails = min(args.emails, args.rows)
    args.rows = max(args.rows or 0, args.emails)
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


def seed(site: Any, emails: int, rows: int) -> None:
    """``rows`` requests of ``site``: ``emails`` pending with their email queued, the
    others (history) with their email sent."""
    from django.utils import timezone

    from wagtail_client_billing.models import BillingRequest, OutgoingEmail, StripeConnection

    # On a linked account: the emails of a request whose account is gone are not sent.
    StripeConnection.objects.get_or_create(
        mode="test", account_id="acct_bench", defaults={"charges_enabled": True}
    )
    now = timezone.now()
    expires = now + timedelta(hours=23)

    def request(number: int, prefix: str) -> BillingRequest:
        return BillingRequest(
            site=site,
            account_id="acct_bench",
            email=f"client{number}@example.com",
            currency="eur",
            amount=4990 + number,
            description=f"Website maintenance #{number}",
            success_url="https://acme.test/thanks/",
            cancel_url="https://acme.test/cancel/",
            checkout_session_id=f"{prefix}{number}",
            checkout_url=f"https://checkout.stripe.test/c/pay/{prefix}{number}",
            expires_at=expires,
            status="pending" if prefix == BATCH_PREFIX else "paid",
        )

    for first in range(0, rows - emails, 5000):
        history = BillingRequest.objects.bulk_create(
            [request(n, HISTORY_PREFIX) for n in range(first, min(first + 5000, rows - emails))]
        )
        OutgoingEmail.objects.bulk_create(
            [
                OutgoingEmail(
                    kind="request",
                    key=f"request-{old.pk}",
                    site=site,
                    billing_request=old,
                    recipient=old.email,
                    status=OutgoingEmail.Status.SENT,
                    attempts=1,
                    sent_at=now - timedelta(days=1),
                )
                for old in history
            ],
            batch_size=1000,
        )
    BillingRequest.objects.bulk_create(
        [request(number, BATCH_PREFIX) for number in range(emails)], batch_size=1000
    )
    requeue(site)


def requeue(site: Any) -> None:
    """The batch's emails queued again (the history left as it is)."""
    from wagtail_client_billing.models import BillingRequest, OutgoingEmail

    batch = BillingRequest.objects.filter(site=site, checkout_session_id__startswith=BATCH_PREFIX)
    OutgoingEmail.objects.filter(billing_request__in=batch).delete()
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
            for pk, email in batch.values_list("pk", "email")
        ],
        batch_size=1000,
    )


def send(site: Any) -> int:
    """Send every queued email of the site as the task does (another batch only while the
    last one says ``more``); return how many went out."""
    from wagtail_client_billing.mail import outbox as mail

    sent = 0
    while True:
        result = mail.send_pending_emails(site.pk)
        sent += len(result.sent)
        if not result.more:
            return sent


def measure_app(
    site: Any, server: Any, emails: int, statements: list[int] | None = None
) -> tuple[float, int]:
    """Seconds for the app to send the ``emails`` and the connections the server saw; the
    SQL statements of the sending (not of the re-queueing) appended to ``statements``."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    requeue(site)
    server.inbox.clear()
    counting = CaptureQueriesContext(connection)
    started = time.perf_counter()
    with counting if statements is not None else nullcontext():
        sent = send(site)
    elapsed = time.perf_counter() - started
    if statements is not None:
        statements.append(len(counting.captured_queries))
    if sent != emails or len(server.messages) != emails:
        raise SystemExit(f"expected {emails} emails, sent {sent}, received {len(server.messages)}")
    return elapsed, len(server.inbox.connections)


@contextmanager
def recording(server: Any) -> Iterator[list[tuple[str, list[str], bytes]]]:
    """The envelopes (sender, recipients, raw bytes) the server receives meanwhile."""
    received: list[tuple[str, list[str], bytes]] = []
    original = server.inbox.handle_DATA

    async def handle_data(smtp: Any, session: Any, envelope: Any) -> Any:
        received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return await original(smtp, session, envelope)

    server.inbox.handle_DATA = handle_data  # aiosmtpd looks the hook up on each DATA
    try:
        yield received
    finally:
        del server.inbox.handle_DATA


def measure_smtplib(
    server: Any,
    messages: list[tuple[str, list[str], bytes]],
    cert: tuple[Path, Path] | None,
    before_each: Callable[[int], object] | None = None,
) -> tuple[float, int]:
    """Seconds for smtplib to send ``messages`` on one connection (STARTTLS and AUTH when
    ``cert``; ``before_each(index)`` run before each message), and the connections the
    server saw."""
    from tests.smtp import PASSWORD, USERNAME

    server.inbox.clear()
    started = time.perf_counter()
    with smtplib.SMTP(server.host, server.port, timeout=10) as connection:
        if cert:
            connection.starttls(context=ssl.create_default_context(cafile=str(cert[0])))
            connection.login(USERNAME, PASSWORD)
        for index, (sender, recipients, data) in enumerate(messages):
            if before_each is not None:
                before_each(index)
            connection.sendmail(sender, recipients, data)
    elapsed = time.perf_counter() - started
    if len(server.messages) != len(messages):
        raise SystemExit(f"smtplib: sent {len(messages)}, received {len(server.messages)}")
    return elapsed, len(server.inbox.connections)


def measure_floor(
    site: Any,
    server: Any,
    messages: list[tuple[str, list[str], bytes]],
    cert: tuple[Path, Path] | None,
) -> float:
    """Seconds for the smtplib loop with one committed ``UPDATE`` of the email's outbox row
    before each message (the app's one statement per email, nothing rendered or composed)."""
    from django.db import connection

    from wagtail_client_billing.models import OutgoingEmail

    requeue(site)
    queued = OutgoingEmail.objects.filter(site=site, status=OutgoingEmail.Status.QUEUED)
    pks = list(queued.order_by("pk").values_list("pk", flat=True))
    if len(pks) != len(messages):
        raise SystemExit(f"floor: {len(pks)} queued emails for {len(messages)} messages")
    table = connection.ops.quote_name(OutgoingEmail._meta.db_table)
    claim = f"UPDATE {table} SET status = %s, attempts = attempts + 1 WHERE id = %s AND status = %s"
    with connection.cursor() as cursor:  # autocommit: one commit per email
        elapsed, _ = measure_smtplib(
            server,
            messages,
            cert,
            lambda index: cursor.execute(claim, ["sending", pks[index], "queued"]),
        )
    return elapsed


def measure_composing(site: Any, server: Any, emails: int) -> float:
    """Seconds for the same emails without the outbox (no claim, no record, no deadline
    guard): each request read, its email rendered and composed by the app's own
    ``messages.billing_email`` and sent by Django's SMTP backend on one connection."""
    from django.core.mail.backends.smtp import EmailBackend

    from wagtail_client_billing.mail import messages
    from wagtail_client_billing.models import BillingRequest, SiteEmailSettings, StripeConnection

    server.inbox.clear()
    started = time.perf_counter()
    settings = SiteEmailSettings.objects.get(site=site)
    link = StripeConnection.objects.get(mode="test")
    links = {key: getattr(link, key) for key in ("privacy_policy_url", "terms_of_service_url")}
    backend = EmailBackend(
        host=settings.host, port=settings.port, username=settings.username,
        password=settings.get_password(), use_tls=settings.security == "starttls", timeout=10,
    )  # fmt: skip
    requests = BillingRequest.objects.filter(
        site=site, checkout_session_id__startswith=BATCH_PREFIX
    ).select_related("site__root_page__locale")
    with backend:
        for request in requests:
            email = messages.billing_email(request, email_settings=settings, links=links)
            backend.send_messages([email])
    elapsed = time.perf_counter() - started
    if len(server.messages) != emails:
        raise SystemExit(f"composing loop: expected {emails}, received {len(server.messages)}")
    return elapsed


def run(security: str, site: Any, args: argparse.Namespace, workdir: str) -> dict[str, Any]:
    from tests.smtp import SMTPServer, make_certificate

    emails = args.emails
    cert = make_certificate(Path(workdir)) if security == "starttls" else None
    if cert:
        os.environ["SSL_CERT_FILE"] = str(cert[0])  # the app trusts the run's certificate
    starttls = security == "starttls"
    with SMTPServer(auth=starttls, starttls=starttls, cert=cert) as server:
        point_site_at(site, server, security)
        # Warm-up (templates, caches), with the statements the app issued; the messages
        # it sent, as the server received them, are the baseline's.
        counted: list[int] = []
        with recording(server) as messages:
            measure_app(site, server, emails, counted)
        statements = counted[0]
        measure_smtplib(server, messages, cert)  # warm-up
        measure_composing(site, server, emails)
        app_runs: list[tuple[float, int]] = []
        loop_runs: list[tuple[float, int]] = []
        composing_runs: list[float] = []
        floor_runs: list[float] = []
        for _ in range(args.repeat):  # interleaved: load bursts hit both sides alike
            app_runs.append(measure_app(site, server, emails))
            loop_runs.append(measure_smtplib(server, messages, cert))
            floor_runs.append(measure_floor(site, server, messages, cert))
            composing_runs.append(measure_composing(site, server, emails))
    (app_s, app_connections), (loop_s, loop_connections) = min(app_runs), min(loop_runs)
    composing_s, floor_s = min(composing_runs), min(floor_runs)
    label = "STARTTLS + AUTH" if starttls else "plain SMTP"
    print(f"\n{label}, {emails} emails for one site ({args.rows:,} requests in the table):")
    print(
        f"  the app (send_pending_emails):  {app_s:7.2f} s  {emails / app_s:7.0f} emails/s  "
        f"{app_connections} connection(s), {statements} SQL statements"
    )
    print(
        f"  smtplib loop, one connection:   {loop_s:7.2f} s  {emails / loop_s:7.0f} emails/s  "
        f"{loop_connections} connection(s)"
    )
    print(
        f"  floor: the loop + one committed UPDATE per email: {floor_s:.2f} s, "
        f"{floor_s / loop_s:.2f}x the loop"
    )
    print(
        f"  ratio (app / smtplib loop):      {app_s / loop_s:.2f}x  "
        f"({app_s / floor_s:.2f}x the floor)"
    )
    print(
        f"  (rendered + composed + Django's backend, no outbox: {composing_s:.2f} s, "
        f"{composing_s / loop_s:.2f}x the loop; the app is {app_s / composing_s:.2f}x that)"
    )
    return {
        "name": "email_batch_starttls" if starttls else "email_batch",
        "benchmark": "email_batch",
        "measured": f"the app's send_pending_emails ({label})",
        "time_s": app_s,
        "baseline": "smtplib loop, one connection",
        "baseline_s": loop_s,
        "ratio": app_s / loop_s if loop_s else None,
        "statements": statements,
        "floor_s": floor_s,  # the loop + one durable UPDATE per email
        "floor_ratio": app_s / floor_s if floor_s else None,
        "composing_s": composing_s,  # render + compose + send, no outbox (for reference)
        "ratio_to_composing": app_s / composing_s if composing_s else None,
        "emails": emails,
        "rows": args.rows,
        "connections": app_connections,
        "baseline_connections": loop_connections,
        "notes": (
            f"{emails} emails: {emails / app_s:.0f}/s vs {emails / loop_s:.0f}/s; "
            f"{app_connections} vs {loop_connections} connection(s); "
            f"{statements} SQL statements; {app_s / floor_s:.2f}x the floor (the loop with "
            f"one committed UPDATE per email: {floor_s / loop_s:.2f}x the loop)"
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
            seed(site, args.emails, args.rows)
            print(f"Database: {connection.vendor}; best of {args.repeat} run(s).")
            modes = ["none", "starttls"] if args.security == "both" else [args.security]
            return [run(security, site, args, workdir) for security in modes]
        finally:
            connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
