"""Invoices (Checkout's ``invoice_creation``, a subscription's first invoice), their
hosted page and PDF, through the real stripe SDK against the simulator."""

from __future__ import annotations

import re

import pytest
import requests
import stripe

from .test_simulator_checkout import payment_params, subscription_params

INVOICING = {
    "enabled": True,
    "invoice_data": {
        "footer": "Agency SARL, 1 rue de la Paix, Paris",
        "custom_fields": [{"name": "VAT number", "value": "FR12345678901"}],
        "description": "Website maintenance, March",
        "metadata": {"billing_request": "42"},
    },
}


@pytest.fixture
def account(stripe_client):
    """The agency's connected account (direct charges)."""
    return stripe_client().v1.accounts.create(params={"type": "standard", "country": "FR"}).id


@pytest.fixture
def client(stripe_client, account):
    """A client that sends ``Stripe-Account`` on every call, as the app does."""
    return stripe_client(stripe_account=account)


def pdf_text(body: bytes) -> bytes:
    """Check the PDF's structure (each xref offset starts its object); return its text."""
    assert body.startswith(b"%PDF-1.") and body.rstrip().endswith(b"%%EOF")
    start = int(body.rsplit(b"startxref", 1)[1].split()[0])
    assert body[start:].startswith(b"xref")
    entries = body[start:].split(b"\n")[3:]
    for number, entry in enumerate(entries, start=1):
        if not entry.endswith(b" n "):
            break
        offset = int(entry.split()[0])
        assert body[offset:].startswith(b"%d 0 obj" % number)
    return body


def test_a_one_time_payment_with_invoice_creation_gets_a_paid_invoice(
    client, stripe_simulator, account
):
    session = client.v1.checkout.sessions.create(params=payment_params(invoice_creation=INVOICING))
    assert session.invoice_creation.enabled is True
    assert session.invoice_creation.invoice_data.footer == INVOICING["invoice_data"]["footer"]

    stripe_simulator.complete_checkout(session.id)
    session = client.v1.checkout.sessions.retrieve(session.id)
    invoice = client.v1.invoices.retrieve(session.invoice)

    assert re.fullmatch(r"[A-Z0-9]{8}-0001", invoice.number)
    assert (invoice.status, invoice.amount_paid, invoice.amount_due) == ("paid", 12500, 12500)
    assert (invoice.amount_remaining, invoice.currency, invoice.total) == (0, "eur", 12500)
    assert invoice.customer == session.customer and session.customer.startswith("cus_")
    assert invoice.customer_email == "client@example.com"
    assert invoice.footer == "Agency SARL, 1 rue de la Paix, Paris"
    assert [f.to_dict() for f in invoice.custom_fields] == [
        {"name": "VAT number", "value": "FR12345678901"}
    ]
    assert invoice.description == "Website maintenance, March"
    assert invoice.metadata.to_dict() == {"billing_request": "42"}
    assert (invoice.billing_reason, invoice.subscription) == ("manual", None)
    assert invoice.status_transitions.paid_at and invoice.status_transitions.finalized_at
    [line] = invoice.lines.data
    assert (line.description, line.amount, line.quantity) == ("Website maintenance", 12500, 1)

    [payment] = client.v1.invoice_payments.list(params={"invoice": invoice.id}).data
    assert payment.payment.payment_intent == session.payment_intent
    assert (payment.status, payment.amount_paid) == ("paid", 12500)

    events = [e for e in stripe_simulator.events() if e["type"].startswith("invoice.")]
    assert [e["type"] for e in events] == ["invoice.created", "invoice.finalized", "invoice.paid"]
    assert {e["account"] for e in events} == {account}
    assert events[-1]["data"]["object"]["number"] == invoice.number
    [completed] = stripe_simulator.events("checkout.session.completed")
    assert completed["data"]["object"]["invoice"] == invoice.id

    # The next invoice of the account follows in the same sequence.
    other = client.v1.checkout.sessions.create(params=payment_params(invoice_creation=INVOICING))
    stripe_simulator.complete_checkout(other.id)
    second = client.v1.invoices.retrieve(client.v1.checkout.sessions.retrieve(other.id).invoice)
    assert second.number == f"{invoice.number[:8]}-0002"


