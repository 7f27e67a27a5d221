"""After the payment: charges, refunds and disputes, and the events they emit.

Functions of the :class:`~.engine.Engine`, called under its lock by the API routes
(``api_payments``), the control commands and the checkout flow. Amounts follow
Stripe: a charge's ``amount_refunded`` counts pending refunds too (a failed refund
gives its amount back), and nothing can be refunded beyond what was captured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ... import money
from . import objects_payments
from .errors import StripeError, no_such
from .store import Record, Scope, new_id

if TYPE_CHECKING:
    from .engine import Engine, RequestInfo

REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
DISPUTE_REASONS = (
    "bank_cannot_process", "check_returned", "credit_not_processed", "customer_initiated",
    "debit_not_authorized", "duplicate", "fraudulent", "general", "incorrect_account_details",
    "insufficient_funds", "product_not_received", "product_unacceptable",
    "subscription_canceled", "unrecognized",
)  # fmt: skip
SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "cad": "CA$", "aud": "A$"}


def stripe_amount(minor: int, currency: str) -> str:
    """An amount as Stripe's error messages write it: ``$12.50``, ``€0.50``, ``1,000 HUF``."""
    symbol = SYMBOLS.get(currency)
    if symbol is None:
        return money.format_amount(minor, currency)
    places = money.get_currency(currency).display_decimals
    return f"{symbol}{money.to_major(minor, currency):,.{places}f}"


