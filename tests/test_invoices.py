"""Invoices and receipts: the agency's settings, what Checkout is asked for, the invoice
webhooks, and the links on the request's page, the client's paid page and the export."""

from __future__ import annotations

import csv
import io
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection as database
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.factories import grant_billing, make_user, request_details
from tests.test_webhooks import deliver, make_event
from wagtail_client_billing import billing
from wagtail_client_billing.billing.invoicing import Invoicing
from wagtail_client_billing.models import (
    AgencyBillingSettings,
    BillingRequest,
    Invoice,
    SiteEmailSettings,
    WebhookEvent,
)

pytestmark = pytest.mark.django_db

INDEX = reverse("wagtail_client_billing_agency:index")
SAVE = reverse("wagtail_client_billing_agency:invoice_settings")
STATUS = WebhookEvent.Status
SETTINGS = {
    "create_invoices": "on",
    "invoice_footer": "Payable within 30 days. Late fees: 10%.",
    "invoice_custom_fields": "VAT number: FR12345678901\nSIRET: 123 456 789 00012",
    "collect_tax_id": "on",
}


@pytest.fixture
def agency_client(client):
    client.force_login(make_user("agency", agency=True))
    return client


def saved() -> AgencyBillingSettings:
    return AgencyBillingSettings.objects.get()


# The agency's settings --------------------------------------------------------------------


def test_the_agency_page_has_the_invoice_settings_with_their_defaults(agency_client):
    page = agency_client.get(INDEX).content.decode()
    assert "Invoices and receipts" in page
    form = agency_client.get(INDEX).context["invoices_form"]
    assert form["create_invoices"].value() is True
    assert not form["collect_tax_id"].value() and not form["collect_billing_address"].value()


def test_saving_the_invoice_settings(agency_client):
    messy = "  VAT number :  FR12345678901 \n\n SIRET:123 456 789 00012  \n"
    response = agency_client.post(SAVE, {**SETTINGS, "invoice_custom_fields": messy})

    assert response.status_code == 302
    assert response["Location"] == f"{INDEX}#wcb-invoices"
    row = saved()
    assert row.invoice_footer == SETTINGS["invoice_footer"]
    assert row.invoice_custom_fields == "VAT number: FR12345678901\nSIRET: 123 456 789 00012"
    assert row.create_invoices and row.collect_tax_id and not row.collect_billing_address
    assert "Invoice settings saved." in agency_client.get(INDEX).content.decode()


def test_saving_them_keeps_the_active_mode_and_notifications(agency_client):
    AgencyBillingSettings.objects.create(active_mode="live", notify_payments=False)
    agency_client.post(SAVE, {"invoice_custom_fields": "", "invoice_footer": ""})
    row = saved()
    assert (row.active_mode, row.notify_payments, row.create_invoices) == ("live", False, False)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("VAT number FR123", "Line 1 (“VAT number FR123”): write it as “Name: value”."),
        ("VAT: FR1\n: no name", "Line 2 (“: no name”): write it as “Name: value”."),
        ("VAT:", "Line 1 (“VAT:”): write it as “Name: value”."),
        (
            "N" * 41 + ": x",
            "Line 1 (“" + "N" * 41 + ": x”): the name can have at most 40 characters.",
        ),
        (
            "A: 1\nVAT: " + "9" * 141,
            "Line 2 (“VAT: " + "9" * 44 + "…”): the value can have at most 140 characters.",
        ),
        ("A: 1\nB: 2\nC: 3\nD: 4\nE: 5", "Stripe prints at most 4 fields: there are 5 lines."),
    ],
)
def test_custom_fields_are_checked_as_stripe_checks_them(agency_client, fields, message):
    response = agency_client.post(SAVE, {**SETTINGS, "invoice_custom_fields": fields})

    assert response.status_code == 200  # the page again, with what was typed
    form = response.context["invoices_form"]
    assert form.errors["invoice_custom_fields"] == [message]
    assert form["invoice_custom_fields"].value() == fields
    assert "The invoice settings were not saved" in response.content.decode()
    assert not AgencyBillingSettings.objects.filter(invoice_custom_fields__gt="").exists()


