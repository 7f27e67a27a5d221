"""No database lock is held while Stripe is called (SQLite; the PostgreSQL run imports
``stripe_hangs_while_others_work`` from here).

The proof: a live server (threads, each with its own connection to a file database in
WAL mode, as deployed), an editor's create or delete that the simulator keeps waiting
for seconds, and meanwhile signed webhooks for other requests and another editor's
listing, which must answer at once. Before the fix the editor's transaction held
SQLite's only write lock for as long as Stripe took, and every webhook waited for it
(up to the busy timeout, then 500 "database is locked").

Also: the guard that refuses a Stripe call inside a transaction; a retry after a
timeout gets the same Checkout Session; a creation stalled by a crash is never listed
and is swept; the expired event our own delete causes makes the request Deleted.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.conf import settings as django_settings
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from wagtail.models import ModelLogEntry

from tests.factories import (
    connect_ready_account,
    grant_billing,
    make_site,
    make_user,
    request_details,
)
from tests.test_billing_requests import (
    ADD,
    INDEX,
    CommittingClient,
    deliver,
    form,
    last_event,
    sessions_at_stripe,
)
from wagtail_client_billing import billing, stripe_api, tasks
from wagtail_client_billing.models import BillingRequest
from wagtail_client_billing.testing.stripe_simulator.webhooks import signature_header

Status = BillingRequest.Status
WEBHOOK = "/billing/stripe/webhook/"
SECRET = "whsec_test_suite"  # tests/settings.py
HANG = 7.0  # seconds the simulator keeps the editor's call waiting
AT_ONCE = 3.0  # what "answers at once" means here, on 2 busy cores (before: ~HANG)


@pytest.fixture
def stripe_timeout():
    return 1


# The proof, on a live server -------------------------------------------------------------


def browser_of(live_server, user) -> requests.Session:
    """A ``requests`` session logged in as ``user`` on the live server."""
    client = Client()
    client.force_login(user)
    session = requests.Session()
    name = django_settings.SESSION_COOKIE_NAME
    session.cookies.set(name, client.cookies[name].value)
    return session


def form_fields(page: str) -> dict[str, str]:
    """The hidden fields of the page's form (CSRF token, nonce)."""
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page))


def timed(call: Callable[[], requests.Response]) -> tuple[int, float]:
    started = time.monotonic()
    response = call()
    return response.status_code, time.monotonic() - started


def stripe_hangs_while_others_work(
    live_server, stripe, action: str, during_hang: Callable[[], None] | None = None
) -> None:
    """Editor A's ``action`` ("create" or "delete") waits ``HANG`` s at Stripe; meanwhile
    five signed webhooks (other requests paid) and editor B's listing answer at once."""
    site_a, site_b = make_site("acme.test", "Acme"), make_site("bakery.test", "Bakery")
    editor_a, editor_b = make_user("acme-editor"), make_user("bakery-editor")
    grant_billing(editor_a, site_a)
    grant_billing(editor_b, site_b)
    connect_ready_account(stripe)
    others = [
        billing.create_request(site=site_b, details=request_details(email=f"c{n}@example.com"))
        for n in range(5)
    ]
    for other in others:  # paid at Stripe; the webhooks are sent below
        stripe.complete_checkout(other.checkout_session_id)
    webhooks = []
    for event in stripe.events("checkout.session.completed"):
        body = json.dumps(event).encode()
        webhooks.append((body, signature_header(body, SECRET)))
    doomed = billing.create_request(
        site=site_a, details=request_details(email="doomed@example.com")
    )

    a, b = browser_of(live_server, editor_a), browser_of(live_server, editor_b)
    if action == "create":
        target = f"{live_server.url}{ADD}?site={site_a.pk}"
        data = form(site_a, email="slow@example.com")
        stripe.hang_next("POST", "/v1/checkout/sessions", seconds=HANG)
    else:
        delete = reverse("wagtail_client_billing_requests:delete", args=[doomed.pk])
        target = f"{live_server.url}{delete}"
        data = {}
        stripe.hang_next("POST", "/v1/checkout/sessions/*/expire", seconds=HANG)
    page = a.get(target, timeout=30)
    assert page.status_code == 200
    hidden = form_fields(page.text)
    data["csrfmiddlewaretoken"] = hidden["csrfmiddlewaretoken"]
    if action == "create":
        data["nonce"] = hidden["nonce"]
    outcome: dict[str, Any] = {}

    def editor_acts() -> None:
        response = a.post(target, data=data, timeout=60, allow_redirects=False)
        outcome["status"] = response.status_code
        connection.close()

    editor = threading.Thread(target=editor_acts)
    editor.start()
    deadline = time.monotonic() + 10
    while stripe.engine.faults.active():  # until Stripe holds the editor's call
        assert time.monotonic() < deadline, "the editor's call never reached Stripe"
        time.sleep(0.05)
    time.sleep(1.5)  # the editor's call has been waiting at Stripe for over a second
    if during_hang is not None:
        during_hang()

    def post_webhook(signed: tuple[bytes, str]) -> tuple[int, float]:
        body, header = signed
        return timed(
            lambda: requests.post(
                live_server.url + WEBHOOK,
                data=body,
                headers={"Content-Type": "application/json", "Stripe-Signature": header},
                timeout=60,
            )
        )

    listing = f"{live_server.url}{INDEX}?site={site_b.pk}"
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(post_webhook, webhooks))
        answers.append(pool.submit(timed, lambda: b.get(listing, timeout=60)).result())
    still_waiting = editor.is_alive()
    editor.join(timeout=60)

    assert [status for status, _ in answers] == [200] * 6, answers
    slowest = max(elapsed for _, elapsed in answers)
    assert slowest < AT_ONCE, f"answered in {slowest:.1f} s while Stripe was slow: {answers}"
    assert still_waiting, "Stripe answered the editor before the others were measured"
    assert outcome["status"] == 302
    assert {o.status for o in BillingRequest.objects.filter(pk__in=[o.pk for o in others])} == {
        Status.PAID
    }
    if action == "create":
        made = BillingRequest.objects.get(email="slow@example.com")
        assert made.status == Status.PENDING and made.checkout_session_id
    else:
        doomed.refresh_from_db()
        assert doomed.status == Status.DELETED


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("wagtail_root")
@pytest.mark.parametrize("action", ["create", "delete"])
def test_while_stripe_hangs_webhooks_and_other_editors_answer_at_once(
    live_server, billing_stripe_settings, settings, action
):
    settings.WAGTAIL_CLIENT_BILLING = {
        **settings.WAGTAIL_CLIENT_BILLING,
        "STRIPE_MAX_NETWORK_RETRIES": 0,
        "STRIPE_TIMEOUT": 30,
    }
    stripe_hangs_while_others_work(live_server, billing_stripe_settings, action)


