"""Refunds, charges and disputes: create and read refunds, read charges and disputes."""

from __future__ import annotations

from typing import Any

from . import payments
from .forms import as_enum, as_int, as_str, metadata
from .routes import ApiRequest, created_filter, get_or_404, paginate, route


@route("POST", "/v1/refunds")
def create_refund(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """Refund a charge, named by ``charge`` or ``payment_intent``, fully or in part."""
    req.allow("amount", "charge", "metadata", "payment_intent", "reason")
    params = req.params
    amount = as_int(params["amount"], "amount", minimum=1) if "amount" in params else None
    reason = params.get("reason") or None
    if reason is not None:
        reason = as_enum(reason, "reason", payments.REFUND_REASONS)
    record = payments.charge_to_refund(
        req.engine,
        req.scope,
        charge=as_str(params["charge"], "charge") if params.get("charge") else None,
        payment_intent=(
            as_str(params["payment_intent"], "payment_intent")
            if params.get("payment_intent")
            else None
        ),
    )
    refund = payments.refund(
        req.engine,
        record,
        amount=amount,
        reason=reason,
        metadata=metadata(params.get("metadata", {})),
        request=req.info,
    )
    return 200, refund


@route("GET", "/v1/refunds/{id}")
def retrieve_refund(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """Retrieve a refund."""
    req.allow()
    return 200, get_or_404(req, "refund", req.args["id"]).data


@route("GET", "/v1/refunds")
def list_refunds(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """List refunds, newest first, optionally of one ``charge`` or ``payment_intent``."""
    req.allow("charge", "created", "ending_before", "limit", "payment_intent", "starting_after")
    params = req.params
    fields = {key: params[key] for key in ("charge", "payment_intent") if params.get(key)}
    created = created_filter(params)

    def wanted(record: Any) -> bool:
        data = record.data
        return all(data[key] == value for key, value in fields.items()) and created(record)

    records = req.engine.store.iter("refund", req.scope, wanted)
    return 200, paginate(req, records, "/v1/refunds")


@route("GET", "/v1/charges/{id}")
def retrieve_charge(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """Retrieve a charge (``amount_refunded``, ``refunded``, ``disputed``...)."""
    req.allow()
    return 200, get_or_404(req, "charge", req.args["id"]).data


@route("GET", "/v1/disputes/{id}")
def retrieve_dispute(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """Retrieve a dispute opened with the ``create_dispute`` control command."""
    req.allow()
    return 200, get_or_404(req, "dispute", req.args["id"]).data
