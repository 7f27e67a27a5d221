"""Hosted pages after the payment: the charge's receipt (``receipt_url``), the hosted
invoice (``hosted_invoice_url``) and its PDF (``invoice_pdf``, a real one-page PDF).

Plain HTML, no JavaScript, like :mod:`.pages` (whose frame they use).
"""

from __future__ import annotations

import html
import re
import time
from typing import TYPE_CHECKING, Any

from ... import money
from . import pdf
from .responses import Response, page

if TYPE_CHECKING:
    from .simulator import StripeSimulator

RECEIPT = re.compile(r"^/receipts/payment/(?P<id>ch_[A-Za-z0-9]+)$")
INVOICE = re.compile(r"^/i/(?P<id>in_[A-Za-z0-9]+)$")
INVOICE_PDF = re.compile(r"^/invoice/(?P<id>in_[A-Za-z0-9]+)/pdf$")


def handle(sim: StripeSimulator, method: str, path: str, form: dict[str, str]) -> Response | None:
    """Serve one of these pages, or None if ``path`` is not one of them."""
    if match := RECEIPT.match(path):
        return _receipt(sim, match["id"])
    if match := INVOICE.match(path):
        return _invoice_page(sim, match["id"])
    if match := INVOICE_PDF.match(path):
        return _invoice_pdf(sim, match["id"])
    return None


# The address fields the checkout page asks for with billing_address_collection=required.
ADDRESS_FIELDS = (("line1", "Address line 1"), ("postal_code", "Postal code"), ("city", "City"),
                  ("country", "Country"))  # fmt: skip


def collected_fields(params: dict[str, Any]) -> str:
    """The checkout page's extra inputs: business name and tax ID (``tax_id_collection``),
    billing address (``billing_address_collection=required``)."""
    fields = []
    if (params.get("tax_id_collection") or {}).get("enabled"):
        fields += [
            "<label for='name'>Business name</label><input id='name' name='name'>",
            "<label for='tax_id'>Tax ID</label><input id='tax_id' name='tax_id'>",
        ]
    if params.get("billing_address_collection") == "required":
        fields += [
            f"<label for='{key}'>{label}</label><input id='{key}' name='{key}' required>"
            for key, label in ADDRESS_FIELDS
        ]
    return "".join(fields)


def collected(params: dict[str, Any], form: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """What the payer typed in those inputs (``complete_checkout`` arguments) and the
    labels of required ones left empty."""
    result: dict[str, Any] = {}
    missing: list[str] = []
    if (params.get("tax_id_collection") or {}).get("enabled"):
        result.update(name=form.get("name") or None, tax_id=form.get("tax_id") or None)
    if params.get("billing_address_collection") == "required" and form.get("action") != "cancel":
        address = {key: form.get(key, "").strip() or None for key, _label in ADDRESS_FIELDS}
        missing = [label for key, label in ADDRESS_FIELDS if not address[key]]
        if address["country"]:
            address["country"] = address["country"].upper()
        result["address"] = address
    return result, missing


def _date(timestamp: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(timestamp))


def _receipt(sim: StripeSimulator, charge_id: str) -> Response:
    record = sim.engine.store.find(charge_id, "charge")
    if record is None:
        return page("Not found", "<h1>Not found</h1><p>No such receipt.</p>", 404)
    data = record.data
    esc = html.escape
    amount = money.format_amount(data["amount"], data["currency"])
    rows = [("Amount paid", amount), ("Date paid", _date(data["created"])),
            ("Payment method", "Visa •••• 4242")]  # fmt: skip
    if data["amount_refunded"]:
        refunded = money.format_amount(data["amount_refunded"], data["currency"])
        rows.append(("Refunded", refunded))
    table = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    body = (
        f"<h1>Receipt</h1><p>Receipt for <code>{esc(charge_id)}</code></p>"
        f"<table data-testid='receipt'>{table}</table>"
        f"<p>Sent to {esc(data['receipt_email'] or 'the customer')}.</p>"
    )
    return page("Receipt", body)


def _invoice_lines(data: dict[str, Any]) -> list[tuple[str, str]]:
    """The invoice as (label, value) rows, for the page and the PDF alike."""
    currency = data["currency"]
    rows = [("Invoice number", data["number"] or "draft"),
            ("Date of issue", _date(data["created"])),
            ("Status", data["status"].capitalize())]  # fmt: skip
    if data["customer_name"]:
        rows.append(("Bill to", data["customer_name"]))
    if data["customer_email"]:
        rows.append(("Email", data["customer_email"]))
    if data["customer_address"]:
        address = data["customer_address"]
        parts = [address[k] for k in ("line1", "line2", "postal_code", "city", "country")]
        rows.append(("Address", ", ".join(part for part in parts if part)))
    rows += [("Tax ID", tax["value"]) for tax in data["customer_tax_ids"]]
    rows += [(field["name"], field["value"]) for field in data["custom_fields"] or []]
    if data["description"]:
        rows.append(("Memo", data["description"]))
    for line in data["lines"]["data"]:
        rows.append((line["description"], money.format_amount(line["amount"], currency)))
    rows.append(("Total", money.format_amount(data["total"], currency)))
    rows.append(("Amount paid", money.format_amount(data["amount_paid"], currency)))
    rows.append(("Amount due", money.format_amount(data["amount_remaining"], currency)))
    if data["footer"]:
        rows.append(("", data["footer"]))
    return rows


def _invoice_record(sim: StripeSimulator, invoice_id: str) -> Any:
    record = sim.engine.store.find(invoice_id, "invoice")
    return record if record is not None and record.data["number"] else None


def _invoice_page(sim: StripeSimulator, invoice_id: str) -> Response:
    record = _invoice_record(sim, invoice_id)
    if record is None:
        return page("Not found", "<h1>Not found</h1><p>No such invoice.</p>", 404)
    data = record.data
    esc = html.escape
    table = "".join(
        f"<tr><th>{esc(label)}</th><td>{esc(value)}</td></tr>"
        for label, value in _invoice_lines(data)
    )
    links = [f"<a href='{esc(data['invoice_pdf'])}'>Download invoice</a>"]
    payment = sim.engine.store.find(record.extra["payment"], "invoice_payment")
    intent = payment and sim.engine.store.find(
        payment.data["payment"]["payment_intent"], "payment_intent"
    )
    charge = intent and sim.engine.store.find(intent.data["latest_charge"] or "", "charge")
    if charge is not None and charge.data["status"] == "succeeded":
        links.append(f"<a href='{esc(charge.data['receipt_url'])}'>Download receipt</a>")
    amount = money.format_amount(data["total"], data["currency"])
    body = (
        f"<h1>Invoice {esc(data['number'])}</h1>"
        f"<p class='amount' data-testid='amount'>{esc(amount)}</p>"
        f"<table data-testid='invoice'>{table}</table>"
        f"<p>{' · '.join(links)}</p>"
    )
    return page(f"Invoice {data['number']}", body)


def _invoice_pdf(sim: StripeSimulator, invoice_id: str) -> Response:
    record = _invoice_record(sim, invoice_id)
    if record is None:
        return page("Not found", "<h1>Not found</h1><p>No such invoice.</p>", 404)
    rows = _invoice_lines(record.data)
    lines = [f"{label}: {value}" if label else value for label, value in rows]
    number = record.data["number"]
    document = pdf.text_pdf([f"Invoice {number}", "", *lines], title=f"Invoice {number}")
    disposition = f'inline; filename="Invoice-{number}.pdf"'
    return Response(200, document, "application/pdf", {"Content-Disposition": disposition})
