"""Invoices and their payments: retrieve and list (invoices are made by Checkout and by
subscription renewals, never through the API here)."""

from __future__ import annotations

from typing import Any

from .forms import as_dict, as_enum
from .routes import ApiRequest, created_filter, get_or_404, paginate, route

INVOICE_STATUSES = ("draft", "open", "paid", "uncollectible", "void")


@route("GET", "/v1/invoices/{id}")
def retrieve_invoice(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """Retrieve an invoice (``number``, ``hosted_invoice_url``, ``invoice_pdf``...)."""
    req.allow()
    return 200, get_or_404(req, "invoice", req.args["id"]).data


@route("GET", "/v1/invoices")
def list_invoices(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """List invoices, newest first, by ``subscription``, ``customer``, ``status``, ``created``."""
    req.allow(
        "created", "customer", "ending_before", "limit", "starting_after", "status", "subscription"
    )
    params = req.params
    if params.get("status"):
        as_enum(params["status"], "status", INVOICE_STATUSES)
    fields = {k: params[k] for k in ("customer", "status", "subscription") if params.get(k)}
    created = created_filter(params)

    def wanted(record: Any) -> bool:
        data = record.data
        return all(data[key] == value for key, value in fields.items()) and created(record)

    records = req.engine.store.iter("invoice", req.scope, wanted)
    return 200, paginate(req, records, "/v1/invoices")


@route("GET", "/v1/invoice_payments")
def list_invoice_payments(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """List invoice payments by ``invoice``, ``payment[payment_intent]`` or ``status``;
    each names its payment intent (``payment.payment_intent``), to refund it."""
    req.allow("created", "ending_before", "invoice", "limit", "payment", "starting_after", "status")
    params = req.params
    invoice = params.get("invoice")
    intent = as_dict(params.get("payment", {}), "payment").get("payment_intent")
    status = params.get("status")
    if status:
        as_enum(status, "status", ("canceled", "open", "paid"))
    created = created_filter(params)

    def wanted(record: Any) -> bool:
        data = record.data
        return (
            (not invoice or data["invoice"] == invoice)
            and (not intent or data["payment"]["payment_intent"] == intent)
            and (not status or data["status"] == status)
            and created(record)
        )

    records = req.engine.store.iter("invoice_payment", req.scope, wanted)
    return 200, paginate(req, records, "/v1/invoice_payments")