def test_every_bad_line_is_named_at_once(agency_client):
    response = agency_client.post(SAVE, {**SETTINGS, "invoice_custom_fields": "a\nB: 2\nc"})
    assert [e[:7] for e in response.context["invoices_form"].errors["invoice_custom_fields"]] == [
        "Line 1 ",
        "Line 3 ",
    ]


def test_four_fields_of_the_longest_kind_are_accepted(agency_client):
    fields = "\n".join(f"{'N' * 39}{i}: {'v' * 140}" for i in range(4))
    assert (
        agency_client.post(SAVE, {**SETTINGS, "invoice_custom_fields": fields}).status_code == 302
    )
    assert saved().invoice_custom_fields == fields


def test_the_footer_has_stripes_limit(agency_client):
    response = agency_client.post(SAVE, {**SETTINGS, "invoice_footer": "x" * 5001})
    assert response.context["invoices_form"].errors["invoice_footer"] == [
        "Ensure this value has at most 5000 characters (it has 5001)."
    ]
    assert agency_client.post(SAVE, {**SETTINGS, "invoice_footer": "x" * 5000}).status_code == 302


def test_errors_are_in_french_for_a_french_admin(client):
    client.force_login(make_user("agence", agency=True, language="fr"))
    response = client.post(SAVE, {**SETTINGS, "invoice_custom_fields": "TVA FR1"})
    assert response.context["invoices_form"].errors["invoice_custom_fields"] == [
        "Ligne 1 (« TVA FR1 ») : écrivez-la sous la forme « Nom : valeur »."
    ]


def test_editors_cannot_see_or_change_the_invoice_settings(client, sites):
    client.force_login(make_user("editor"))
    assert client.post(SAVE, SETTINGS).status_code == 403
    assert not AgencyBillingSettings.objects.filter(invoice_footer__gt="").exists()


def test_the_page_only_posts(agency_client):
    assert agency_client.get(SAVE).status_code == 405


# What Checkout is asked for ---------------------------------------------------------------


def session_params(request: BillingRequest, **settings: Any) -> dict[str, Any]:
    return billing.checkout_params(request, Invoicing(**settings))


def test_a_one_time_payment_asks_stripe_for_an_invoice_with_the_settings(sites, connection):
    request = billing.create_request(site=sites[0], details=request_details())
    params = session_params(
        request, footer="  Thank you.  ", custom_fields="VAT number: FR1\nSIRET: 2"
    )
    metadata = {"wagtail_client_billing_request": str(request.pk), "site": str(sites[0].pk)}
    assert params["invoice_creation"] == {
        "enabled": True,
        "invoice_data": {
            "footer": "Thank you.",
            "custom_fields": [
                {"name": "VAT number", "value": "FR1"},
                {"name": "SIRET", "value": "2"},
            ],
            "metadata": metadata,
        },
    }
    assert "tax_id_collection" not in params and "billing_address_collection" not in params


def test_no_invoice_when_turned_off_and_none_asked_for_subscriptions(sites, connection):
    one_time = billing.create_request(site=sites[0], details=request_details())
    monthly = billing.create_request(site=sites[0], details=request_details(billing_type="monthly"))
    assert "invoice_creation" not in session_params(one_time, create_invoices=False)
    params = session_params(monthly, footer="Thanks", custom_fields="A: b")
    assert "invoice_creation" not in params  # Stripe makes subscriptions' invoices itself
    assert params["subscription_data"] == {"metadata": params["metadata"]}


