"""Hosted pages a browser (or Playwright) can click: Checkout and Connect onboarding.

Plain HTML forms that POST back to the same URL; no JavaScript. Button labels are
fixed ("Pay", "Cancel", "Pay with delayed method", "Complete onboarding") so tests can
find them by role and exact name.
"""

from __future__ import annotations

import html
import re
import time
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from ... import money
from . import pages_billing, pages_portal
from .errors import StripeError
from .responses import Response, page, redirect

if TYPE_CHECKING:
    from .simulator import StripeSimulator

CHECKOUT = re.compile(r"^/c/pay/(?P<id>cs_(test|live)_[A-Za-z0-9]+)$")
ONBOARDING = re.compile(r"^/setup/s/(?P<account>acct_[A-Za-z0-9]+)/(?P<token>[A-Za-z0-9]+)$")


def handle(sim: StripeSimulator, method: str, path: str, query: str, body: bytes) -> Response:
    """Serve a hosted page, or a 404 page."""
    form = {key: values[-1] for key, values in parse_qs(body.decode("utf-8")).items()}
    if match := CHECKOUT.match(path):
        if method == "POST":
            return _checkout_submit(sim, match["id"], form)
        return _checkout_page(sim, match["id"])
    if match := ONBOARDING.match(path):
        return _onboarding(sim, method, match["account"], match["token"], form)
    if (response := pages_billing.handle(sim, method, path, form)) is not None:
        return response
    if (response := pages_portal.handle(sim, method, path, query, form)) is not None:
        return response
    if path == "/":
        return page("Stripe simulator", f"<h1>Stripe simulator</h1><p>API at {sim.url}/v1/</p>")
    return page("Not found", "<h1>Not found</h1><p>This page does not exist.</p>", 404)


def _checkout_page(sim: StripeSimulator, session_id: str, error: str = "") -> Response:
    engine = sim.engine
    record = engine.store.find(session_id, "checkout.session")
    if record is None:
        return page("Not found", "<h1>Not found</h1><p>No such Checkout Session.</p>", 404)
    engine.expire_if_due(record)
    data = record.data
    esc = html.escape
    items = "".join(
        f"<li>{esc(item['description'])} &times; {item['quantity']}</li>"
        for item in record.extra["line_items"]
    )
    amount = money.format_amount(data["amount_total"], data["currency"])
    recurring = record.extra["line_items"][0]["price"]["recurring"]
    per = f" / {recurring['interval']}" if recurring else ""
    mode = "" if data["livemode"] else "<span class='mode'>TEST MODE</span>"
    head = (
        f"{mode}<h1>Checkout</h1><ul class='items'>{items}</ul>"
        f"<p class='amount' data-testid='amount'>{esc(amount)}{per}</p>"
        f"<p>Currency: <span data-testid='currency'>{esc(data['currency'].upper())}</span></p>"
    )
    if data["status"] != "open":
        notice = {
            "expired": "This Checkout Session has expired. The payment link no longer works.",
            "complete": "This Checkout Session is complete. Thank you, nothing more to pay.",
        }[data["status"]]
        return page("Checkout", f"{head}<p class='notice' role='status'>{notice}</p>")
    email = data["customer_email"] or ""
    readonly = " readonly" if email else ""
    expires = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(data["expires_at"]))
    problem = f"<p class='notice' role='alert'>{esc(error)}</p>" if error else ""
    form = (
        f"{problem}<form method='post'>"
        f"<label for='email'>Email</label>"
        f"<input id='email' name='email' type='email' value='{esc(email)}' required{readonly}>"
        f"{pages_billing.collected_fields(record.extra['params'])}"
        f"<button class='primary' type='submit' name='action' value='pay'>Pay</button>"
        f"<button type='submit' name='action' value='delayed'>Pay with delayed method</button>"
        f"<button type='submit' name='action' value='cancel' formnovalidate>Cancel</button>"
        f"</form><p><small>Expires {expires}.</small></p>"
    )
    return page("Checkout", head + form)


def _checkout_submit(sim: StripeSimulator, session_id: str, form: dict[str, str]) -> Response:
    engine = sim.engine
    record = engine.store.find(session_id, "checkout.session")
    if record is None:
        return page("Not found", "<h1>Not found</h1><p>No such Checkout Session.</p>", 404)
    action = form.get("action", "pay")
    if action == "cancel":
        if engine.expire_if_due(record) or record.data["status"] != "open":
            return _checkout_page(sim, session_id)
        cancel_url = record.data["cancel_url"]
        if cancel_url:
            return redirect(cancel_url)
        return page("Checkout", "<h1>Payment cancelled</h1><p>You can close this page.</p>")
    params = record.extra["params"]
    collected, missing = pages_billing.collected(params, form)
    if missing and record.data["status"] == "open":
        return _checkout_page(sim, session_id, f"Please fill in: {', '.join(missing)}.")
    try:
        data = engine.complete_checkout(
            session_id, delayed=action == "delayed", email=form.get("email") or None, **collected
        )
    except StripeError:
        return _checkout_page(sim, session_id)
    return redirect(data["success_url"].replace("{CHECKOUT_SESSION_ID}", session_id))


def _onboarding(
    sim: StripeSimulator, method: str, account_id: str, token: str, form: dict[str, str]
) -> Response:
    engine = sim.engine
    with engine.lock:
        link = engine.store.account_links.get(token)
        record = engine.store.find(account_id, "account")
        if link is None or link["account"] != account_id or record is None:
            return page("Not found", "<h1>Not found</h1><p>This link is not valid.</p>", 404)
        expired = engine.now() >= link["expires_at"]
        used = link["state"] == "used" or (method == "GET" and link["state"] != "new")
        if expired or used:
            # Stripe sends expired and already-visited links to refresh_url for a new one.
            if link["refresh_url"]:
                return redirect(link["refresh_url"])
            return page("Link expired", "<h1>This link has expired</h1>", 410)
        if method == "GET":
            link["state"] = "visited"
        else:
            link["state"] = "used"
            if form.get("action") == "complete":
                engine.complete_onboarding(account_id)
    if method != "GET":
        if link["return_url"]:
            return redirect(link["return_url"])
        return page("Onboarding", "<h1>Done</h1><p>You can close this page.</p>")
    data = record.data
    esc = html.escape
    mode = "" if record.scope.livemode else "<span class='mode'>TEST MODE</span>"
    body = (
        f"{mode}<h1>Set up your Stripe account</h1>"
        f"<p>Account <code data-testid='account'>{esc(account_id)}</code>"
        f" ({esc(data['country'] or '')}, {esc(data['email'] or 'no email')})</p>"
        f"<p>Still due: {esc(', '.join(data['requirements']['currently_due']) or 'nothing')}</p>"
        "<form method='post'>"
        "<button class='primary' type='submit' name='action' value='complete'>"
        "Complete onboarding</button>"
        "<button type='submit' name='action' value='leave'>Return without completing</button>"
        "</form>"
    )
    return page("Stripe onboarding", body)
