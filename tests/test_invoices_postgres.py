"""Invoice events racing on PostgreSQL (``events/invoices.py``): each delivery runs in its
own transaction and connection, as the web workers do."""

from __future__ import annotations

import threading

import pytest
from django import db

from tests.factories import request_details
from tests.test_invoices import invoice_object, send
from wagtail_client_billing import billing
from wagtail_client_billing.events.invoices import invoice_values
from wagtail_client_billing.models import Invoice, WebhookEvent
from wagtail_client_billing.stripe_api import construct_event

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("wagtail_root"),
]


def as_sent(invoice: dict) -> object:
    """The invoice as the handler gets it: the SDK's object of an event's data."""
    return construct_event({"object": "event", "data": {"object": invoice}}).data.object


def test_a_paid_invoice_stays_paid_when_its_open_event_commits_meanwhile(client, sites, connection):
    """invoice.finalized and invoice.paid delivered at once: the paid one looks for the
    row, finds none, and the finalized one commits it (open) before the paid one goes on.
    Seen in CI: the paid event was ignored as "older" and the invoice stayed Open."""
    request = billing.create_request(site=sites[0], details=request_details())
    billing.mark_paid(request, source="test")
    opened = invoice_object(request, status="open")
    opened["status_transitions"] = {**opened["status_transitions"], "paid_at": None}
    table = Invoice._meta.db_table

    def finalized_elsewhere() -> None:  # another worker: its own connection, committed
        try:
            Invoice.objects.create(
                billing_request=request, stripe_id=opened["id"], **invoice_values(as_sent(opened))
            )
        finally:
            db.connection.close()

    def meanwhile(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not made and sql.startswith("UPDATE") and table in sql:
            made.append(threading.Thread(target=finalized_elsewhere))
            made[0].start()
            made[0].join()
        return result

    made: list[threading.Thread] = []
    with db.connection.execute_wrapper(meanwhile):
        event = send(client, connection, "invoice.paid", invoice_object(request))

    assert made, "the paid event's first look at the row ran"
    assert event.status == WebhookEvent.Status.PROCESSED, event.note
    assert Invoice.objects.get().status == "paid"
    (invoice,) = Invoice.objects.all()
    assert (invoice.status, invoice.billing_request_id) == ("paid", request.pk)
    assert invoice.paid_at is not None
