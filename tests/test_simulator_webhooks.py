"""Events and webhooks: Stripe's signature, routing, retries, drops and duplicates."""

from __future__ import annotations

import json
import socket
import time

import pytest
import stripe

from wagtail_client_billing.testing.stripe_simulator import (
    StripeSimulator,
    compute_signature,
    signature_header,
)
from wagtail_client_billing.testing.stripe_simulator.receiver import WebhookReceiver

SECRET = "whsec_test_shared_secret"
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


def paid_session(client, sim, **options):
    """Create a session (optionally on an account) and pay it."""
    session = client.v1.checkout.sessions.create(params=SESSION, options=options)
    sim.complete_checkout(session.id)
    return session


def wait_until_delivered(sim, timeout: float = 5.0) -> None:
    """A bounded drain: block until every event reached all its endpoints (its
    ``pending_webhooks`` is 0), after which nothing else is on its way."""
    deadline = time.monotonic() + timeout
    while pending := [event["id"] for event in sim.events() if event["pending_webhooks"]]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"Webhooks still pending after {timeout}s: {pending}")
        time.sleep(0.01)


def test_signature_matches_stripes_own_computation():
    payload = '{"id": "evt_1"}'
    ours = compute_signature(payload, SECRET, 1_700_000_000)
    theirs = stripe.WebhookSignature._compute_signature(f"1700000000.{payload}", SECRET)
    assert ours == theirs
    assert signature_header(payload, SECRET, 1_700_000_000) == f"t=1700000000,v1={ours}"


def test_deliveries_are_signed_as_stripe_signs(stripe_simulator, stripe_client, webhook_receiver):
    stripe_simulator.add_webhook(webhook_receiver.webhook_url, SECRET)
    session = paid_session(stripe_client(), stripe_simulator)

    [request] = webhook_receiver.wait_for("checkout.session.completed")
    header = request.signature
    assert header.startswith("t=") and ",v1=" in header
    assert request.headers["Content-Type"].startswith("application/json")

    event = stripe.Webhook.construct_event(request.body, header, SECRET)
    assert event.type == "checkout.session.completed"
    assert event.data.object.id == session.id
    assert event.data.object.payment_status == "paid"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(request.body, header, "whsec_another_secret")
    tampered = request.body.replace(b'"paid"', b'"unpaid"')
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(tampered, header, SECRET)


def test_signature_uses_real_time_even_when_the_clock_moved(
    stripe_simulator, stripe_client, webhook_receiver
):
    # A receiver checks ``t`` against its own clock with a 300 s tolerance.
    stripe_simulator.add_webhook(webhook_receiver.webhook_url, SECRET)
    stripe_simulator.advance_clock(7 * 86400)
    paid_session(stripe_client(), stripe_simulator)
    [request] = webhook_receiver.wait_for("checkout.session.completed")
    stripe.Webhook.construct_event(request.body, request.signature, SECRET, tolerance=300)
    event = request.json()
    assert event["created"] >= time.time() + 7 * 86400 - 5  # events carry simulated time


def test_event_shape_and_retrieval(stripe_simulator, stripe_client, webhook_receiver):
    stripe_simulator.add_webhook(webhook_receiver.webhook_url, SECRET)
    client = stripe_client()
    session = paid_session(client, stripe_simulator)
    [request] = webhook_receiver.wait_for("checkout.session.completed")
    delivered = request.json()
    stripe_simulator.wait_for_delivery("checkout.session.completed")

    event = client.v1.events.retrieve(delivered["id"])
    assert event.id.startswith("evt_") and event.object == "event"
    assert event.type == "checkout.session.completed"
    assert event.livemode is False and event.api_version
    assert event.data.object.id == session.id
    assert event.request.id is None  # caused by the hosted page, not an API request
    assert event.pending_webhooks == 0  # delivered
    assert delivered["pending_webhooks"] == 1  # as it was when sent
    assert "account" not in delivered

    expired = client.v1.checkout.sessions.create(params=SESSION)
    client.v1.checkout.sessions.expire(expired.id, options={"idempotency_key": "expire-1"})
    listed = client.v1.events.list(params={"type": "checkout.session.expired"}).data
    assert [e.data.object.id for e in listed] == [expired.id]
    assert listed[0].request.idempotency_key == "expire-1"
    assert listed[0].request.id.startswith("req_")
    wildcard = client.v1.events.list(params={"type": "checkout.session.*"}).data
    assert {e.type for e in wildcard} == {"checkout.session.completed", "checkout.session.expired"}