def test_tax_id_and_billing_address_are_asked_for_when_the_settings_say(sites, connection):
    request = billing.create_request(site=sites[0], details=request_details())
    params = session_params(request, collect_tax_id=True, collect_billing_address=True)
    assert params["tax_id_collection"] == {"enabled": True}
    assert params["billing_address_collection"] == "required"


def test_fields_changed_outside_the_form_never_break_checkout():
    invoicing = Invoicing(custom_fields="no colon\nA: 1\nB: 2\n: x\nC: 3\nD: 4\nE: 5")
    assert [field["name"] for field in invoicing.fields()] == ["A", "B", "C", "D"]
    long = Invoicing(custom_fields=f"{'n' * 50}: {'v' * 200}").fields()
    assert (len(long[0]["name"]), len(long[0]["value"])) == (40, 140)


def test_create_request_reads_the_settings_in_its_one_look_up(sites, connection):
    billing.create_request(site=sites[0], details=request_details(email="warm@example.com"))
    with CaptureQueriesContext(database) as before:
        billing.create_request(site=sites[0], details=request_details(email="a@example.com"))
    AgencyBillingSettings.objects.filter().update(
        invoice_footer="Thanks", invoice_custom_fields="VAT: FR1", collect_tax_id=True
    )
    with CaptureQueriesContext(database) as after:
        billing.create_request(site=sites[0], details=request_details(email="b@example.com"))
    assert len(after) == len(before)
    look_up, *others = (query["sql"] for query in after.captured_queries)
    assert "invoice_footer" in look_up and "collect_tax_id" in look_up
    settings_table = AgencyBillingSettings._meta.db_table
    assert not [sql for sql in others if settings_table in sql]  # read once, in the look-up


def test_without_a_settings_row_invoices_are_made():
    assert Invoicing.of_row([None, None, None, None, None]) == Invoicing(create_invoices=True)


# The invoice webhooks ---------------------------------------------------------------------


def invoice_object(request: BillingRequest | None, **changes: Any) -> dict[str, Any]:
    """An invoice as Stripe sends it (the fields the app reads, in Stripe's shape): a
    one-time payment's, paid, naming ``request`` in its metadata as Checkout's do."""
    now = int(time.time())
    metadata = {"wagtail_client_billing_request": str(request.pk)} if request else {}
    invoice = {
        "id": "in_1QinvoiceA",
        "object": "invoice",
        "number": "AGCY-0001",
        "status": "paid",
        "billing_reason": "manual",
        "currency": "eur",
        "amount_due": 4990,
        "amount_paid": 4990,
        "hosted_invoice_url": "https://invoice.stripe.com/i/acct_x/test_1",
        "invoice_pdf": "https://pay.stripe.com/invoice/acct_x/test_1/pdf",
        "created": now - 60,
        "period_start": now - 60,
        "period_end": now - 60,
        "status_transitions": {"finalized_at": now - 50, "paid_at": now - 40, "voided_at": None},
        "metadata": metadata,
        "parent": None,
        "payments": {
            "object": "list",
            "data": [{"object": "invoice_payment", "payment": {"payment_intent": "pi_1"}}],
        },
        "lines": {"object": "list", "data": []},
        "livemode": False,
    }
    return {**invoice, **changes}


def subscription_invoice(request: BillingRequest, subscription: str, **changes: Any):
    start, end = int(time.time()), int(time.time()) + 30 * 86400
    parent = {
        "type": "subscription_details",
        "quote_details": None,
        "subscription_details": {
            "subscription": subscription,
            "metadata": {"wagtail_client_billing_request": str(request.pk)},
        },
    }
    line = {"object": "line_item", "period": {"start": start, "end": end}}
    return invoice_object(
        None,
        id="in_1QsubscriptionA",
        billing_reason="subscription_create",
        parent=parent,
        lines={"object": "list", "data": [line]},
        **changes,
    )


def send(client, connection, event_type: str, invoice: dict[str, Any], **kwargs: Any):
    event = make_event(event_type, invoice, account=connection.account_id, **kwargs)
    assert deliver(client, event).status_code == 200
    return WebhookEvent.objects.get(stripe_id=event["id"])


