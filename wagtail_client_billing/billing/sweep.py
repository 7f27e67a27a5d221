"""The expiry sweep: every Pending request past ``expires_at`` becomes Expired, in batches
of one statement, each flipped row with its audit entry (benchmarks/expiry_sweep.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django.utils import timezone
from wagtail.models import ModelLogEntry

from .. import signals
from ..db import insert_columns, insert_rows
from ..models import BillingRequest
from ..money import format_money
from .states import ACTION_EXPIRED, LOGGED, Status, announce

#: Rows per batch (one statement, one transaction). Larger batches cost less per row (100,000
#: overdue: 2.2x a raw UPDATE in batches of 5,000, 1.86x in 20,000, 1.80x in one), smaller ones
#: hold their row locks for less time: a webhook for one of these waits at most a batch (about
#: 2 s for 20,000 on the development machine).
BATCH_SIZE = 20_000
#: log_data's keys and their columns
SWEPT = {key: key for key in LOGGED} | {"site": "site_id"}
Labels = dict[tuple[int, str], str]


def expire_overdue(*, now: datetime | None = None, batch_size: int = BATCH_SIZE) -> list[int]:
    """Flip every Pending request past ``expires_at`` to Expired, oldest first, in batches
    of one ``UPDATE ... RETURNING`` (on PostgreSQL feeding the audit entries' INSERT in the
    same statement): only the rows this sweep flipped get an entry and a signal."""
    now = now or timezone.now()
    labels: Labels = {}  # Babel once per amount and currency, not once per row
    flip = _flip_and_log if connection.vendor == "postgresql" else _flip_then_log
    flipped: list[int] = []
    # Each batch starts where the last one ended (not at the index's start, past the index
    # entries of every row flipped so far: quadratic over a million rows).
    since: Any = datetime(1970, 1, 1, tzinfo=UTC)
    while True:
        with transaction.atomic():
            rows = flip(now, since, batch_size, labels)  # (id, expires_at)
            ids = [pk for pk, _ in rows]
            if ids and signals.billing_request_expired.has_listeners(BillingRequest):
                _announce_after_commit(list(BillingRequest.objects.filter(pk__in=ids)))
        flipped.extend(ids)
        if len(ids) < batch_size:
            return flipped
        since = max(expires_at for _, expires_at in rows)


def _announce_after_commit(requests: list[BillingRequest]) -> None:
    def send() -> None:  # one callback per batch, not one per row
        for request in requests:
            announce(signals.billing_request_expired, request)

    transaction.on_commit(send)


def _batch_update(returning: str) -> str:
    table, quote = BillingRequest._meta.db_table, connection.ops.quote_name
    return (  # names ours, values parameters: Expired, now, Pending, now, since, size, Pending
        f"UPDATE {quote(table)} SET status = %s, expired_at = %s WHERE id IN "  # noqa: S608
        f"(SELECT id FROM {quote(table)} WHERE status = %s AND expires_at <= %s "
        f"AND expires_at >= %s ORDER BY expires_at LIMIT %s) AND status = %s "
        f"RETURNING {returning}"
    )


def _label(labels: Labels, amount: int, currency: str) -> str:
    key = (amount, currency)
    return labels.get(key) or labels.setdefault(key, format_money(amount, currency))


Flipped = list[tuple[int, Any]]  # id, expires_at


def _params(now: datetime, since: Any, batch_size: int) -> list[Any]:
    return [Status.EXPIRED, now, Status.PENDING, now, since, batch_size, Status.PENDING]


def _flip_then_log(now: datetime, since: Any, batch_size: int, labels: Labels) -> Flipped:
    """Any database: the UPDATE returns what the entries need; they go in one executemany."""
    returning = f"id, expires_at, {', '.join(SWEPT.values())}"
    with connection.cursor() as cursor:
        cursor.execute(_batch_update(returning), _params(now, since, batch_size))
        rows = cursor.fetchall()
    content_type_id = ContentType.objects.get_for_model(BillingRequest).pk
    entries = []
    for pk, _expires_at, *values in rows:
        data = dict(zip(SWEPT, values, strict=True))
        label = f"{data['email']} · {_label(labels, data['amount'], data['currency'])}"
        entries.append(
            {
                "content_type_id": content_type_id, "object_id": str(pk), "label": label,
                "action": ACTION_EXPIRED, "timestamp": now, "data": {**data, "source": "sweep"},
            }
        )  # fmt: skip
    insert_rows(ModelLogEntry, entries)
    return [(pk, expires_at) for pk, expires_at, *_ in rows]


def _flip_and_log(now: datetime, since: Any, batch_size: int, labels: Labels) -> Flipped:
    """PostgreSQL: the UPDATE feeds the entries' INSERT in one statement; the labels of
    every overdue amount are formatted once, before the first batch."""
    quote = connection.ops.quote_name
    if not labels:
        overdue = BillingRequest.objects.filter(status=Status.PENDING, expires_at__lte=now)
        for amount, currency in overdue.values_list("amount", "currency").distinct():
            _label(labels, amount, currency)
    data = ", ".join(f"'{key}', f.{column}" for key, column in SWEPT.items())
    # A request made overdue since (none should be) gets its amount unformatted.
    label = "f.email || ' · ' || COALESCE(l.label, f.amount || ' ' || UPPER(f.currency))"
    computed = {
        "label": label, "object_id": "f.id::text",
        "data": f"jsonb_build_object({data}, 'source', 'sweep')",
    }  # fmt: skip
    given = {
        "content_type_id": ContentType.objects.get_for_model(BillingRequest).pk,
        "action": ACTION_EXPIRED,
        "timestamp": now,
    }
    fields, columns = insert_columns(ModelLogEntry)
    values = [computed.get(field.attname, "%s") for field in fields]
    params = [
        field.get_db_prep_save(given.get(field.attname, field.get_default()), connection)
        for field in fields
        if field.attname not in computed
    ]
    returning = f"id, expires_at, {', '.join(SWEPT.values())}"
    table = quote(ModelLogEntry._meta.db_table)
    unnest = "SELECT * FROM unnest(%s::bigint[], %s::varchar[], %s::text[])"
    sql = (  # names are ours, values parameters; the INSERT runs though its rows go unread
        f"WITH flipped AS ({_batch_update(returning)}), "  # noqa: S608
        f"labels (amount, currency, label) AS ({unnest}), logged AS ("
        f"INSERT INTO {table} ({columns}) SELECT {', '.join(values)} FROM flipped f "
        "LEFT JOIN labels l ON l.amount = f.amount AND l.currency = f.currency) "
        "SELECT id, expires_at FROM flipped"
    )
    keys = list(labels)
    arrays: list[Any] = [[a for a, _ in keys], [c for _, c in keys], [labels[k] for k in keys]]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*_params(now, since, batch_size), *arrays, *params])
        return list(cursor.fetchall())
