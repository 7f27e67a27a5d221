"""Connect through the simulator: accounts, account links, onboarding, Stripe-Account."""

from __future__ import annotations

import pytest
import requests
import stripe

CONTROLLER = {
    "fees": {"payer": "account"},
    "losses": {"payments": "stripe"},
    "requirement_collection": "stripe",
    "stripe_dashboard": {"type": "full"},
}
SESSION = {
    "mode": "payment",
    "success_url": "https://client.example/ok",
    "line_items": [
        {
            "price_data": {"currency": "usd", "unit_amount": 5000, "product_data": {"name": "X"}},
            "quantity": 1,
        }
    ],
}


def new_account(client, **params):
    """A connected account created with controller properties."""
    return client.v1.accounts.create(
        params={"controller": CONTROLLER, "country": "FR", "email": "agency@example.com",
                **params}
    )  # fmt: skip


def test_new_account_is_not_onboarded(stripe_client):
    account = new_account(
        stripe_client(),
        business_profile={"url": "https://agency.example"},
        metadata={"site": "acme"},
    )
    assert account.id.startswith("acct_") and account.object == "account"
    assert (account.details_submitted, account.charges_enabled, account.payouts_enabled) == (
        False,
        False,
        False,
    )
    assert account.requirements.currently_due  # something is due before charging
    assert account.country == "FR" and account.email == "agency@example.com"
    assert account.business_profile.url == "https://agency.example"
    assert account.metadata.to_dict() == {"site": "acme"}
    assert account.controller.stripe_dashboard.type == "full"
    assert account.type == "standard"  # the legacy type matching those properties


@pytest.mark.parametrize("account_type", ["standard", "express", "custom"])
def test_deprecated_type_still_works(stripe_client, account_type):
    account = stripe_client().v1.accounts.create(params={"type": account_type})
    assert account.type == account_type
    assert account.controller.is_controller is True


def test_account_validation(stripe_client):
    client = stripe_client()
    cases = [
        ({"type": "premium"}, "type"),
        ({"email": "not-an-email"}, "email"),
        ({"country": "France"}, "country"),
        ({"colour": "blue"}, "colour"),
        ({"type": "standard", "controller": CONTROLLER}, "type"),
    ]
    for params, param in cases:
        with pytest.raises(stripe.InvalidRequestError) as excinfo:
            client.v1.accounts.create(params=params)
        assert excinfo.value.param == param, params


def test_retrieve_update_list_delete(stripe_client, stripe_simulator):
    client = stripe_client()
    account = new_account(client)
    assert client.v1.accounts.retrieve(account.id).id == account.id

    updated = client.v1.accounts.update(account.id, params={"metadata": {"site": "bakery"}})
    assert updated.metadata.site == "bakery"
    [event] = stripe_simulator.events("account.updated")
    assert event["account"] == account.id
    assert event["data"]["previous_attributes"] == {"metadata": {}}

    assert [a.id for a in client.v1.accounts.list().data] == [account.id]
    deleted = client.v1.accounts.delete(account.id)
    assert (deleted.id, deleted.deleted) == (account.id, True)
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.accounts.retrieve(account.id)
    assert excinfo.value.code == "resource_missing"


def test_live_accounts_with_a_full_dashboard_cannot_be_deleted(stripe_client):
    live = stripe_client("sk_live_simulator")
    account = new_account(live)
    with pytest.raises(stripe.InvalidRequestError):
        live.v1.accounts.delete(account.id)
    express = live.v1.accounts.create(params={"type": "express"})
    assert live.v1.accounts.delete(express.id).deleted is True


def test_test_and_live_accounts_are_separate(stripe_client):
    test_account = new_account(stripe_client())
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client("sk_live_simulator").v1.accounts.retrieve(test_account.id)
    assert stripe_client("sk_live_simulator").v1.accounts.list().data == []


def test_account_link_points_at_the_onboarding_page(stripe_client, stripe_simulator):
    client = stripe_client()
    account = new_account(client)
    link = client.v1.account_links.create(
        params={
            "account": account.id,
            "type": "account_onboarding",
            "refresh_url": "https://agency.example/refresh",
            "return_url": "https://agency.example/return",
        }
    )
    assert link.object == "account_link"
    assert link.url.startswith(f"{stripe_simulator.url}/setup/s/{account.id}/")
    assert 60 <= link.expires_at - link.created <= 600


def test_account_link_validation(stripe_client):
    client = stripe_client()
    account = new_account(client)
    for params, param in [
        ({"type": "account_onboarding"}, "account"),
        ({"account": account.id}, "type"),
        ({"account": account.id, "type": "bogus"}, "type"),
        ({"account": "acct_nope", "type": "account_onboarding"}, "account"),
        ({"account": account.id, "type": "account_onboarding", "return_url": "x"}, "return_url"),
    ]:
        with pytest.raises(stripe.InvalidRequestError) as excinfo:
            client.v1.account_links.create(params=params)
        assert excinfo.value.param == param, params