@pytest.fixture
def paid_request(sites, connection) -> BillingRequest:
    request = billing.create_request(site=sites[0], details=request_details())
    billing.mark_paid(request, source="test")
    return request


def test_a_paid_invoice_makes_the_requests_invoice(client, connection, paid_request):
    event = send(client, connection, "invoice.paid", invoice_object(paid_request))

    assert event.status == STATUS.PROCESSED
    invoice = Invoice.objects.get()
    assert invoice.billing_request == paid_request
    assert (invoice.stripe_id, invoice.number, invoice.status) == (
        "in_1QinvoiceA",
        "AGCY-0001",
        "paid",
    )
    assert (invoice.currency, invoice.amount_due, invoice.amount_paid) == ("eur", 4990, 4990)
    assert (
        invoice.invoice_pdf.endswith("/pdf") and "invoice.stripe.com" in invoice.hosted_invoice_url
    )
    assert invoice.payment_intent_id == "pi_1"
    assert invoice.paid_at and invoice.paid_at > invoice.created


def test_each_step_updates_the_same_row_and_a_duplicate_changes_nothing(
    client, connection, paid_request
):
    draft = invoice_object(
        paid_request, status="draft", number=None, hosted_invoice_url=None, invoice_pdf=None,
        status_transitions={"finalized_at": None, "paid_at": None, "voided_at": None},
    )  # fmt: skip
    send(client, connection, "invoice.created", draft)
    assert Invoice.objects.get().status == "draft" and not Invoice.objects.get().number
    event = make_event("invoice.paid", invoice_object(paid_request), account=connection.account_id)
    deliver(client, event)
    deliver(client, event)
    invoice = Invoice.objects.get()
    assert (invoice.status, invoice.number) == ("paid", "AGCY-0001")


@pytest.mark.parametrize(
    ("older_type", "older_status"), [("invoice.finalized", "open"), ("invoice.created", "draft")]
)
def test_an_older_event_never_takes_a_paid_invoice_back(
    client, connection, paid_request, older_type, older_status
):
    send(client, connection, "invoice.paid", invoice_object(paid_request))
    older = invoice_object(
        paid_request, status=older_status, invoice_pdf=None,
        status_transitions={"finalized_at": None, "paid_at": None, "voided_at": None},
    )  # fmt: skip
    event = send(client, connection, older_type, older)

    invoice = Invoice.objects.get()
    assert (invoice.status, bool(invoice.paid_at), bool(invoice.invoice_pdf)) == (
        "paid",
        True,
        True,
    )
    assert event.status == STATUS.IGNORED
    assert (
        event.note == f"invoice in_1QinvoiceA is already paid: this {older_status} invoice is older"
    )


def test_an_open_invoice_then_paid_then_voided_elsewhere(client, connection, paid_request):
    send(client, connection, "invoice.finalized", invoice_object(paid_request, status="open"))
    send(client, connection, "invoice.payment_failed", invoice_object(paid_request, status="open"))
    send(client, connection, "invoice.paid", invoice_object(paid_request))
    assert Invoice.objects.get().status == "paid"


def test_an_invoice_of_no_request_of_ours_is_ignored(client, connection, paid_request):
    event = send(client, connection, "invoice.paid", invoice_object(None))
    assert event.status == STATUS.IGNORED
    assert event.note == (
        "invoice in_1QinvoiceA (no billing request in its metadata) is of no test-mode "
        f"billing request of account {connection.account_id}"
    )
    unknown = invoice_object(None, metadata={"wagtail_client_billing_request": "999999"})
    assert send(client, connection, "invoice.paid", unknown).status == STATUS.IGNORED
    assert not Invoice.objects.exists()


