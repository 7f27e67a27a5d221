"""Builders of the objects that follow a payment: charges, refunds and disputes.

Like :mod:`.objects`, each starts from Stripe's own example object
(``testing/stripe_objects/*.json``) and fills in the simulated state.
"""

from __future__ import annotations

from typing import Any

from .objects import ADDRESS_KEYS, build
from .store import new_id

# A dispute's evidence is due about a week after it is opened.
DISPUTE_EVIDENCE_SECONDS = 7 * 86400
# Card network reason codes Stripe shows for a few dispute reasons (Visa's).
NETWORK_REASON_CODES = {"fraudulent": "10.4", "duplicate": "12.6.1", "product_not_received": "13.1"}


def charge(
    *, charge_id: str, livemode: bool, created: int, amount: int, currency: str,
    payment_intent: str, customer: str | None, email: str | None, payment_method: str,
    description: str | None, metadata: dict[str, str], status: str, receipt_url: str,
) -> dict[str, Any]:  # fmt: skip
    """The card charge of a payment intent (``pending`` while a delayed payment settles)."""
    succeeded = status == "succeeded"
    obj = build(
        "charge",
        id=charge_id,
        livemode=livemode,
        created=created,
        amount=amount,
        amount_captured=amount if succeeded else 0,
        currency=currency,
        payment_intent=payment_intent,
        customer=customer,
        description=description,
        metadata=dict(metadata),
        payment_method=payment_method,
        balance_transaction=new_id("txn") if succeeded else None,
        calculated_statement_descriptor="STRIPE SIMULATOR",
        paid=succeeded,
        captured=succeeded,
        receipt_email=email,
        receipt_url=receipt_url,
        status=status,
    )
    obj["billing_details"].update(email=email, address=dict.fromkeys(ADDRESS_KEYS))
    obj["refunds"]["url"] = f"/v1/charges/{charge_id}/refunds"
    card = obj["payment_method_details"]["card"]
    card.update(fingerprint=f"sim{charge_id[-13:]}", amount_authorized=amount)
    card["overcapture"]["maximum_amount_capturable"] = amount
    return obj


def refund(
    *, created: int, amount: int, charge_obj: dict[str, Any], reason: str | None,
    metadata: dict[str, str], status: str,
) -> dict[str, Any]:  # fmt: skip
    """A refund of (part of) a charge (Stripe's refunds carry no ``livemode``)."""
    return build(
        "refund",
        id=new_id("re"),
        created=created,
        amount=amount,
        charge=charge_obj["id"],
        currency=charge_obj["currency"],
        payment_intent=charge_obj["payment_intent"],
        customer=charge_obj["customer"],
        payment_method=charge_obj["payment_method"],
        reason=reason,
        metadata=dict(metadata),
        status=status,
        balance_transaction=new_id("txn") if status != "failed" else None,
    )


def dispute(
    *, livemode: bool, created: int, charge_obj: dict[str, Any], reason: str
) -> dict[str, Any]:  # fmt: skip
    """A card chargeback opened by the cardholder's bank (``needs_response``)."""
    obj = build(
        "dispute",
        id=new_id("dp"),
        livemode=livemode,
        created=created,
        amount=charge_obj["amount"] - charge_obj["amount_refunded"],
        charge=charge_obj["id"],
        currency=charge_obj["currency"],
        payment_intent=charge_obj["payment_intent"],
        reason=reason,
        status="needs_response",
    )
    obj["evidence_details"]["due_by"] = created + DISPUTE_EVIDENCE_SECONDS
    obj["payment_method_details"]["card"]["network_reason_code"] = NETWORK_REASON_CODES.get(
        reason, "13.7"
    )
    return obj