def onboarding_link(client, account_id):
    return client.v1.account_links.create(
        params={
            "account": account_id,
            "type": "account_onboarding",
            "refresh_url": "https://agency.example/refresh",
            "return_url": "https://agency.example/return",
        }
    )


def test_completing_onboarding_enables_charges_and_emits_account_updated(
    stripe_client, stripe_simulator
):
    client = stripe_client()
    account = new_account(client)
    link = onboarding_link(client, account.id)
    http = requests.Session()

    page = http.get(link.url, timeout=5)
    assert page.status_code == 200 and "Complete onboarding" in page.text
    done = http.post(link.url, data={"action": "complete"}, allow_redirects=False, timeout=5)

    assert (done.status_code, done.headers["Location"]) == (303, "https://agency.example/return")
    account = client.v1.accounts.retrieve(account.id)
    assert account.details_submitted and account.charges_enabled and account.payouts_enabled
    assert account.requirements.currently_due == []
    [event] = stripe_simulator.events("account.updated")
    assert event["account"] == account.id
    assert event["data"]["object"]["charges_enabled"] is True
    assert event["data"]["previous_attributes"]["charges_enabled"] is False


def test_reused_or_expired_links_go_to_refresh_url(stripe_client, stripe_simulator):
    client = stripe_client()
    account = new_account(client)
    used = onboarding_link(client, account.id)
    requests.get(used.url, timeout=5)
    again = requests.get(used.url, allow_redirects=False, timeout=5)
    assert (again.status_code, again.headers["Location"]) == (303, "https://agency.example/refresh")

    old = onboarding_link(client, account.id)
    stripe_simulator.advance_clock(old.expires_at - old.created)
    expired = requests.get(old.url, allow_redirects=False, timeout=5)
    assert expired.headers["Location"] == "https://agency.example/refresh"
    posted = requests.post(old.url, data={"action": "complete"}, allow_redirects=False, timeout=5)
    assert posted.headers["Location"] == "https://agency.example/refresh"
    assert client.v1.accounts.retrieve(account.id).charges_enabled is False


def test_leaving_onboarding_returns_without_completing(stripe_client):
    client = stripe_client()
    account = new_account(client)
    link = onboarding_link(client, account.id)
    requests.get(link.url, timeout=5)
    left = requests.post(link.url, data={"action": "leave"}, allow_redirects=False, timeout=5)
    assert left.headers["Location"] == "https://agency.example/return"
    assert client.v1.accounts.retrieve(account.id).details_submitted is False


def test_stripe_account_header_isolates_objects(stripe_client, stripe_simulator):
    platform = stripe_client()
    first, second = new_account(platform), new_account(platform)
    on_first = platform.v1.checkout.sessions.create(
        params=SESSION, options={"stripe_account": first.id}
    )
    on_platform = platform.v1.checkout.sessions.create(params=SESSION)

    as_first = stripe_client(stripe_account=first.id)
    assert as_first.v1.checkout.sessions.retrieve(on_first.id).id == on_first.id
    assert [s.id for s in as_first.v1.checkout.sessions.list().data] == [on_first.id]
    for client, session_id in [
        (platform, on_first.id),
        (stripe_client(stripe_account=second.id), on_first.id),
        (as_first, on_platform.id),
    ]:
        with pytest.raises(stripe.InvalidRequestError) as excinfo:
            client.v1.checkout.sessions.retrieve(session_id)
        assert excinfo.value.http_status == 404

    stripe_simulator.complete_checkout(on_first.id)
    stripe_simulator.complete_checkout(on_platform.id)
    connected_events = as_first.v1.events.list().data
    assert [(e.type, e.account) for e in connected_events] == [
        ("checkout.session.completed", first.id)
    ]
    platform_events = platform.v1.events.list().data
    assert [e.data.object.id for e in platform_events] == [on_platform.id]
    assert "account" not in platform_events[0]


def test_unknown_or_deauthorized_stripe_account_is_refused(stripe_client, stripe_simulator):
    with pytest.raises(stripe.PermissionError) as excinfo:
        stripe_client(stripe_account="acct_unknown").v1.checkout.sessions.list()
    assert excinfo.value.http_status == 403
    assert excinfo.value.error.code == "account_invalid"

    account = new_account(stripe_client())
    live_client = stripe_client("sk_live_simulator", stripe_account=account.id)
    with pytest.raises(stripe.PermissionError):
        live_client.v1.checkout.sessions.list()  # a test-mode account in live mode

    event = stripe_simulator.deauthorize(account.id)
    assert event["type"] == "account.application.deauthorized"
    assert event["account"] == account.id
    with pytest.raises(stripe.PermissionError):
        stripe_client(stripe_account=account.id).v1.checkout.sessions.list()


def test_own_account_endpoint(stripe_client):
    platform = stripe_client()
    account = new_account(platform)
    assert stripe_client(stripe_account=account.id).v1.accounts.retrieve_current().id == (
        account.id
    )
    me = platform.v1.accounts.retrieve_current()
    assert me.id.startswith("acct_") and me.charges_enabled is True