def test_an_invoice_of_another_account_or_mode_is_ignored(client, connection, paid_request):
    other = make_event("invoice.paid", invoice_object(paid_request), account="acct_someone_else")
    deliver(client, other)
    BillingRequest.objects.filter(pk=paid_request.pk).update(mode="live")
    event = send(client, connection, "invoice.paid", invoice_object(paid_request))
    assert "is of no test-mode billing request" in event.note
    assert WebhookEvent.objects.filter(status=STATUS.IGNORED).count() == 2
    assert not Invoice.objects.exists()


def test_a_request_of_an_unlinked_account_gets_no_invoice_from_the_new_one(
    client, sites, connection, paid_request
):
    # The same pk in the metadata, but the request is another account's.
    BillingRequest.objects.filter(pk=paid_request.pk).update(account_id="acct_old")
    event = send(client, connection, "invoice.paid", invoice_object(paid_request))
    assert event.status == STATUS.IGNORED and not Invoice.objects.exists()


def test_a_one_time_invoice_cannot_name_a_subscription_request(client, sites, connection):
    monthly = billing.create_request(site=sites[0], details=request_details(billing_type="monthly"))
    assert (
        send(client, connection, "invoice.paid", invoice_object(monthly)).status == STATUS.IGNORED
    )


def test_an_invoice_made_elsewhere_cannot_move_to_another_request(
    client, sites, connection, paid_request
):
    send(client, connection, "invoice.paid", invoice_object(paid_request))
    second = billing.create_request(site=sites[0], details=request_details(email="b@example.com"))
    event = send(client, connection, "invoice.updated", invoice_object(second))
    assert event.note == f"invoice in_1QinvoiceA belongs to billing request {paid_request.pk}"
    assert Invoice.objects.get().billing_request == paid_request


def test_malformed_values_are_left_blank_never_linked(client, connection, paid_request):
    odd = invoice_object(
        paid_request, hosted_invoice_url="javascript:alert(1)", invoice_pdf=["x"],
        number="N" * 65, amount_paid=True, created="yesterday", currency=None,
    )  # fmt: skip
    assert send(client, connection, "invoice.paid", odd).status == STATUS.PROCESSED
    invoice = Invoice.objects.get()
    assert (invoice.hosted_invoice_url, invoice.invoice_pdf, invoice.number) == ("", "", "")
    assert invoice.amount_paid == 0 and invoice.created and invoice.currency == ""


def test_a_subscriptions_invoices_are_its_payments(client, sites, connection):
    monthly = billing.create_request(site=sites[0], details=request_details(billing_type="monthly"))
    # The first invoice may come before checkout.session.completed names the subscription.
    first = subscription_invoice(monthly, "sub_1")
    assert send(client, connection, "invoice.paid", first).status == STATUS.PROCESSED
    BillingRequest.objects.filter(pk=monthly.pk).update(subscription_id="sub_1")
    # A renewal names only the subscription (older API versions: a top-level field).
    renewal = invoice_object(
        None, id="in_1QrenewalB", number="AGCY-0002", billing_reason="subscription_cycle",
        subscription="sub_1", parent=None,
    )  # fmt: skip
    assert send(client, connection, "invoice.paid", renewal).status == STATUS.PROCESSED

    invoices = Invoice.objects.filter(billing_request=monthly).order_by("pk")
    assert [i.number for i in invoices] == ["AGCY-0001", "AGCY-0002"]
    first_row = invoices[0]
    assert (first_row.period_end - first_row.period_start).days == 30
    assert invoices[1].billing_reason == "subscription_cycle"


def test_another_subscriptions_invoice_is_ignored(client, sites, connection):
    monthly = billing.create_request(site=sites[0], details=request_details(billing_type="monthly"))
    BillingRequest.objects.filter(pk=monthly.pk).update(subscription_id="sub_1")
    event = send(client, connection, "invoice.paid", subscription_invoice(monthly, "sub_2"))
    assert event.status == STATUS.IGNORED
    assert "subscription sub_2" in event.note


