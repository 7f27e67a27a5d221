"""``manage.py register_stripe_webhook`` against the simulator, and its clear errors."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import CommandError, call_command

from tests.test_webhooks import (
    account_updated_event,
    body_of,
    connect_at_simulator,
    deliver,
    link,
    sign,
)
from wagtail_client_billing import stripe_api
from wagtail_client_billing.events import endpoints
from wagtail_client_billing.models import WebhookEvent


def run(*args: str) -> tuple[str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command("register_stripe_webhook", *args, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


def billing(settings, **values) -> None:
    settings.WAGTAIL_CLIENT_BILLING = {**settings.WAGTAIL_CLIENT_BILLING, **values}


@pytest.fixture
def simulator(billing_stripe_settings):
    return billing_stripe_settings


def registered_target(simulator):
    """The endpoint as the simulator delivers to it (Stripe's object hides ``connect``)."""
    (target,) = [t for t in simulator.engine.targets() if t.id.startswith("we_")]
    return target


@pytest.mark.django_db(transaction=True)
def test_the_registered_endpoint_receives_connect_events(simulator, settings, live_server):
    settings.WAGTAILADMIN_BASE_URL = live_server.url

    out, err = run()

    assert err == ""
    (endpoint,) = stripe_api.list_webhook_endpoints("test")
    assert endpoint["url"] == f"{live_server.url}/billing/stripe/webhook/"
    assert set(endpoint["enabled_events"]) == set(endpoints.handled_event_types())
    assert f"Registered the test-mode Connect endpoint {endpoint['id']}" in out
    assert "account.updated" in out
    secret = re.search(r"Signing secret: (whsec_\S+)", out).group(1)
    assert "Put it in WAGTAIL_CLIENT_BILLING['STRIPE_TEST_WEBHOOK_SECRET']." in out
    assert registered_target(simulator).connect is True

    # With the printed secret configured, Stripe's deliveries to the URL are applied.
    billing(settings, STRIPE_TEST_WEBHOOK_SECRET=secret)
    connection = connect_at_simulator()
    simulator.complete_onboarding(connection.account_id)
    (delivery,) = simulator.wait_for_delivery("account.updated")
    assert delivery.status == 200
    assert WebhookEvent.objects.get(stripe_id=delivery.event_id).status == "processed"


def test_direct_mode_registers_a_platform_endpoint(simulator, settings):
    billing(settings, STRIPE_CONNECT=False)

    out, _ = run("--url", "https://agency.example/billing/stripe/webhook/")

    assert "Registered the test-mode endpoint" in out
    assert registered_target(simulator).connect is False


def test_live_mode_uses_the_live_key_and_names_the_live_setting(simulator, settings):
    billing(settings, STRIPE_LIVE_SECRET_KEY="sk_live_suite")

    out, _ = run("--mode", "live", "--url", "https://agency.example/billing/stripe/webhook/")

    assert "Registered the live-mode Connect endpoint" in out
    assert "WAGTAIL_CLIENT_BILLING['STRIPE_LIVE_WEBHOOK_SECRET']" in out
    (endpoint,) = stripe_api.list_webhook_endpoints("live")
    assert endpoint["livemode"] is True


def test_an_existing_secret_gets_rotation_advice(simulator):
    out, _ = run("--url", "https://agency.example/billing/stripe/webhook/")
    assert "keep it next to the new one" in out


def test_a_url_not_ending_with_the_webhook_path_is_registered_with_a_warning(simulator):
    _, err = run("--url", "https://agency.example/hooks/stripe/")
    assert "does not end with /billing/stripe/webhook/" in err


def test_no_secret_key_is_a_clear_error(settings):
    billing(settings, STRIPE_TEST_SECRET_KEY="")
    with pytest.raises(CommandError, match=r"STRIPE_TEST_SECRET_KEY'\] first"):
        run("--url", "https://agency.example/billing/stripe/webhook/")


def test_stripe_unreachable_is_a_clear_error(settings):
    billing(settings, STRIPE_API_BASE="http://127.0.0.1:9", STRIPE_MAX_NETWORK_RETRIES=0)
    with pytest.raises(CommandError, match="Stripe could not be reached"):
        run("--url", "https://agency.example/billing/stripe/webhook/")


@pytest.mark.parametrize(("status", "reason"), [(400, "injected"), (500, "Stripe had a problem")])
def test_stripe_refusing_is_a_clear_error(simulator, settings, status, reason):
    billing(settings, STRIPE_MAX_NETWORK_RETRIES=0)
    simulator.fail_next("POST", "/v1/webhook_endpoints", status=status)
    with pytest.raises(CommandError, match=f"Stripe did not register the endpoint: .*{reason}"):
        run("--url", "https://agency.example/billing/stripe/webhook/")
    assert stripe_api.list_webhook_endpoints("test") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mode", "live", "--url", "http://agency.example/billing/stripe/webhook/"], "https"),
        (["--url", "/billing/stripe/webhook/"], "not an absolute http"),
        (["--url", "ftp://agency.example/billing/stripe/webhook/"], "not an absolute http"),
    ],
)
def test_bad_urls_are_refused_before_calling_stripe(settings, args, message):
    billing(settings, STRIPE_LIVE_SECRET_KEY="sk_live_suite")
    with pytest.raises(CommandError, match=message):
        run(*args)


def test_without_a_base_url_the_url_is_required(settings):
    settings.WAGTAILADMIN_BASE_URL = ""
    with pytest.raises(CommandError, match="pass --url"):
        run()


def test_a_bad_setting_is_reported_not_raised(settings):
    billing(settings, STRIPE_TEST_SECRET_KEY="pk_test_publishable")
    with pytest.raises(CommandError, match="STRIPE_TEST_SECRET_KEY"):
        run("--url", "https://agency.example/billing/stripe/webhook/")


def test_the_signature_helper_matches_the_view(client, db):
    # Guards the helpers this module borrows from test_webhooks.
    link()
    body = body_of(account_updated_event())
    assert deliver(client, body, signature=sign(body)).status_code == 200


@pytest.mark.django_db
def test_running_it_again_makes_no_second_endpoint(simulator):
    url = "https://agency.example/billing/stripe/webhook/"
    first, _ = run("--url", url)
    assert "Signing secret: whsec_" in first
    again, err = run("--url", url)
    (endpoint,) = stripe_api.list_webhook_endpoints("test")
    assert again == (
        f"Stripe already sends test-mode events to {url} (endpoint {endpoint['id']}): nothing "
        "was changed. Its signing secret is on the endpoint's page in the Stripe Dashboard "
        "(WAGTAIL_CLIENT_BILLING['STRIPE_TEST_WEBHOOK_SECRET']).\n"
    )
    assert err == ""


@pytest.mark.django_db
def test_an_endpoint_of_an_older_version_is_given_the_new_event_types(simulator):
    url = "https://agency.example/billing/stripe/webhook/"
    old_events = ["checkout.session.completed", "checkout.session.expired"]
    stripe_api.create_webhook_endpoint("test", url=url, events=old_events, connect=True)
    out, _ = run("--url", url)
    (endpoint,) = stripe_api.list_webhook_endpoints("test")
    assert "it now also sends" in out and "refund.created" in out
    assert "charge.dispute.created" in endpoint["enabled_events"]
    assert set(endpoint["enabled_events"]) == set(endpoints.handled_event_types())
    again, _ = run("--url", url)
    assert "nothing was changed" in again  # already current
