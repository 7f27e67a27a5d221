"""The common webhook in two statements (PostgreSQL): a new paid Checkout event for a
Pending request of the linked account. One statement stores the event and makes the
request Paid, the next writes its audit entry, its notification and the notification's
django-q2 task; one commit. Any other case (or any doubt) writes nothing here and takes
the general path (``processing.store_and_apply``), which decides exactly as before."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from django.db import DatabaseError, connection, transaction

from .. import signals, stripe_api
from ..billing.states import ACTION_PAID, PAID_REFERENCES, announce, log_entry, paid_values
from ..db import insert_select
from ..mail.queue import email_task, enqueue_pending_emails, notification, paid_key
from ..models import (
    AgencyBillingSettings,
    BillingRequest,
    OutgoingEmail,
    StripeConnection,
    WebhookEvent,
)
from .handlers import HANDLERS, MONEY_EVENTS, checkout_completed

Status = BillingRequest.Status
REQUEST_FIELDS = BillingRequest._meta.concrete_fields


class _NotHere(Exception):
    """Roll back: the general path decides."""


def apply_paid(event: WebhookEvent, data: dict[str, Any]) -> bool:
    """Store a new ``event`` as processed and make its request Paid, as the general path
    would; False (nothing written) unless it is that case, on PostgreSQL."""
    session = data["data"]["object"]
    references = [session.get(name) for name in PAID_REFERENCES]
    if (
        connection.vendor != "postgresql"
        or event.type not in MONEY_EVENTS
        or HANDLERS.get(event.type) is not checkout_completed  # a project's own handler
        or not isinstance(session.get("id"), str)
        or not all(isinstance(reference, str | None) for reference in references)
        or not stripe_api.is_paid(cast(Any, SimpleNamespace(**session)), event_type=event.type)
    ):
        return False
    values = paid_values(SimpleNamespace(**session))
    paid = {"status": Status.PAID, **values, "late_payment": False}
    event.status, event.attempts = WebhookEvent.Status.PROCESSED, 1
    event.processed_at = paid["paid_at"]
    try:
        with transaction.atomic():
            request = _store_and_pay(event, session["id"], paid)
            if request is None:
                raise _NotHere
            _record_and_notify(event, request)
            transaction.on_commit(
                lambda: announce(signals.billing_request_paid, request, late=False)
            )
    except (_NotHere, DatabaseError, UnicodeEncodeError):  # the general path tells why
        event.pk = None
        return False
    return True


def _store_and_pay(
    event: WebhookEvent, session_id: str, paid: dict[str, Any]
) -> BillingRequest | None:
    """The event inserted and its request made Paid in one statement, if it is new and its
    request Pending, of the event's mode and of the linked account (as the general path's
    ``match_connection`` and ``account_linked`` decide); the request as written."""
    requests, connections = (quote(m._meta.db_table) for m in (BillingRequest, StripeConnection))
    store_sql, values = insert_select(event)
    changes = ", ".join(f"{quote(name)} = %s" for name in paid)
    columns = ", ".join(f"{quote(str(field.column))}" for field in REQUEST_FIELDS)
    sql = f"""
        WITH target AS (
            SELECT r.id FROM {requests} r
            JOIN {connections} c ON c.mode = r.mode AND c.unlinked_at IS NULL
            WHERE r.checkout_session_id = %s AND r.mode = %s AND r.status = %s
              AND CASE WHEN c.direct THEN %s = '' AND r.account_id = ''
                       ELSE c.account_id = %s AND r.account_id = %s END
            ORDER BY r.id LIMIT 1
            FOR UPDATE OF r
        ), stored AS (
            {store_sql} WHERE EXISTS (SELECT 1 FROM target)
            ON CONFLICT (stripe_id) DO NOTHING RETURNING id
        )
        UPDATE {requests} SET {changes}
        WHERE id IN (SELECT id FROM target) AND EXISTS (SELECT 1 FROM stored)
        RETURNING (SELECT id FROM stored), {columns}
    """  # noqa: S608 (names are ours, values parameters)
    account = event.account
    params = [session_id, event.mode, Status.PENDING, account, account, account, *values]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *paid.values()])
        row = cursor.fetchone()
    if row is None:
        return None
    event.pk = row[0]
    return BillingRequest.from_db(
        connection.alias, [field.attname for field in REQUEST_FIELDS], row[1:]
    )


def _record_and_notify(event: WebhookEvent, request: BillingRequest) -> None:
    """The Paid audit entry, the agency's notification (if it wants them) and, with
    django-q2's ORM broker on this database, its task, in one statement: what
    ``billing.mark_paid`` writes for an on-time payment."""
    entry = log_entry(request, ACTION_PAID, source=event.stripe_id, late=False)
    email = notification(OutgoingEmail.Kind.PAID, request, key=paid_key(request.pk))
    task = email_task(request.site_id)
    wants = AgencyBillingSettings._meta
    entry_sql, entry_values = insert_select(entry)
    email_sql, email_values = insert_select(email)
    sql = f"""
        WITH entry AS ({entry_sql}), email AS (
            {email_sql} WHERE COALESCE(
                (SELECT notify_payments FROM {quote(wants.db_table)} ORDER BY id LIMIT 1), %s
            ) ON CONFLICT (key) DO NOTHING RETURNING id
        )
    """  # noqa: S608 (names are ours, values parameters)
    params = [*entry_values, *email_values, wants.get_field("notify_payments").get_default()]
    if task is not None:
        task_sql, task_values = insert_select(task)
        sql += f", task AS ({task_sql} WHERE EXISTS (SELECT 1 FROM email))"  # noqa: S608
        params += task_values
    with connection.cursor() as cursor:
        cursor.execute(sql + " SELECT count(*) FROM email", params)  # noqa: S608
        (notified,) = cursor.fetchone()
    if notified and task is None:
        enqueue_pending_emails(request.site_id)  # after the commit


def quote(name: str) -> str:
    return connection.ops.quote_name(name)