def add_charge(
    engine: Engine, intent: dict[str, Any], scope: Scope, *, email: str | None,
    status: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Store a charge of ``intent`` and make it the intent's ``latest_charge``:
    succeeded, pending (a delayed payment) or, with ``status="failed"``, declined."""
    status = status or {"succeeded": "succeeded", "processing": "pending"}[intent["status"]]
    charge_id = intent["latest_charge"] or new_id("ch")
    intent["latest_charge"] = charge_id
    data = objects_payments.charge(
        charge_id=charge_id,
        livemode=scope.livemode,
        created=intent["created"],
        amount=intent["amount"],
        currency=intent["currency"],
        payment_intent=intent["id"],
        customer=intent["customer"],
        email=email,
        payment_method=intent["payment_method"],
        description=intent["description"],
        metadata=intent["metadata"],
        status=status,
        receipt_url=f"{engine.base_url()}/receipts/payment/{charge_id}",
    )
    engine.store.add("charge", data, scope)
    if status == "failed":
        _decline(data)
    return data


def settle_charge(engine: Engine, intent: dict[str, Any], succeed: bool) -> None:
    """A delayed payment settled: its charge succeeds or fails."""
    record = engine.store.find(intent["latest_charge"], "charge")
    if record is None:
        return
    if succeed:
        record.data.update(status="succeeded", paid=True, captured=True)
        record.data["amount_captured"] = record.data["amount"]
        record.data["balance_transaction"] = new_id("txn")
    else:
        _decline(record.data)


def _decline(data: dict[str, Any]) -> None:
    """A charge the card's bank declined."""
    data.update(
        status="failed",
        paid=False,
        captured=False,
        amount_captured=0,
        balance_transaction=None,
        failure_code="card_declined",
        failure_message="Your card was declined.",
    )
    data["outcome"].update(
        network_status="declined_by_network",
        type="issuer_declined",
        reason="generic_decline",
        seller_message="The bank did not return any further details with this decline.",
    )


def charge_to_refund(
    engine: Engine, scope: Scope | None, *, charge: str | None = None,
    payment_intent: str | None = None,
) -> Record:  # fmt: skip
    """The charge named by ``charge`` or by ``payment_intent`` (its latest charge), in
    ``scope`` (None: any), or Stripe's error naming the parameter."""
    if charge:
        record = engine.store.get(charge, "charge", scope)
        if record is None:
            raise no_such("charge", charge, "charge")
        if payment_intent and record.data["payment_intent"] != payment_intent:
            raise StripeError(
                f"Charge {charge} does not belong to PaymentIntent {payment_intent}.",
                param="payment_intent",
            )
        return record
    if not payment_intent:
        raise StripeError(
            "One of the following params should be provided for this request: "
            "payment_intent or charge.",
            code="parameter_missing",
        )
    intent = engine.store.get(payment_intent, "payment_intent", scope)
    if intent is None:
        raise no_such("payment_intent", payment_intent, "payment_intent")
    record = engine.store.get(intent.data["latest_charge"] or "", "charge", scope)
    if record is None or record.data["status"] != "succeeded":
        raise StripeError(
            f"This PaymentIntent ({payment_intent}) does not have a successful charge to refund.",
            code="charge_not_refundable",
            param="payment_intent",
        )
    return record


def refund(
    engine: Engine, record: Record, *, amount: int | None, reason: str | None,
    metadata: dict[str, str], request: RequestInfo | None,
) -> dict[str, Any]:  # fmt: skip
    """Refund ``amount`` (default: what remains) of a charge; emits ``refund.created``
    and ``charge.refunded``. The next refunds held by ``delay_next_refunds`` are
    ``pending`` until :func:`settle_refund`."""
    with engine.lock:
        data = record.data
        if data["status"] != "succeeded":
            raise StripeError(
                f"Charge {data['id']} has not succeeded; it cannot be refunded.",
                code="charge_not_refundable",
            )
        if data["refunded"]:
            raise StripeError(
                f"Charge {data['id']} has already been refunded.", code="charge_already_refunded"
            )
        if data["disputed"] and _open_dispute(engine, data["id"]):
            raise StripeError(
                f"Charge {data['id']} has been charged back; cannot issue a refund.",
                code="charge_disputed",
            )
        remaining = data["amount"] - data["amount_refunded"]
        amount = remaining if amount is None else amount
        if amount > remaining:
            currency = data["currency"]
            asked = stripe_amount(amount, currency)
            if data["amount_refunded"]:
                limit = f"unrefunded amount on charge ({stripe_amount(remaining, currency)})"
            else:
                limit = f"charge amount ({stripe_amount(data['amount'], currency)})"
            raise StripeError(
                f"Refund amount ({asked}) is greater than {limit}",
                code="amount_too_large",
                param="amount",
            )
        held = engine.store.held_refunds > 0
        if held:
            engine.store.held_refunds -= 1
        obj = objects_payments.refund(
            created=engine.now(),
            amount=amount,
            charge_obj=data,
            reason=reason,
            metadata=metadata,
            status="pending" if held else "succeeded",
        )
        engine.store.add("refund", obj, record.scope)
        previous = {
            "amount_refunded": data["amount_refunded"],
            "refunded": data["refunded"],
            "refunds": {"data": list(data["refunds"]["data"])},
        }
        data["amount_refunded"] += amount
        data["refunded"] = data["amount_refunded"] >= data["amount"]
        data["refunds"]["data"].insert(0, obj)
        engine.emit("refund.created", obj, record.scope, request)
        engine.emit("charge.refunded", data, record.scope, request, previous)
        return obj


def settle_refund(engine: Engine, refund_id: str, succeed: bool = True) -> dict[str, Any]:
    """A pending refund succeeds or fails (then its amount is refundable again); emits
    ``refund.updated``."""
    with engine.lock:
        record = engine.store.find(refund_id, "refund")
        if record is None:
            raise no_such("refund", refund_id)
        data = record.data
        if data["status"] != "pending":
            raise StripeError(f"Refund {refund_id} is {data['status']}, not pending.")
        data["status"] = "succeeded" if succeed else "failed"
        if not succeed:
            data["balance_transaction"] = None
            charge = engine.store.find(data["charge"], "charge")
            if charge is not None:
                charge.data["amount_refunded"] -= data["amount"]
                charge.data["refunded"] = False
        engine.emit("refund.updated", data, record.scope, None, {"status": "pending"})
        return data


def _open_dispute(engine: Engine, charge_id: str) -> bool:
    open_states = ("needs_response", "under_review", "warning_needs_response")
    return any(
        record.data["charge"] == charge_id and record.data["status"] in open_states
        for record in engine.store.iter("dispute")
    )


def create_dispute(engine: Engine, payment_intent: str, reason: str) -> dict[str, Any]:
    """The cardholder's bank disputes the charge of ``payment_intent`` (or a charge id);
    emits ``charge.dispute.created``."""
    if reason not in DISPUTE_REASONS:
        raise StripeError(f"Invalid dispute reason {reason!r}.", param="reason")
    with engine.lock:
        named = {"charge" if payment_intent.startswith("ch_") else "payment_intent": payment_intent}
        record = charge_to_refund(engine, None, **named)
        if _open_dispute(engine, record.id):
            raise StripeError(f"Charge {record.id} already has an open dispute.")
        obj = objects_payments.dispute(
            livemode=record.scope.livemode,
            created=engine.now(),
            charge_obj=record.data,
            reason=reason,
        )
        engine.store.add("dispute", obj, record.scope)
        record.data["disputed"] = True
        engine.emit("charge.dispute.created", obj, record.scope)
        return obj


def close_dispute(engine: Engine, dispute_id: str, won: bool) -> dict[str, Any]:
    """The bank decides: the dispute is ``won`` or ``lost``; emits ``charge.dispute.closed``."""
    with engine.lock:
        record = engine.store.find(dispute_id, "dispute")
        if record is None:
            raise no_such("dispute", dispute_id)
        data = record.data
        if data["status"] in ("won", "lost"):
            raise StripeError(f"Dispute {dispute_id} is already closed ({data['status']}).")
        previous = {"status": data["status"]}
        data["status"] = "won" if won else "lost"
        data["evidence_details"]["has_evidence"] = won
        engine.emit("charge.dispute.closed", data, record.scope, None, previous)
        return data
