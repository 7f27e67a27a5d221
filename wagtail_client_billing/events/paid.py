"""The common webhook in one statement (PostgreSQL): a new paid Checkout event for a
Pending request of the linked account. The statement stores the event, makes the request
Paid and writes its audit entry, its notification and the notification's django-q2 task;
it commits by itself. Any other case (or any doubt) writes nothing here and takes the
general path (``processing.store_and_apply``), which decides exactly as before."""

from __future__ import annotations

from contextlib import nullcontext
from functools import cache
from types import SimpleNamespace
from typing import Any, cast

from django.db import DatabaseError, connection, connections, transaction
from django.db.models import Field, Model
from wagtail.models import ModelLogEntry

from .. import signals, stripe_api
from ..billing.states import (
    ACTION_PAID,
    LOGGED,
    PAID_REFERENCES,
    announce,
    log_entry,
    paid_values,
)
from ..db import insert_select_sql, insert_values
from ..mail.queue import email_task, enqueue_pending_emails, notification, paid_key
from ..models import (
    AgencyBillingSettings,
    BillingRequest,
    OutgoingEmail,
    StripeConnection,
    WebhookEvent,
)
from .handlers import HANDLERS, MONEY_EVENTS, checkout_completed
from .invoices import metadata_id

Status = BillingRequest.Status
REQUEST_FIELDS = BillingRequest._meta.concrete_fields


def apply_paid(event: WebhookEvent, data: dict[str, Any], body: str | None = None) -> bool:
    """Store a new ``event`` as processed and make its request Paid, as the general path
    would; False (nothing written) unless it is that case, on PostgreSQL. ``body``: the
    event's JSON as received (stored as it is, not encoded again)."""
    session = data["data"]["object"]
    references = [session.get(name) for name in PAID_REFERENCES]
    metadata = session.get("metadata")
    site_id = metadata_id(metadata.get("site") if isinstance(metadata, dict) else None)
    amount, currency = session.get("amount_total"), session.get("currency")
    if (
        connection.vendor != "postgresql"
        or event.type not in MONEY_EVENTS
        or HANDLERS.get(event.type) is not checkout_completed  # a project's own handler
        or not isinstance(session.get("id"), str)
        or not all(isinstance(reference, str | None) for reference in references)
        or site_id is None
        or not (type(amount) is int and isinstance(currency, str) and len(currency) == 3)
        or not stripe_api.is_paid(cast(Any, SimpleNamespace(**session)), event_type=event.type)
    ):
        return False
    values = paid_values(SimpleNamespace(**session))
    paid = {"status": Status.PAID, **values, "late_payment": False}
    event.status, event.attempts = WebhookEvent.Status.PROCESSED, 1
    event.processed_at = paid["paid_at"]
    # The request as the session describes it (checked against the row in the statement).
    described = BillingRequest(site_id=site_id, email="", amount=amount, currency=currency)
    try:
        # One statement: atomic by itself (a savepoint only inside a caller's transaction).
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            request = _pay_and_record(event, session["id"], paid, described, body)
    except (DatabaseError, UnicodeEncodeError):  # the general path tells why
        request = None
    if request is None:
        event.pk = None
        return False
    transaction.on_commit(lambda: announce(signals.billing_request_paid, request, late=False))
    return True


def _pay_and_record(
    event: WebhookEvent,
    session_id: str,
    paid: dict[str, Any],
    described: BillingRequest,
    body: str | None,
) -> BillingRequest | None:
    """One statement: the event inserted and its request made Paid if it is new and the
    request Pending, of the event's mode, of the linked account (as the general path's
    ``match_connection`` and ``account_linked`` decide) and as the session describes it
    (site, amount, currency); with it the Paid audit entry, the agency's notification (if
    it wants them) and, with django-q2's ORM broker on this database, its task: what
    ``billing.mark_paid`` writes for an on-time payment. The request as written."""
    store_values = insert_values(event, stored := insert_select_sql(WebhookEvent)[1])
    if body is not None:  # valid JSON (parsed): PostgreSQL reads it, no need to encode it again
        from psycopg.types.json import Jsonb  # PostgreSQL only: SQLite installs lack psycopg

        payload = stored.index(WebhookEvent._meta.get_field("payload"))
        store_values[payload] = Jsonb(event.payload, dumps=lambda _: body)
    # The entry's label is "<email> · <amount>": the amount formatted here, the email read.
    entry = log_entry(described, ACTION_PAID, source=event.stripe_id, late=False)
    email = notification(OutgoingEmail.Kind.PAID, described, key="")
    task = email_task(described.site_id)
    sql, (entry_fields, email_fields, task_fields) = _statement(
        connection.alias, tuple(paid), task.__class__ if task is not None else None
    )
    account = event.account
    params = [entry.label, event.stripe_id, session_id, event.mode, Status.PENDING]
    params += [described.site_id, described.amount, described.currency, account, account, account]
    params += [*store_values, *paid.values(), *insert_values(entry, entry_fields)]
    params += insert_values(email, email_fields)
    params.append(AgencyBillingSettings._meta.get_field("notify_payments").get_default())
    if task is not None:
        params += insert_values(task, task_fields)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    event.pk, notified = row[:2]
    if notified and task is None:
        enqueue_pending_emails(described.site_id)  # after the commit
    return BillingRequest.from_db(
        connection.alias, [field.attname for field in REQUEST_FIELDS], row[2:]
    )