def test_api_endpoints_follow_connect_and_enabled_events(stripe_simulator, stripe_client):
    client = stripe_client()
    with WebhookReceiver() as platform_rx, WebhookReceiver() as connect_rx:
        platform = client.v1.webhook_endpoints.create(
            params={
                "url": platform_rx.webhook_url,
                "enabled_events": ["checkout.session.completed"],
            }
        )
        connect = client.v1.webhook_endpoints.create(
            params={"url": connect_rx.webhook_url, "enabled_events": ["*"], "connect": True}
        )
        assert platform.secret.startswith("whsec_") and connect.secret != platform.secret
        assert "secret" not in client.v1.webhook_endpoints.retrieve(platform.id)
        account = client.v1.accounts.create(params={"type": "standard"})

        paid_session(client, stripe_simulator)
        on_account = paid_session(client, stripe_simulator, stripe_account=account.id)
        stripe_simulator.complete_onboarding(account.id)

        [platform_event] = platform_rx.wait_for("checkout.session.completed")
        stripe.Webhook.construct_event(
            platform_event.body, platform_event.signature, platform.secret
        )
        wait_until_delivered(stripe_simulator)
        # Stripe does not promise delivery order (neither does the simulator, which
        # delivers from several threads): compare what arrived, not in which order.
        connect_events = {r.json()["type"]: r.json() for r in connect_rx.received()}
        assert sorted((t, e["account"]) for t, e in connect_events.items()) == [
            ("account.updated", account.id),
            ("checkout.session.completed", account.id),
        ]
        assert connect_events["checkout.session.completed"]["data"]["object"]["id"] == (
            on_account.id
        )
        for request in connect_rx.received():
            stripe.Webhook.construct_event(request.body, request.signature, connect.secret)
        assert len(platform_rx.received()) == 1


def test_deleted_and_disabled_endpoints_receive_nothing(stripe_simulator, stripe_client):
    client = stripe_client()
    with WebhookReceiver() as receiver:
        endpoint = client.v1.webhook_endpoints.create(
            params={"url": receiver.webhook_url, "enabled_events": ["*"]}
        )
        client.v1.webhook_endpoints.update(endpoint.id, params={"disabled": True})
        paid_session(client, stripe_simulator)
        client.v1.webhook_endpoints.update(endpoint.id, params={"disabled": False})
        paid_session(client, stripe_simulator)
        receiver.wait_for("checkout.session.completed")
        assert client.v1.webhook_endpoints.delete(endpoint.id).deleted is True
        paid_session(client, stripe_simulator)
        wait_until_delivered(stripe_simulator)
        assert len(receiver.received()) == 1
        assert [e.id for e in client.v1.webhook_endpoints.list().data] == []


def test_webhook_endpoint_validation(stripe_client):
    client = stripe_client()
    for params, param in [
        ({"enabled_events": ["*"]}, "url"),
        ({"url": "https://x.example/hook"}, "enabled_events"),
        ({"url": "https://x.example/hook", "enabled_events": ["Not An Event"]},
         "enabled_events[0]"),
        ({"url": "ftp://x.example", "enabled_events": ["*"]}, "url"),
    ]:  # fmt: skip
        with pytest.raises(stripe.InvalidRequestError) as excinfo:
            client.v1.webhook_endpoints.create(params=params)
        assert excinfo.value.param == param


def test_constructor_endpoint_receives_platform_and_connect_events(stripe_client):
    with WebhookReceiver() as receiver:
        sim = StripeSimulator(webhook_url=receiver.webhook_url, webhook_secret=SECRET).start()
        try:
            client = stripe.StripeClient(
                "sk_test_x", base_addresses=sim.base_addresses, max_network_retries=0
            )
            account = client.v1.accounts.create(params={"type": "express"})
            paid_session(client, sim)
            paid_session(client, sim, stripe_account=account.id)
            live = stripe.StripeClient(
                "sk_live_x", base_addresses=sim.base_addresses, max_network_retries=0
            )
            paid_session(live, sim)
            requests = receiver.wait_for("checkout.session.completed", count=3)
            events = [stripe.Webhook.construct_event(r.body, r.signature, SECRET) for r in requests]
            assert sorted((e.livemode, e["account"] if "account" in e else "") for e in events) == [
                (False, ""),
                (False, account.id),
                (True, ""),
            ]
            sim.reset()  # the command-line endpoint survives a reset
            paid_session(client, sim)
            receiver.wait_for("checkout.session.completed", count=4)
        finally:
            sim.stop()


