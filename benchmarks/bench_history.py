"""History for ``--rows``: billing requests (and Stripe events) already in the tables.

A benchmark run with ``--rows N`` measures its operation on a table of N billing
requests: the rows it works on plus ``add_requests(site, N - its own)`` of history,
spread over a year and every status, and (for the webhooks) as many processed Stripe
events. Bulk inserts, 5,000 rows per statement batch.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

STATUSES = ["pending"] * 6 + ["paid"] * 8 + ["expired"] * 4 + ["deleted"] * 2
YEAR = 365 * 86400
BATCH = 5000


def add_requests(site: Any, count: int, *, account_id: str = "") -> None:
    """``count`` billing requests of ``site``: a year of history, every status (none of
    them Pending and overdue: the pending ones expire in the future)."""
    from django.utils import timezone

    from wagtail_client_billing.models import BillingRequest

    now = timezone.now()

    def request(number: int) -> BillingRequest:
        created = now - timedelta(seconds=(number * 7_919_993) % YEAR)
        status = STATUSES[(number * 7) % len(STATUSES)]
        return BillingRequest(
            created_at=created,
            site=site,
            account_id=account_id,
            email=f"history{number}@example.com",
            currency="eur",
            amount=1000 + (number * 37) % 90_000,
            description=f"Website maintenance #{number}",
            success_url="https://client.example/thanks/",
            cancel_url="https://client.example/cancel/",
            status=status,
            mode="test",
            checkout_session_id=f"cs_test_history_{number}",
            checkout_url=f"https://checkout.stripe.test/c/pay/cs_test_history_{number}",
            expires_at=now + timedelta(hours=23) if status == "pending" else created,
            paid_at=created + timedelta(hours=2) if status == "paid" else None,
            expired_at=created + timedelta(days=1) if status == "expired" else None,
            deleted_at=created + timedelta(hours=1) if status == "deleted" else None,
        )

    # created_at is auto_now_add: bulk_create would stamp every row with this instant.
    created_at = BillingRequest._meta.get_field("created_at")
    created_at.auto_now_add = False
    try:
        for first in range(0, count, BATCH):
            BillingRequest.objects.bulk_create(
                [request(number) for number in range(first, min(first + BATCH, count))],
                batch_size=BATCH,
            )
    finally:
        created_at.auto_now_add = True
    analyze()


def add_events(count: int, *, account_id: str = "") -> None:
    """``count`` processed ``checkout.session.completed`` events of the history."""
    from wagtail_client_billing.models import WebhookEvent

    for first in range(0, count, BATCH):
        WebhookEvent.objects.bulk_create(
            [
                WebhookEvent(
                    stripe_id=f"evt_history_{number:08d}",
                    type="checkout.session.completed",
                    account=account_id,
                    payload={"id": f"evt_history_{number:08d}", "object": "event"},
                    status="processed",
                    attempts=1,
                )
                for number in range(first, min(first + BATCH, count))
            ],
            batch_size=BATCH,
        )
    analyze()


def analyze() -> None:
    """The tables as a live site has them after a bulk insert: vacuumed (visibility map
    and hint bits set) and analyzed. Left to autovacuum, the vacuum of a 100,000-row
    insert could land in the measurement, on the same two cores."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