# The guard ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_stripe_call_inside_a_transaction_fails_loudly(stripe, monkeypatch, caplog):
    account = connect_ready_account(stripe)
    # The test's own wrapping transaction does not count: this is allowed.
    assert stripe_api.retrieve_account("test", account.account_id).id == account.account_id
    with pytest.raises(stripe_api.StripeCalledInTransaction), transaction.atomic():
        stripe_api.retrieve_account("test", account.account_id)
    # A project with ATOMIC_REQUESTS cannot avoid it: an error in the log, not a failure.
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    with caplog.at_level(logging.ERROR), transaction.atomic():
        stripe_api.retrieve_account("test", account.account_id)
    assert "inside a database transaction" in caplog.text


# Create: a retry gets the same session; a stalled creation -------------------------------


@pytest.fixture
def editor(client, django_capture_on_commit_callbacks, db, stripe):
    site = make_site("acme.test", "Acme Plumbing")
    user = make_user("acme-editor")
    grant_billing(user, site)
    client.force_login(user)
    connect_ready_account(stripe)
    return CommittingClient(client, django_capture_on_commit_callbacks), site


def post_form(client, site, data):
    return client.post(f"{ADD}?site={site.pk}", data)


def test_a_retry_after_a_stripe_timeout_gets_the_same_session(editor, stripe, mailoutbox):
    client, site = editor
    data = form(site, email="patient@example.com", nonce="one-form")
    stripe.hang_next("POST", "/v1/checkout/sessions", seconds=1.5)  # past the 1 s timeout
    response = post_form(client, site, data)
    assert response.status_code == 200
    assert "Stripe could not be reached" in response.content.decode()
    assert 'value="patient@example.com"' in response.content.decode()  # kept as typed
    stripe.wait_idle()  # Stripe carries the slow call out: a session exists there

    response = post_form(client, site, data)  # the editor sends the same form again
    assert response.status_code == 302
    request = BillingRequest.objects.get()
    assert request.status == Status.PENDING
    # One client, one session: the retry got the session the timed-out call made.
    assert [s.id for s in sessions_at_stripe(_linked())] == [request.checkout_session_id]
    assert len(mailoutbox) == 1

    # A form whose submission went through is still refused a second time.
    response = post_form(client, site, data)
    assert response.status_code == 302
    assert response.url == reverse("wagtail_client_billing_requests:inspect", args=[request.pk])
    assert BillingRequest.objects.count() == 1 and len(mailoutbox) == 1


def _linked():
    from wagtail_client_billing import connections

    return connections.linked_connection("test")