# The links: the request's page, the client's paid page, the export --------------------------

PDF = "https://pay.stripe.com/invoice/acct_x/test_1/pdf"
HOSTED = "https://invoice.stripe.com/i/acct_x/test_1"


def add_invoice(request: BillingRequest, **values: Any) -> Invoice:
    now = timezone.now()
    fields = {
        "stripe_id": f"in_{Invoice.objects.count() + 1}",
        "number": "AGCY-0001",
        "status": "paid",
        "currency": request.currency,
        "amount_due": request.amount,
        "amount_paid": request.amount,
        "hosted_invoice_url": HOSTED,
        "invoice_pdf": PDF,
        "created": now - timedelta(minutes=5),
        "paid_at": now,
        **values,
    }
    return Invoice.objects.create(billing_request=request, **fields)


def inspect_page(client, request: BillingRequest):
    return client.get(reverse("wagtail_client_billing_requests:inspect", args=[request.pk]))


def test_the_requests_page_lists_its_invoices_with_their_links(client, sites, paid_request):
    add_invoice(paid_request)
    editor = make_user("acme-editor")
    grant_billing(editor, sites[0])
    client.force_login(editor)

    page = inspect_page(client, paid_request).content.decode()

    table = page[
        page.index("data-wcb-invoices") : page.index("</table>", page.index("data-wcb-invoices"))
    ]
    assert "AGCY-0001" in table and "€49.90" in table and ">Paid<" in table
    assert f'<a href="{PDF}" target="_blank" rel="noopener noreferrer">Invoice PDF</a>' in table
    assert (
        f'<a href="{HOSTED}" target="_blank" rel="noopener noreferrer">Invoice page and receipt</a>'
        in table
    )


def test_a_subscriptions_payments_are_listed_latest_first(client, sites, connection):
    monthly = billing.create_request(site=sites[0], details=request_details(billing_type="monthly"))
    add_invoice(monthly, number="AGCY-0001", created=timezone.now() - timedelta(days=31))
    add_invoice(monthly, number="AGCY-0002", status="open", paid_at=None, invoice_pdf="")
    client.force_login(make_user("agency", agency=True))
    page = inspect_page(client, monthly).content.decode()
    assert page.index("AGCY-0002") < page.index("AGCY-0001")
    assert ">Open<" in page and page.count("Invoice PDF") == 1


def test_a_request_without_invoices_says_so(client, paid_request):
    client.force_login(make_user("agency", agency=True))
    assert "None yet: Stripe makes one" in inspect_page(client, paid_request).content.decode()


def test_an_editor_of_another_site_sees_no_invoice_anywhere(client, sites, paid_request):
    add_invoice(paid_request)
    editor = make_user("bakery-editor")
    grant_billing(editor, sites[1])
    client.force_login(editor)
    assert inspect_page(client, paid_request).status_code == 404
    pages = [
        reverse("wagtail_client_billing_requests:index") + f"?site={sites[1].pk}",
        reverse("wagtail_client_billing_requests:index") + f"?site={sites[0].pk}",
        reverse("wagtailadmin_home"),
        reverse("wagtail_client_billing_requests:overview") + "?export=csv",
    ]
    for url in pages:
        response = client.get(url)
        content = b"".join(response.streaming_content) if response.streaming else response.content
        assert b"AGCY-0001" not in content and b"stripe.com" not in content, url


def paid_page(client, request: BillingRequest) -> str:
    response = client.get(request.get_payment_path(), HTTP_HOST="acme.test")
    assert response.status_code == 200
    return response.content.decode()


def test_the_clients_paid_page_links_the_invoice(client, paid_request):
    assert "data-wcb-invoice" not in paid_page(client, paid_request)  # none yet
    add_invoice(paid_request)
    page = paid_page(client, paid_request)
    assert "Invoice AGCY-0001:" in page
    assert (
        f'<a href="{PDF}" target="_blank" rel="noopener noreferrer">download it (PDF)</a>' in page
    )
    assert (
        f'href="{HOSTED}" target="_blank" rel="noopener noreferrer">see it with your receipt'
        in page
    )