def test_the_hosted_invoice_page_and_the_pdf_open(client, stripe_simulator):
    session = client.v1.checkout.sessions.create(params=payment_params(invoice_creation=INVOICING))
    stripe_simulator.complete_checkout(session.id)
    session = client.v1.checkout.sessions.retrieve(session.id)
    invoice = client.v1.invoices.retrieve(session.invoice)

    page = requests.get(invoice.hosted_invoice_url, timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    for text in (invoice.number, "125.00 EUR", "Paid", "FR12345678901", "Agency SARL"):
        assert text in page.text
    assert invoice.invoice_pdf in page.text
    charge = client.v1.charges.retrieve(
        client.v1.payment_intents.retrieve(session.payment_intent).latest_charge
    )
    assert charge.receipt_url in page.text  # "Download receipt"

    document = requests.get(invoice.invoice_pdf, timeout=5)
    assert document.status_code == 200
    assert document.headers["Content-Type"] == "application/pdf"
    text = pdf_text(document.content)
    for value in (invoice.number, "Total: 125.00 EUR", "VAT number: FR12345678901"):
        assert f"{value}".encode() in text
    missing = requests.get(invoice.hosted_invoice_url.replace("in_", "in_0"), timeout=5)
    assert missing.status_code == 404


def test_without_invoice_creation_there_is_no_invoice(client, stripe_simulator):
    session = client.v1.checkout.sessions.create(params=payment_params())
    assert session.invoice_creation.enabled is False
    stripe_simulator.complete_checkout(session.id)
    session = client.v1.checkout.sessions.retrieve(session.id)
    assert (session.invoice, session.customer) == (None, None)
    assert client.v1.invoices.list().data == []


def test_a_subscription_has_its_first_invoice(client, stripe_simulator):
    session = client.v1.checkout.sessions.create(params=subscription_params())
    stripe_simulator.complete_checkout(session.id)
    session = client.v1.checkout.sessions.retrieve(session.id)
    subscription = client.v1.subscriptions.retrieve(session.subscription)

    assert subscription.latest_invoice == session.invoice
    invoice = client.v1.invoices.retrieve(session.invoice)
    assert (invoice.billing_reason, invoice.status, invoice.amount_paid) == (
        "subscription_create", "paid", 12500
    )  # fmt: skip
    assert invoice.subscription == subscription.id
    assert invoice.parent.subscription_details.subscription == subscription.id
    [line] = invoice.lines.data
    assert line.description == "1 × Website maintenance (at €125.00 / month)"
    item = subscription["items"].data[0]
    assert (line.period.start, line.period.end) == (
        item.current_period_start, item.current_period_end
    )  # fmt: skip

    for params in ({"subscription": subscription.id}, {"customer": session.customer},
                   {"status": "paid"}):  # fmt: skip
        assert [i.id for i in client.v1.invoices.list(params=params).data] == [invoice.id]
    assert client.v1.invoices.list(params={"status": "open"}).data == []

    # The subscription's payment can be refunded, through its invoice payment.
    [payment] = client.v1.invoice_payments.list(params={"invoice": invoice.id}).data
    intent = payment.payment.payment_intent
    assert client.v1.payment_intents.retrieve(intent).status == "succeeded"
    named = {"payment": {"type": "payment_intent", "payment_intent": intent}}
    by_intent = client.v1.invoice_payments.list(params=named)
    assert [p.id for p in by_intent.data] == [payment.id]
    refund = client.v1.refunds.create(params={"payment_intent": intent, "amount": 2500})
    assert refund.status == "succeeded"


def test_delayed_payments_invoice_once_they_settle(client, stripe_simulator):
    one_time = client.v1.checkout.sessions.create(params=payment_params(invoice_creation=INVOICING))
    stripe_simulator.complete_checkout(one_time.id, delayed=True)
    assert client.v1.checkout.sessions.retrieve(one_time.id).invoice is None
    stripe_simulator.settle_async(one_time.id)
    invoice_id = client.v1.checkout.sessions.retrieve(one_time.id).invoice
    assert client.v1.invoices.retrieve(invoice_id).status == "paid"

    monthly = client.v1.checkout.sessions.create(params=subscription_params())
    stripe_simulator.complete_checkout(monthly.id, delayed=True)
    first = client.v1.invoices.retrieve(client.v1.checkout.sessions.retrieve(monthly.id).invoice)
    assert (first.status, first.amount_remaining) == ("open", 12500)
    stripe_simulator.settle_async(monthly.id, succeed=False)
    first = client.v1.invoices.retrieve(first.id)
    assert (first.status, first.attempt_count) == ("open", 1)
    assert [
        e["data"]["object"]["id"] for e in stripe_simulator.events("invoice.payment_failed")
    ] == [first.id]


def test_tax_id_and_billing_address_collection(client, stripe_simulator):
    session = client.v1.checkout.sessions.create(
        params=payment_params(
            invoice_creation=INVOICING,
            tax_id_collection={"enabled": True},
            billing_address_collection="required",
        )
    )
    assert session.billing_address_collection == "required"
    http = requests.Session()
    page = http.get(session.url, timeout=5).text
    for label in ("Tax ID", "Business name", "Address line 1", "Postal code", "City", "Country"):
        assert f">{label}</label>" in page

    refused = http.post(session.url, data={"action": "pay", "line1": "1 rue X"}, timeout=5)
    assert "Please fill in: Postal code, City, Country." in refused.text
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"

    form = {"action": "pay", "email": "client@example.com", "name": "Client SAS",
            "tax_id": "FR98765432109", "line1": "1 rue X", "postal_code": "75001",
            "city": "Paris", "country": "fr"}  # fmt: skip
    paid = http.post(session.url, data=form, allow_redirects=False, timeout=5)
    assert paid.status_code == 303
    session = client.v1.checkout.sessions.retrieve(session.id)
    details = session.customer_details
    assert (details.name, details.address.city, details.address.country) == (
        "Client SAS", "Paris", "FR"
    )  # fmt: skip
    assert [t.to_dict() for t in details.tax_ids] == [{"type": "eu_vat", "value": "FR98765432109"}]
    invoice = client.v1.invoices.retrieve(session.invoice)
    assert (invoice.customer_name, invoice.customer_address.postal_code) == ("Client SAS", "75001")
    assert [t.value for t in invoice.customer_tax_ids] == ["FR98765432109"]
    assert client.v1.customers.retrieve(session.customer).address.line1 == "1 rue X"


def test_bad_invoicing_options_are_refused(client):
    sessions = client.v1.checkout.sessions

    def refused(**changes):
        with pytest.raises(stripe.InvalidRequestError) as excinfo:
            sessions.create(params=payment_params(**changes))
        return excinfo.value

    error = refused(mode="subscription", invoice_creation={"enabled": True},
                    line_items=subscription_params()["line_items"])  # fmt: skip
    assert error.param == "invoice_creation"
    field = {"name": "VAT number"}
    error = refused(invoice_creation={"enabled": True, "invoice_data": {"custom_fields": [field]}})
    assert error.param == "invoice_creation[invoice_data][custom_fields][0][value]"
    five = [{"name": f"F{i}", "value": "x"} for i in range(5)]
    error = refused(invoice_creation={"enabled": True, "invoice_data": {"custom_fields": five}})
    assert "at most 4" in error.user_message
    error = refused(billing_address_collection="always")
    assert error.param == "billing_address_collection"
    error = refused(invoice_creation={"enabled": True, "invoice_data": {"bogus": "x"}})
    assert error.code == "parameter_unknown"
    assert sessions.list().data == []
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.invoices.retrieve("in_1Nope")
    assert (excinfo.value.http_status, excinfo.value.code) == (404, "resource_missing")
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.list(params={"status": "bogus"})