def test_a_creation_stalled_by_a_crash_is_never_shown_and_is_swept(editor, stripe, mailoutbox):
    client, site = editor
    data = form(site, email="ghost@example.com", nonce="crashed-form")
    stripe.hang_next("POST", "/v1/checkout/sessions", seconds=1.5)
    post_form(client, site, data)  # as if the process died waiting for Stripe
    stalled = BillingRequest.objects.get()
    assert stalled.status == BillingRequest.CREATING and stalled.checkout_session_id is None
    assert "ghost@example.com" not in client.get(f"{INDEX}?site={site.pk}").content.decode()
    stripe.wait_idle()  # Stripe has now created the session the process never saw

    # Young: kept for the form's retry. Not expired, reconciled nor emailed by the sweep.
    later = timezone.now() + timedelta(hours=25)
    assert billing.expire_overdue(now=later) == []
    assert tasks.expire_and_reconcile() == {"expired": 0, "reconciled": 0}
    assert BillingRequest.objects.filter(pk=stalled.pk).exists()
    # Old (nobody came back for it): removed, and nothing was ever said about it.
    BillingRequest.objects.filter(pk=stalled.pk).update(
        created_at=timezone.now() - billing.stalled_creation_age()
    )
    tasks.expire_and_reconcile()
    assert not BillingRequest.objects.exists()
    assert mailoutbox == []
    assert not ModelLogEntry.objects.filter(action__startswith="wagtail_client_billing.request")

    # The same form sent again later starts afresh, under a new key.
    assert post_form(client, site, data).status_code == 302
    request = BillingRequest.objects.get()
    assert request.status == Status.PENDING and len(mailoutbox) == 1


def test_a_form_changed_after_a_timeout_bills_what_it_now_says(editor, stripe, mailoutbox):
    client, site = editor
    data = form(site, email="first@example.com", nonce="edited-form")
    stripe.hang_next("POST", "/v1/checkout/sessions", seconds=1.5)
    post_form(client, site, data)
    stripe.wait_idle()
    response = post_form(client, site, {**data, "email": "second@example.com"})
    assert response.status_code == 302
    request = BillingRequest.objects.get()
    assert request.email == "second@example.com" and request.status == Status.PENDING
    session = stripe.get_object(request.checkout_session_id, "checkout.session")
    assert session["customer_email"] == "second@example.com"
    assert [m.to for m in mailoutbox] == [["second@example.com"]]


# Delete: the expired event our own call causes --------------------------------------------


def delete_with_no_answer(client, site, stripe) -> BillingRequest:
    """A delete whose expire call reaches Stripe but whose answer never comes back."""
    assert post_form(client, site, form(site)).status_code == 302
    request = BillingRequest.objects.get()
    stripe.hang_next("POST", "/v1/checkout/sessions/*/expire", seconds=1.5)
    delete = reverse("wagtail_client_billing_requests:delete", args=[request.pk])
    page = client.post(delete, follow=True).content.decode()
    assert "Stripe could not be reached" in page
    request.refresh_from_db()
    assert request.status == Status.PENDING
    time.sleep(1.0)  # Stripe expires the session after all, and says so
    assert stripe.get_object(request.checkout_session_id, "checkout.session")["status"] == (
        "expired"
    )
    return request


def test_the_expired_event_a_delete_causes_makes_it_deleted_not_expired(editor, stripe):
    client, site = editor
    request = delete_with_no_answer(client, site, stripe)
    assert deliver(client, last_event(stripe, "checkout.session.expired")).status_code == 200
    request.refresh_from_db()
    assert request.status == Status.DELETED
    entry = ModelLogEntry.objects.get(object_id=str(request.pk), action=billing.ACTION_DELETED)
    assert entry.user.username == "acme-editor"  # who asked, though a webhook finished it
    assert not ModelLogEntry.objects.filter(action=billing.ACTION_EXPIRED).exists()


def test_reconciliation_finishes_a_delete_whose_answer_was_lost(editor, stripe):
    client, site = editor
    request = delete_with_no_answer(client, site, stripe)
    billing.reconcile_one(request)
    request.refresh_from_db()
    assert request.status == Status.DELETED
    assert not ModelLogEntry.objects.filter(action=billing.ACTION_EXPIRED).exists()


def test_every_view_that_calls_stripe_or_smtp_runs_outside_atomic_requests():
    # Under ATOMIC_REQUESTS the request's transaction would be held across the network.
    from django.urls import resolve

    calling_out = [
        reverse("wagtail_client_billing_requests:add"),
        reverse("wagtail_client_billing_requests:delete", args=[1]),
        reverse("wagtail_client_billing_requests:renew", args=[1]),
        reverse("wagtail_client_billing_requests:email_settings_test"),
        *(
            reverse(f"wagtail_client_billing_agency:{name}", args=["test"])
            for name in ("onboard", "refresh", "return", "refresh_status", "unlink")
        ),
        reverse("wagtail_client_billing_agency:register_webhook", args=["test"]),
        reverse("wagtail_client_billing_agency:connect"),
        "/billing/stripe/webhook/",
    ]
    for path in calling_out:
        assert getattr(resolve(path).func, "_non_atomic_requests", None) == {"default"}, path