def test_the_paid_page_links_the_latest_invoice_never_a_void_one(client, sites, connection):
    monthly = billing.create_request(site=sites[0], details=request_details(billing_type="monthly"))
    billing.mark_paid(monthly, source="test")
    add_invoice(monthly, number="AGCY-0001", created=timezone.now() - timedelta(days=31))
    add_invoice(monthly, number="AGCY-0002", invoice_pdf=PDF + "2")
    add_invoice(monthly, number="AGCY-0003", status="void", invoice_pdf=PDF + "3")
    page = paid_page(client, monthly)
    assert "AGCY-0002" in page and PDF + "2" in page
    assert "AGCY-0001" not in page and "AGCY-0003" not in page


def test_the_paid_page_speaks_the_clients_language(client, sites, paid_request):
    SiteEmailSettings.objects.create(site=sites[0], client_language="fr")
    add_invoice(paid_request)
    page = paid_page(client, paid_request)
    assert "Facture AGCY-0001 :" in page
    assert ">la télécharger (PDF)</a>" in page and ">la voir avec votre reçu</a>" in page


def export_rows(client) -> dict[str, dict[str, str]]:
    response = client.get(reverse("wagtail_client_billing_requests:overview") + "?export=csv")
    content = b"".join(response.streaming_content).decode()
    return {row["Email"]: row for row in csv.DictReader(io.StringIO(content))}


def test_the_export_has_each_requests_latest_invoice_number(client, sites, connection):
    one_time = billing.create_request(site=sites[0], details=request_details())
    monthly = billing.create_request(
        site=sites[0], details=request_details(email="m@example.com", billing_type="monthly")
    )
    billing.create_request(site=sites[1], details=request_details(email="none@example.com"))
    add_invoice(one_time, number="AGCY-0007")
    add_invoice(monthly, number="AGCY-0001", created=timezone.now() - timedelta(days=31))
    add_invoice(monthly, number="AGCY-0009")
    add_invoice(monthly, number="", status="draft", created=timezone.now() + timedelta(days=1))
    client.force_login(make_user("agency", agency=True))

    rows = export_rows(client)

    assert rows["client@example.com"]["Invoice number"] == "AGCY-0007"
    assert rows["m@example.com"]["Invoice number"] == "AGCY-0009"
    assert rows["none@example.com"]["Invoice number"] == ""


def test_the_export_reads_the_invoice_numbers_in_its_one_query(client, sites, connection):
    client.force_login(make_user("agency", agency=True))
    url = reverse("wagtail_client_billing_requests:overview") + "?export=csv"

    def statements() -> int:
        with CaptureQueriesContext(database) as captured:
            b"".join(client.get(url).streaming_content)
        return len(captured)

    first = billing.create_request(site=sites[0], details=request_details())
    add_invoice(first)
    few = statements()
    for number in range(5):
        request = billing.create_request(
            site=sites[number % 2], details=request_details(email=f"c{number}@example.com")
        )
        add_invoice(request, number=f"AGCY-01{number}")
    assert statements() == few


# Through the simulator: what Stripe got, and its invoices coming back -------------------------


def session_at_stripe(sim, request: BillingRequest) -> dict[str, Any]:
    return sim.get_object(request.checkout_session_id, "checkout.session")