def test_failed_deliveries_are_retried_with_back_off(stripe_simulator, stripe_client):
    with WebhookReceiver() as receiver:
        receiver.fail_next(2, status=500)
        stripe_simulator.add_webhook(receiver.webhook_url, SECRET)
        paid_session(stripe_client(), stripe_simulator)

        [delivery] = stripe_simulator.wait_for_delivery("checkout.session.completed")
        attempts = stripe_simulator.deliveries("checkout.session.completed")
        assert [(d.attempt, d.status, d.ok) for d in attempts] == [
            (1, 500, False),
            (2, 500, False),
            (3, 200, True),
        ]
        assert delivery.attempt == 3 and delivery.url == receiver.webhook_url
        first_gap = attempts[1].at - attempts[0].at
        second_gap = attempts[2].at - attempts[1].at
        assert first_gap >= 0.04 and second_gap >= 0.09  # 0.05 s, then 0.1 s
        bodies = {r.body for r in receiver.requests}
        assert len(bodies) == 1  # every retry sends the same event


def test_retries_stop_after_max_attempts(stripe_simulator, stripe_client):
    with WebhookReceiver() as receiver:
        receiver.fail_next(100, status=503)
        stripe_simulator.add_webhook(receiver.webhook_url, SECRET)
        session = paid_session(stripe_client(), stripe_simulator)
        failures = stripe_simulator.wait_for_delivery(ok=False, count=4, timeout=5)
        with pytest.raises(TimeoutError):  # no fifth attempt, past the longest back-off
            stripe_simulator.wait_for_delivery(ok=False, count=5, timeout=0.6)
        assert len(stripe_simulator.deliveries()) == 4
        assert [d.attempt for d in failures] == [1, 2, 3, 4]
        [event] = stripe_simulator.events("checkout.session.completed")
        assert event["data"]["object"]["id"] == session.id
        stored = stripe_simulator.get_object(event["id"], "event")
        assert stored["pending_webhooks"] == 1  # never delivered


def test_connection_errors_are_retried(stripe_simulator, stripe_client):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens
    stripe_simulator.add_webhook(f"http://127.0.0.1:{port}/hook", SECRET)
    paid_session(stripe_client(), stripe_simulator)
    failures = stripe_simulator.wait_for_delivery(ok=False, count=2)
    assert all(d.status is None and d.error for d in failures)


def test_dropped_webhooks_never_arrive(stripe_simulator, stripe_client, webhook_receiver):
    stripe_simulator.add_webhook(webhook_receiver.webhook_url, SECRET)
    stripe_simulator.drop_next_webhooks(1)
    client = stripe_client()
    lost = paid_session(client, stripe_simulator)
    kept = paid_session(client, stripe_simulator)

    [request] = webhook_receiver.wait_for("checkout.session.completed")
    assert request.json()["data"]["object"]["id"] == kept.id
    dropped = [d for d in stripe_simulator.deliveries() if d.fault == "dropped"]
    assert len(dropped) == 1 and not dropped[0].ok
    lost_event = stripe_simulator.get_object(dropped[0].event_id, "event")
    assert lost_event["data"]["object"]["id"] == lost.id
    with pytest.raises(TimeoutError):  # not retried either
        webhook_receiver.wait_for(count=2, timeout=0.3)


def test_duplicated_webhooks_arrive_twice(stripe_simulator, stripe_client, webhook_receiver):
    stripe_simulator.add_webhook(webhook_receiver.webhook_url, SECRET)
    stripe_simulator.duplicate_next_webhooks(1)
    paid_session(stripe_client(), stripe_simulator)
    first, second = webhook_receiver.wait_for("checkout.session.completed", count=2)
    assert first.body == second.body
    assert json.loads(first.body)["id"] == json.loads(second.body)["id"]
    stripe_simulator.wait_for_delivery(count=2)
    assert [d.fault for d in stripe_simulator.deliveries()] == [None, "duplicate"]


def test_wait_for_delivery_times_out_with_a_useful_message(stripe_simulator):
    with pytest.raises(TimeoutError, match="Expected 1 matching webhook deliveries"):
        stripe_simulator.wait_for_delivery("checkout.session.completed", timeout=0.2)


def test_reset_clears_events_deliveries_and_extra_endpoints(
    stripe_simulator, stripe_client, webhook_receiver
):
    stripe_simulator.add_webhook(webhook_receiver.webhook_url, SECRET)
    paid_session(stripe_client(), stripe_simulator)
    stripe_simulator.wait_for_delivery()
    stripe_simulator.reset()
    assert stripe_simulator.events() == [] and stripe_simulator.deliveries() == []
    paid_session(stripe_client(), stripe_simulator)
    wait_until_delivered(stripe_simulator)
    assert len(webhook_receiver.received()) == 1