@cache  # the same text for every event: built per event, it was a quarter of its Python
def _statement(
    alias: str, changed: tuple[str, ...], tasks: type[Model] | None
) -> tuple[str, tuple[list[Field], list[Field], list[Field]]]:
    """``_pay_and_record``'s statement (``changed``: the paid columns it sets) and the
    fields whose values follow the entry's, the notification's and the task's INSERTs."""
    quote = connections[alias].ops.quote_name
    requests = quote(BillingRequest._meta.db_table)
    stripe_connections = quote(StripeConnection._meta.db_table)
    logged = ", ".join(f"'{name}', p.{quote(name)}" for name in LOGGED)
    names = {  # SQL of the paid row ``p``: names are ours, values parameters
        "object_id": "p.id::text",
        "label": "p.email || (SELECT label FROM given)",
        "data": f"jsonb_build_object('site', p.site_id, {logged}, "  # noqa: S608
        "'source', (SELECT source FROM given), 'late', false)",
    }
    entry_sql, entry_fields = insert_select_sql(ModelLogEntry, " FROM paid p", tuple(names.items()))
    key = paid_key(0).removesuffix("0")  # the key of request p.id
    wants = quote(AgencyBillingSettings._meta.db_table)
    notify = f"SELECT notify_payments FROM {wants} ORDER BY id LIMIT 1"  # noqa: S608
    email_sql, email_fields = insert_select_sql(
        OutgoingEmail,
        f" FROM paid p WHERE COALESCE(({notify}), %s)",
        (("key", f"'{key}' || p.id"), ("site_id", "p.site_id"), ("billing_request_id", "p.id")),
    )
    store_sql = insert_select_sql(WebhookEvent)[0]
    changes = ", ".join(f"{quote(name)} = %s" for name in changed)
    columns = ", ".join(f"{quote(str(field.column))}" for field in REQUEST_FIELDS)
    sql = f"""
        WITH given (label, source) AS (SELECT %s::text, %s::text), target AS (
            SELECT r.id FROM {requests} r
            JOIN {stripe_connections} c ON c.mode = r.mode AND c.unlinked_at IS NULL
            WHERE r.checkout_session_id = %s AND r.mode = %s AND r.status = %s
              AND r.site_id = %s AND r.amount = %s AND r.currency = %s
              AND CASE WHEN c.direct THEN %s = '' AND r.account_id = ''
                       ELSE c.account_id = %s AND r.account_id = %s END
            ORDER BY r.id LIMIT 1
            FOR UPDATE OF r
        ), stored AS (
            {store_sql} WHERE EXISTS (SELECT 1 FROM target)
            ON CONFLICT (stripe_id) DO NOTHING RETURNING id
        ), paid AS (
            UPDATE {requests} SET {changes}
            WHERE id IN (SELECT id FROM target) AND EXISTS (SELECT 1 FROM stored)
            RETURNING {columns}
        ), entry AS ({entry_sql}), email AS (
            {email_sql} ON CONFLICT (key) DO NOTHING RETURNING id
        )
    """  # noqa: S608 (names are ours, values parameters)
    task_fields: list[Field] = []
    if tasks is not None:
        task_sql, task_fields = insert_select_sql(tasks, " WHERE EXISTS (SELECT 1 FROM email)")
        sql += f", task AS ({task_sql})"
    sql += " SELECT (SELECT id FROM stored), (SELECT count(*) FROM email), p.* FROM paid p"
    return sql, (entry_fields, email_fields, task_fields)
