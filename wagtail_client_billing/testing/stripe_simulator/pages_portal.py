"""The hosted customer portal (a billing portal session's ``url``).

It shows the customer's subscriptions, invoices and card, with three things to do:
**Update payment method** (the card works again and what is open is paid now),
**Cancel subscription** (at the period's end) and **Return to <site>** (``return_url``).
Plain HTML forms, no JavaScript; a form answers with a redirect back to the page,
which then says what was done.
"""

from __future__ import annotations

import html
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from ... import money
from . import renewals
from .responses import Response, page, redirect
from .store import Record

if TYPE_CHECKING:
    from .simulator import StripeSimulator

PORTAL = re.compile(r"^/p/session/(?P<token>(test|live)_[A-Za-z0-9]+)$")
DONE = {
    "card": "Your payment method was updated.",
    "cancel": "Your subscription will be canceled at the end of the period.",
}


def handle(
    sim: StripeSimulator, method: str, path: str, query: str, form: dict[str, str]
) -> Response | None:
    """Serve the portal, or None if ``path`` is not a portal page."""
    match = PORTAL.match(path)
    if match is None:
        return None
    token = match["token"].split("_", 1)[1]
    engine = sim.engine
    sessions = engine.store.iter(
        "billing_portal.session", None, lambda r: r.extra["token"] == token
    )
    session = next(sessions, None)
    if session is None:
        return page("Not found", "<h1>Not found</h1><p>This portal link is not valid.</p>", 404)
    customer = session.data["customer"]
    if method == "POST":
        done = _act(sim, session, customer, form)
        return redirect(f"{path}?done={done}" if done else path)
    done = parse_qs(query).get("done", [""])[-1]
    return _portal(sim, session, customer, DONE.get(done, ""))


def _subscriptions(sim: StripeSimulator, session: Record, customer: str) -> list[Record]:
    return list(
        sim.engine.store.iter(
            "subscription", session.scope, lambda r: r.data["customer"] == customer
        )
    )


def _act(sim: StripeSimulator, session: Record, customer: str, form: dict[str, str]) -> str:
    """Carry out a button; return what was done ("card", "cancel" or "")."""
    engine = sim.engine
    action = form.get("action")
    if action == "update_payment_method":
        renewals.update_payment_method(engine, customer)
        return "card"
    if action == "cancel":
        for record in _subscriptions(sim, session, customer):
            data = record.data
            live = data["status"] in renewals.LIVE_STATUSES and not data["cancel_at_period_end"]
            if record.id == form.get("subscription") and live:
                previous = renewals.cancel_at_period_end(engine, data, True)
                engine.emit("customer.subscription.updated", data, record.scope, None, previous)
                return "cancel"
    return ""


def _date(timestamp: int) -> str:
    return time.strftime("%d %b %Y", time.gmtime(timestamp))


def _subscription_row(record: Record) -> str:
    data = record.data
    esc = html.escape
    item = data["items"]["data"][0]
    price = item["price"]
    amount = money.format_amount(price["unit_amount"] * item["quantity"], price["currency"])
    per = price["recurring"]["interval"]
    status = data["status"]
    if status == "canceled":
        when = f"Canceled {_date(data['ended_at'] or data['canceled_at'])}"
    elif data["cancel_at_period_end"]:
        when = f"Cancels {_date(data['cancel_at'])}"
    else:
        when = f"Renews {_date(item['current_period_end'])}"
    notice = (
        "<p class='notice' role='alert'>Your last payment failed. Update your payment "
        "method to pay what is due.</p>"
        if status == "past_due"
        else ""
    )
    button = ""
    if status in renewals.LIVE_STATUSES and not data["cancel_at_period_end"]:
        button = (
            "<form method='post'><input type='hidden' name='action' value='cancel'>"
            f"<input type='hidden' name='subscription' value='{esc(record.id)}'>"
            "<button type='submit'>Cancel subscription</button></form>"
        )
    return (
        f"<section data-testid='subscription' data-id='{esc(record.id)}'>"
        f"<p class='amount'>{esc(amount)} / {esc(per)}</p>"
        f"<p>Status: <span data-testid='status'>{esc(status)}</span> · {esc(when)}</p>"
        f"{notice}{button}</section>"
    )


def _portal(sim: StripeSimulator, session: Record, customer: str, done: str) -> Response:
    engine = sim.engine
    esc = html.escape
    data = session.data
    customer_record = engine.store.find(customer, "customer")
    email = customer_record.data["email"] if customer_record else ""
    subs = _subscriptions(sim, session, customer)
    invoices: list[Any] = list(
        engine.store.iter("invoice", session.scope, lambda r: r.data["customer"] == customer)
    )
    failing = any(renewals.card_fails(engine, record.data) for record in subs)
    card = "Visa •••• 4242" + (" (declined)" if failing else "")
    rows = "".join(
        f"<li><a href='{esc(inv.data['hosted_invoice_url'])}'>{esc(inv.data['number'])}</a> "
        f"{esc(money.format_amount(inv.data['total'], inv.data['currency']))} "
        f"{esc(inv.data['status'])} · {_date(inv.data['created'])}</li>"
        for inv in invoices
        if inv.data["number"]
    )
    back = ""
    if data["return_url"]:
        site = urlsplit(data["return_url"]).hostname or data["return_url"]
        back = f"<p><a href='{esc(data['return_url'])}'>Return to {esc(site)}</a></p>"
    mode = "" if data["livemode"] else "<span class='mode'>TEST MODE</span>"
    status = f"<p class='notice' role='status'>{esc(done)}</p>" if done else ""
    body = (
        f"{mode}<h1>Billing</h1>{status}<p>{esc(email or customer)}</p>"
        "<h2>Subscriptions</h2>"
        f"{''.join(_subscription_row(record) for record in subs) or '<p>None.</p>'}"
        f"<h2>Payment method</h2><p data-testid='card'>{esc(card)}</p>"
        "<form method='post'><input type='hidden' name='action' value='update_payment_method'>"
        "<button class='primary' type='submit'>Update payment method</button></form>"
        f"<h2>Invoices</h2><ul data-testid='invoices'>{rows}</ul>{back}"
    )
    locale = data["locale"]
    return page("Billing portal", body, lang=locale if locale and locale != "auto" else "en")
