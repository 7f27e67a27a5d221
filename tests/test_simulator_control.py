"""Fault injection, the control API (/_simulator/...) and the command line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import requests
import stripe

from wagtail_client_billing.testing.stripe_simulator import Fault, RemoteSimulator
from wagtail_client_billing.testing.stripe_simulator.receiver import WebhookReceiver

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


def test_injected_500_raises_api_error_then_recovers(stripe_simulator, stripe_client):
    client = stripe_client()
    stripe_simulator.fail_next("POST", "/v1/checkout/sessions", times=1)
    with pytest.raises(stripe.APIError) as excinfo:
        client.v1.checkout.sessions.create(params=SESSION)
    assert excinfo.value.http_status == 500
    assert excinfo.value.error.type == "api_error"
    assert client.v1.checkout.sessions.list().data == []  # nothing was created
    assert client.v1.checkout.sessions.create(params=SESSION).status == "open"


def test_faults_match_method_and_path_glob(stripe_simulator, stripe_client):
    client = stripe_client()
    stripe_simulator.fail_next("GET", "/v1/checkout/sessions/*", times=2, status=503)
    session = client.v1.checkout.sessions.create(params=SESSION)  # POST: not matched
    assert client.v1.checkout.sessions.list().data  # /v1/checkout/sessions: not matched
    for _ in range(2):
        with pytest.raises(stripe.APIError):
            client.v1.checkout.sessions.retrieve(session.id)
    assert client.v1.checkout.sessions.retrieve(session.id).id == session.id


def test_sdk_retries_an_injected_500_with_the_same_idempotency_key(stripe_simulator, stripe_client):
    stripe_simulator.fail_next("POST", "/v1/checkout/sessions")
    client = stripe_client(max_network_retries=1)
    session = client.v1.checkout.sessions.create(
        params=SESSION, options={"idempotency_key": "retry-me"}
    )
    assert session.status == "open"
    assert len(client.v1.checkout.sessions.list().data) == 1


def test_hang_past_the_timeout_raises_api_connection_error(stripe_simulator, stripe_client):
    stripe_simulator.hang_next("POST", "/v1/checkout/sessions", seconds=1.0)
    client = stripe_client(timeout=0.3)
    options = {"idempotency_key": "slow-1"}
    started = time.monotonic()
    with pytest.raises(stripe.APIConnectionError):
        client.v1.checkout.sessions.create(params=SESSION, options=options)
    assert time.monotonic() - started < 0.9

    # The slow request still goes through, as at Stripe: a retry with the same key while
    # it runs is refused (409), and once it is done the retry gets the same session.
    with pytest.raises(stripe.APIError) as busy:
        client.v1.checkout.sessions.create(params=SESSION, options=options)
    assert busy.value.http_status == 409
    with pytest.raises(TimeoutError):
        stripe_simulator.wait_idle(timeout=0.05)
    stripe_simulator.wait_idle()
    sessions = client.v1.checkout.sessions.list().data
    assert len(sessions) == 1
    again = client.v1.checkout.sessions.create(params=SESSION, options=options)
    assert again.id == sessions[0].id


def test_fault_validation():
    with pytest.raises(ValueError, match="Unknown fault kind"):
        Fault("explode")
    with pytest.raises(ValueError):
        Fault("error", times=0)


def test_control_api_drives_a_simulator_over_http(stripe_simulator, stripe_client):
    remote = RemoteSimulator(stripe_simulator.url)
    client = stripe_client()
    assert remote.health()["status"] == "ok"

    before = remote.now()
    assert remote.advance_clock(600) >= before + 600
    remote.reset()
    assert abs(remote.now() - time.time()) < 5

    remote.fail_next("POST", "/v1/accounts")
    with pytest.raises(stripe.APIError):
        client.v1.accounts.create(params={"type": "standard"})
    remote.hang_next("GET", "/v1/accounts", seconds=0.5)
    faults = requests.get(f"{remote.url}/_simulator/faults", timeout=5).json()
    assert faults["faults"][0]["kind"] == "hang"
    remote.clear_faults()
    assert requests.get(f"{remote.url}/_simulator/faults", timeout=5).json()["faults"] == []

    with WebhookReceiver() as receiver:
        endpoint = remote.add_webhook(receiver.webhook_url, "whsec_remote")
        account = client.v1.accounts.create(params={"type": "standard"})
        onboarded = remote.complete_onboarding(account.id)
        assert onboarded["charges_enabled"] is True
        [delivery] = remote.wait_for_delivery("account.updated")
        assert delivery["url"] == endpoint["url"] and delivery["status"] == 200
        [request] = receiver.wait_for("account.updated")
        stripe.Webhook.construct_event(request.body, request.signature, "whsec_remote")

        remote.configure(async_settle_delay=None)
        session = client.v1.checkout.sessions.create(params=SESSION)
        assert remote.complete_checkout(session.id, delayed=True)["payment_status"] == "unpaid"
        assert remote.settle_async(session.id, succeed=True)["payment_status"] == "paid"
        other = client.v1.checkout.sessions.create(params=SESSION)
        assert remote.expire_session(other.id)["status"] == "expired"
        types = [event["type"] for event in remote.events()]
        assert types == [
            "account.updated",
            "checkout.session.completed",
            "checkout.session.async_payment_succeeded",
            "checkout.session.expired",
        ]
        remote.drop_next_webhooks(1)
        remote.duplicate_next_webhooks(1)
        assert remote.deliveries("account.updated")[0]["event_type"] == "account.updated"
        event = remote.deauthorize(account.id)
        assert event["type"] == "account.application.deauthorized"

    with pytest.raises(TimeoutError):
        remote.wait_for_delivery("never.happens", timeout=0.2)
    with pytest.raises(RuntimeError, match="No such checkout.session"):
        remote.complete_checkout("cs_test_nope")


def test_control_api_errors(stripe_simulator):
    base = f"{stripe_simulator.url}/_simulator"
    assert requests.post(f"{base}/nothing", timeout=5).status_code == 404
    assert requests.get(f"{base}/reset", timeout=5).status_code == 404  # changes: POST only
    bad_json = requests.post(f"{base}/advance_clock", data=b"{", timeout=5)
    assert bad_json.status_code == 400
    missing = requests.post(f"{base}/advance_clock", json={}, timeout=5)
    assert missing.status_code == 400
    assert "seconds" in missing.json()["error"]["message"]
    back = requests.post(
        f"{base}/set_clock", json={"timestamp": stripe_simulator.now() - 3600}, timeout=5
    )
    assert back.status_code == 400  # never silently ignored
    assert "only moves forward" in back.json()["error"]["message"]
    unknown = requests.post(f"{base}/fail_next", json={"colour": "red"}, timeout=5)
    assert unknown.status_code == 400
    assert "colour" in unknown.json()["error"]["message"]
    assert requests.post(f"{base}/configure", json={"nope": 1}, timeout=5).status_code == 400
    assert stripe_simulator.faults()["faults"] == []  # nothing half-done


def test_read_commands_answer_get_with_a_query_string(stripe_simulator):
    base = f"{stripe_simulator.url}/_simulator"
    stripe_simulator.hang_next("GET", "/v1/accounts", times=2)
    faults = requests.get(f"{base}/faults", timeout=5).json()["faults"]
    assert [(f["kind"], f["times"]) for f in faults] == [("hang", 2)]
    waited = requests.get(f"{base}/wait_for_delivery?event_type=x&timeout=0.1", timeout=5)
    assert waited.status_code == 408
    assert requests.get(f"{base}/health", timeout=5).json()["status"] == "ok"


def test_every_command_is_a_method_a_route_and_a_remote_method(stripe_simulator):
    import inspect

    from wagtail_client_billing.testing.stripe_simulator import StripeSimulator
    from wagtail_client_billing.testing.stripe_simulator.control import COMMANDS

    remote = RemoteSimulator(stripe_simulator.url)
    assert {"hang_next", "fail_next", "advance_clock", "complete_checkout", "events"} <= set(
        COMMANDS
    )
    for name in COMMANDS:
        local = inspect.signature(getattr(StripeSimulator(), name))
        assert inspect.signature(getattr(remote, name)).parameters == local.parameters, name
    assert remote.call("health")["url"] == stripe_simulator.url


def test_hosted_index_and_unknown_pages(stripe_simulator):
    assert "Stripe simulator" in requests.get(stripe_simulator.url, timeout=5).text
    assert requests.get(f"{stripe_simulator.url}/elsewhere", timeout=5).status_code == 404
    missing = requests.get(f"{stripe_simulator.url}/c/pay/cs_test_missing", timeout=5)
    assert missing.status_code == 404


def test_command_line_serves_until_interrupted():
    with WebhookReceiver() as receiver:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "wagtail_client_billing.testing.stripe_simulator",
                "--port", "0", "--webhook-url", receiver.webhook_url,
                "--webhook-secret", "whsec_cli", "--settle-delay", "-1",
            ],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        try:
            first_line = process.stdout.readline()
            match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", first_line)
            assert match, first_line
            url = match.group(1)
            client = stripe.StripeClient(
                "sk_test_cli",
                base_addresses={"api": url, "connect": url, "files": url},
                max_network_retries=0,
            )
            account = client.v1.accounts.create(params={"type": "express"})
            RemoteSimulator(url).complete_onboarding(account.id)
            [request] = receiver.wait_for("account.updated")
            event = stripe.Webhook.construct_event(request.body, request.signature, "whsec_cli")
            assert event.account == account.id
        finally:
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=10)
        assert process.returncode == 0
        assert "POST /v1/accounts -> 200" in err  # concise request log
        assert "whsec_cli" not in out + err  # a given secret is not echoed


def test_command_line_help():
    result = subprocess.run(
        [sys.executable, "-m", "wagtail_client_billing.testing.stripe_simulator", "--help"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    for option in ("--port", "--webhook-url", "--webhook-secret"):
        assert option in result.stdout


def test_each_request_is_logged_once(stripe_simulator, stripe_client, caplog):
    caplog.set_level("DEBUG", logger="wagtail_client_billing.stripe_simulator")
    stripe_client().v1.checkout.sessions.create(params=SESSION)
    logged = [r.getMessage() for r in caplog.records if "/v1/checkout/sessions" in r.getMessage()]
    assert len(logged) == 1, logged
    assert re.match(r"POST /v1/checkout/sessions -> 200 \(\d+ ms\)", logged[0])