def test_stripe_gets_the_invoice_settings_with_the_session(sites, connection, stripe):
    AgencyBillingSettings.objects.update(
        invoice_footer="Payable within 30 days.",
        invoice_custom_fields="VAT number: FR12345678901",
        collect_tax_id=True,
        collect_billing_address=True,
    )
    request = billing.create_request(site=sites[0], details=request_details())

    session = session_at_stripe(stripe, request)
    invoicing = session["invoice_creation"]
    assert invoicing["enabled"] is True
    assert invoicing["invoice_data"]["footer"] == "Payable within 30 days."
    assert invoicing["invoice_data"]["custom_fields"] == [
        {"name": "VAT number", "value": "FR12345678901"}
    ]
    assert invoicing["invoice_data"]["metadata"]["wagtail_client_billing_request"] == str(
        request.pk
    )
    # (The simulator's session has no tax_id_collection field; checkout_params is tested above.)
    assert session["billing_address_collection"] == "required"


def test_stripe_gets_no_invoice_request_when_turned_off(sites, connection, stripe):
    AgencyBillingSettings.objects.update(create_invoices=False)
    request = billing.create_request(site=sites[0], details=request_details())
    session = session_at_stripe(stripe, request)
    assert not (session["invoice_creation"] or {}).get("enabled")
    assert session["billing_address_collection"] is None


def deliver_all(client, sim, types: tuple[str, ...] | None = None) -> list[WebhookEvent]:
    """Every event the simulator emitted (of ``types``), oldest first, to our webhook."""
    events = [e for e in sim.events() if types is None or e["type"] in types]
    for event in events:
        assert deliver(client, event).status_code == 200
    return [WebhookEvent.objects.get(stripe_id=event["id"]) for event in events]


def test_a_paid_one_time_request_gets_stripes_invoice(client, sites, connection, stripe):
    request = billing.create_request(site=sites[0], details=request_details())
    stripe.complete_checkout(request.checkout_session_id)

    stored = deliver_all(client, stripe)

    assert {e.type: e.status for e in stored if e.type.startswith("invoice.")} == {
        "invoice.created": STATUS.PROCESSED,
        "invoice.finalized": STATUS.PROCESSED,
        "invoice.paid": STATUS.PROCESSED,
    }
    request.refresh_from_db()
    invoice = Invoice.objects.get(billing_request=request)
    at_stripe = stripe.get_object(invoice.stripe_id, "invoice")
    assert request.status == BillingRequest.Status.PAID
    assert (invoice.number, invoice.status) == (at_stripe["number"], "paid")
    assert invoice.amount_paid == 4990 and invoice.currency == "eur"
    assert invoice.invoice_pdf == at_stripe["invoice_pdf"]
    assert invoice.hosted_invoice_url == at_stripe["hosted_invoice_url"]
    assert at_stripe["footer"] is None  # the default settings have no footer
    page = paid_page(client, request)
    assert f"Invoice {invoice.number}:" in page and invoice.invoice_pdf in page


def test_the_invoice_events_in_reverse_order_leave_it_paid(client, sites, connection, stripe):
    request = billing.create_request(site=sites[0], details=request_details())
    stripe.complete_checkout(request.checkout_session_id)
    events = [e for e in stripe.events() if e["type"].startswith("invoice.")]
    for event in reversed(events):  # paid, then finalized (open), then created (draft)
        deliver(client, event)
    invoice = Invoice.objects.get()
    assert invoice.status == "paid" and invoice.number and invoice.invoice_pdf


def test_a_subscriptions_first_invoice_before_checkouts_event(client, sites, connection, stripe):
    monthly = billing.create_request(site=sites[0], details=request_details(billing_type="monthly"))
    stripe.complete_checkout(monthly.checkout_session_id)

    invoices = deliver_all(client, stripe, ("invoice.created", "invoice.finalized", "invoice.paid"))
    assert {event.status for event in invoices} == {STATUS.PROCESSED}
    deliver_all(client, stripe, ("checkout.session.completed",))

    monthly.refresh_from_db()
    invoice = Invoice.objects.get(billing_request=monthly)
    assert monthly.subscription_id and invoice.status == "paid"
    assert invoice.billing_reason == "subscription_create"
    assert invoice.period_end > invoice.period_start
