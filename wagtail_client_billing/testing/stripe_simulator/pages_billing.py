"""Hosted pages after the payment: the charge's receipt (``receipt_url``).

Plain HTML, no JavaScript, like :mod:`.pages` (whose frame they use).
"""

from __future__ import annotations

import html
import re
import time
from typing import TYPE_CHECKING

from ... import money
from .responses import Response, page

if TYPE_CHECKING:
    from .simulator import StripeSimulator

RECEIPT = re.compile(r"^/receipts/payment/(?P<id>ch_[A-Za-z0-9]+)$")


def handle(sim: StripeSimulator, method: str, path: str, form: dict[str, str]) -> Response | None:
    """Serve one of these pages, or None if ``path`` is not one of them."""
    if match := RECEIPT.match(path):
        return _receipt(sim, match["id"])
    return None


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
