"""The agency settings page against the Stripe simulator: connect, watch, unlink."""

from __future__ import annotations

import html
import re

import pytest
from django.urls import reverse
from wagtail.models import ModelLogEntry

from tests.factories import make_user
from wagtail_client_billing import connections, stripe_api
from wagtail_client_billing.models import AgencyBillingSettings, StripeConnection
from wagtail_client_billing.testing.stripe_simulator.faults import Fault

pytestmark = pytest.mark.django_db

INDEX = reverse("wagtail_client_billing_agency:index")
CONNECT = reverse("wagtail_client_billing_agency:connect")
FORM = {
    "test_mode": "on",
    "country": "FR",
    "privacy_policy_url": "https://agency.example/privacy",
    "terms_of_service_url": "https://agency.example/terms",
    "nonce": "nonce-1",
}


@pytest.fixture
def agency_client(client):
    client.force_login(make_user("agency", agency=True))
    return client


def connect(client, **changes):
    return client.post(CONNECT, {**FORM, **changes})


def account_of(sim, account_id):
    return sim.get_object(account_id, "account")


def test_not_connected_offers_create_client_billing_account(agency_client, stripe):
    page = agency_client.get(INDEX).content.decode()
    assert "Create client billing account" in page
    assert "Test mode is active" in page
    assert "sk_test_…" in page  # the key is configured and shown masked
    assert "sk_test_suite" not in page


def test_connect_creates_the_account_and_sends_the_browser_to_onboarding(agency_client, stripe):
    response = connect(agency_client)

    connection = StripeConnection.objects.get()
    assert response.status_code == 302
    assert response["Location"].startswith(stripe.url)
    assert connection.mode == "test"
    assert connection.status == StripeConnection.Status.ONBOARDING
    assert connection.privacy_policy_url == "https://agency.example/privacy"
    account = account_of(stripe, connection.account_id)
    assert account["country"] == "FR"
    assert account["controller"]["stripe_dashboard"]["type"] == "full"
    assert account["type"] in (None, "standard")  # controller properties, not `type`
    assert account["business_profile"]["url"] == "http://testserver/"
    assert account["metadata"]["wagtail_client_billing"] == "agency"
    assert ModelLogEntry.objects.filter(action=connections.ACTION_CONNECT).count() == 1


def test_a_resubmitted_form_makes_one_account_at_stripe(agency_client, stripe):
    connect(agency_client)
    StripeConnection.objects.all().delete()  # as if the first response never arrived
    connect(agency_client)
    accounts = {c.account_id for c in StripeConnection.objects.all()}
    created = [e for e in stripe.events() if e["type"] == "account.created"]
    assert len(accounts) == 1
    assert len(created) <= 1


def test_return_url_shows_ready_to_charge_once_onboarding_is_complete(agency_client, stripe):
    connect(agency_client)
    connection = StripeConnection.objects.get()
    return_url = reverse("wagtail_client_billing_agency:return", args=["test"])

    page = agency_client.get(return_url, follow=True).content.decode()
    assert "Onboarding incomplete" in page
    assert "Continue onboarding" in page

    stripe.complete_onboarding(connection.account_id)
    page = agency_client.get(return_url, follow=True).content.decode()
    assert "Ready to charge" in page
    assert "Your client billing account is ready to charge." in page
    assert connection.account_id in page
    assert "https://agency.example/terms" in page
    connection.refresh_from_db()
    assert connection.charges_enabled and connection.onboarded_at
    agency_client.get(return_url)  # coming back again logs nothing more
    assert ModelLogEntry.objects.filter(action=connections.ACTION_ONBOARDED).count() == 1


def test_continue_onboarding_and_the_refresh_url_make_a_fresh_link(agency_client, stripe):
    connect(agency_client)
    first = agency_client.post(reverse("wagtail_client_billing_agency:onboard", args=["test"]))
    second = agency_client.get(reverse("wagtail_client_billing_agency:refresh", args=["test"]))
    assert first["Location"].startswith(stripe.url)
    assert second["Location"].startswith(stripe.url)
    assert first["Location"] != second["Location"]


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (Fault("error", "POST", "/v1/accounts", status=500), "Stripe had a problem"),
        (Fault("hang", "POST", "/v1/accounts", seconds=4), "Stripe could not be reached"),
        (
            Fault(
                "error",
                "POST",
                "/v1/accounts",
                status=400,
                message="Connected accounts in FR cannot be created by this platform.",
            ),
            "cannot be created by this platform",
        ),
    ],
    ids=["stripe-error", "stripe-timeout", "country-refused"],
)
def test_stripe_failures_keep_the_form_and_save_nothing(agency_client, stripe, fault, message):
    stripe.engine.faults.add(fault)
    response = connect(agency_client, privacy_policy_url="https://agency.example/p2")
    page = response.content.decode()
    assert response.status_code == 200
    assert message in page
    assert 'value="https://agency.example/p2"' in page  # what was typed is kept
    assert StripeConnection.objects.count() == 0
    assert not ModelLogEntry.objects.filter(action=connections.ACTION_CONNECT).exists()


def test_a_rejected_key_is_explained(agency_client, stripe, settings):
    settings.WAGTAIL_CLIENT_BILLING = {
        **settings.WAGTAIL_CLIENT_BILLING,
        "STRIPE_TEST_SECRET_KEY": "sk_test_revoked",
    }
    stripe.api_keys = frozenset({"sk_test_suite"})
    try:
        page = connect(agency_client).content.decode()
    finally:
        stripe.api_keys = None
    assert "Stripe rejected the secret key" in page
    assert StripeConnection.objects.count() == 0


def test_no_key_for_the_mode_is_explained(agency_client, stripe):
    page = connect(agency_client, test_mode="").content.decode()  # live mode, no live key
    assert "No Stripe secret key is configured for live mode." in page
    assert StripeConnection.objects.count() == 0


def test_onboarding_link_failure_keeps_the_created_account(agency_client, stripe):
    stripe.fail_next("POST", "/v1/account_links", status=500)
    response = connect(agency_client)
    assert response.status_code == 302 and response["Location"] == INDEX
    assert StripeConnection.objects.count() == 1  # it exists at Stripe: never lose it
    page = agency_client.get(INDEX).content.decode()
    assert "Continue onboarding" in page


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"privacy_policy_url": ""}, "privacy_policy_url", "This field is required."),
        ({"terms_of_service_url": "javascript:alert(1)"}, "terms_of_service_url", "valid URL"),
        ({"country": "KP"}, "country", "Select a valid choice"),
        (
            {"test_mode": "", "privacy_policy_url": "http://agency.example/p"},
            "privacy_policy_url",
            "https://",
        ),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(agency_client, stripe, changes, field, message):
    response = connect(agency_client, **changes)
    assert response.status_code == 200
    assert message in " ".join(response.context["form"].errors[field])
    assert StripeConnection.objects.count() == 0
    assert stripe.events() == []  # Stripe was not called


def test_unlink_asks_then_detaches_and_offers_to_connect_again(agency_client, stripe):
    connect(agency_client)
    connection = StripeConnection.objects.get()
    unlink_url = reverse("wagtail_client_billing_agency:unlink", args=["test"])

    confirm = agency_client.get(unlink_url).content.decode()
    assert "Yes, unlink account" in confirm
    assert StripeConnection.objects.get().is_linked

    page = agency_client.post(unlink_url, follow=True).content.decode()
    assert "Create client billing account" in page
    connection.refresh_from_db()
    assert not connection.is_linked  # kept for history
    assert connections.linked_connection("test") is None
    assert agency_client.post(unlink_url).status_code == 404  # nothing left to unlink
    assert ModelLogEntry.objects.filter(action=connections.ACTION_UNLINK).count() == 1
    assert account_of(stripe, connection.account_id) is not None  # still open at Stripe


def test_test_and_live_are_kept_apart_and_the_active_mode_switches(agency_client, stripe, settings):
    settings.WAGTAIL_CLIENT_BILLING = {
        **settings.WAGTAIL_CLIENT_BILLING,
        "STRIPE_LIVE_SECRET_KEY": "sk_live_suite",
    }
    connect(agency_client)
    connect(agency_client, test_mode="", nonce="nonce-2")
    test, live = (connections.linked_connection(m) for m in ("test", "live"))
    assert test.account_id != live.account_id
    assert stripe_api.retrieve_account("live", live.account_id).id == live.account_id
    with pytest.raises(stripe_api.StripeRefused):  # a live account is invisible to test keys
        stripe_api.retrieve_account("test", live.account_id)
    assert AgencyBillingSettings.load().active_mode == "live"

    agency_client.post(reverse("wagtail_client_billing_agency:switch_mode"), {"mode": "test"})
    assert connections.active_mode() == "test"
    assert "Test mode is active" in agency_client.get(INDEX).content.decode()


def test_direct_mode_reads_the_platform_account(agency_client, stripe, settings):
    settings.WAGTAIL_CLIENT_BILLING = {**settings.WAGTAIL_CLIENT_BILLING, "STRIPE_CONNECT": False}
    form = agency_client.get(CONNECT).context["form"]
    assert "country" not in form.fields

    response = connect(agency_client)
    connection = StripeConnection.objects.get()
    assert response["Location"] == INDEX
    assert connection.direct
    assert connection.account_id.startswith("acct_")
    page = agency_client.get(INDEX).content.decode()
    assert "Direct mode" in page


def test_missing_secrets_are_named(agency_client, stripe, settings):
    settings.WAGTAIL_CLIENT_BILLING = {
        "STRIPE_TEST_SECRET_KEY": "sk_test_suite",
        "STRIPE_API_BASE": stripe.url,
    }
    page = agency_client.get(INDEX).content.decode()
    assert "STRIPE_TEST_WEBHOOK_SECRET" in page
    assert "STRIPE_LIVE_SECRET_KEY" in page


AGENCY_URLS = [
    ("get", INDEX),
    ("get", CONNECT),
    ("post", CONNECT),
    ("post", reverse("wagtail_client_billing_agency:switch_mode")),
    ("post", reverse("wagtail_client_billing_agency:onboard", args=["test"])),
    ("get", reverse("wagtail_client_billing_agency:refresh", args=["test"])),
    ("get", reverse("wagtail_client_billing_agency:return", args=["test"])),
    ("post", reverse("wagtail_client_billing_agency:refresh_status", args=["test"])),
    ("get", reverse("wagtail_client_billing_agency:unlink", args=["test"])),
    ("post", reverse("wagtail_client_billing_agency:unlink", args=["test"])),
    ("post", reverse("wagtail_client_billing_agency:register_webhook", args=["test"])),
    ("post", reverse("wagtail_client_billing_agency:notifications")),
    ("post", reverse("wagtail_client_billing_agency:send_notification_again", args=[1])),
]


@pytest.mark.parametrize(("method", "url"), AGENCY_URLS)
def test_editors_without_the_agency_permission_get_403(client, stripe, method, url):
    client.force_login(make_user("editor"))
    response = getattr(client, method)(url, FORM if method == "post" else None)
    assert response.status_code == 403
    assert StripeConnection.objects.count() == 0


def test_editors_see_no_menu_item_and_agency_admins_do(client, stripe):
    client.force_login(make_user("editor"))
    assert INDEX not in client.get(reverse("wagtailadmin_home")).content.decode()
    client.force_login(make_user("agency", agency=True))
    assert INDEX in client.get(reverse("wagtailadmin_home")).content.decode()
    client.force_login(make_user("boss", superuser=True))
    assert client.get(INDEX).status_code == 200


def test_anonymous_visitors_are_sent_to_the_login_page(client, stripe):
    response = client.get(INDEX)
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_register_webhook_endpoint_tells_which_secret_to_set(agency_client, stripe):
    connect(agency_client)
    page = agency_client.post(
        reverse("wagtail_client_billing_agency:register_webhook", args=["test"]), follow=True
    ).content.decode()
    endpoints = stripe_api.list_webhook_endpoints("test")
    assert len(endpoints) == 1
    endpoint = endpoints[0]
    assert endpoint["url"] == "http://testserver/billing/stripe/webhook/"
    # A Connect endpoint: the agency's events reach only such endpoints.
    target = stripe.engine.store.find(endpoint["id"], "webhook_endpoint").extra["target"]
    assert target.connect is True
    assert {"account.updated", "checkout.session.completed"} <= set(endpoint["enabled_events"])
    assert "STRIPE_TEST_WEBHOOK_SECRET" in page
    assert "whsec_" in page


def test_pressing_register_again_makes_no_second_endpoint(agency_client, stripe):
    """A second endpoint for the same URL would deliver every event twice, the copy signed
    with a secret the site does not have: each a failed delivery."""
    connect(agency_client)
    register = reverse("wagtail_client_billing_agency:register_webhook", args=["test"])
    assert "Put this signing secret" in agency_client.post(register, follow=True).content.decode()
    (first,) = stripe_api.list_webhook_endpoints("test")
    page = agency_client.post(register, follow=True).content.decode()
    assert [endpoint["id"] for endpoint in stripe_api.list_webhook_endpoints("test")] == [
        first["id"]
    ]
    url = "http://testserver/billing/stripe/webhook/"
    said = f"Stripe already sends events to {url} (endpoint {first['id']}): nothing was changed."
    assert said in html.unescape(page)
    assert "Put this signing secret" not in page


def test_in_the_demo_register_keeps_the_simulators_endpoint_and_its_secret(agency_client, settings):
    """The demo's simulator sends to the site with the secret the site has (``--webhook-url``,
    ``--webhook-secret``): pressing Register must not add an endpoint with another secret."""
    from wagtail_client_billing.testing.stripe_simulator import StripeSimulator

    url = "http://testserver/billing/stripe/webhook/"
    with StripeSimulator(webhook_url=url, webhook_secret="whsec_test_suite") as simulator:
        settings.WAGTAIL_CLIENT_BILLING = {
            **settings.WAGTAIL_CLIENT_BILLING, "STRIPE_API_BASE": simulator.url,
            "STRIPE_MAX_NETWORK_RETRIES": 0,
        }  # fmt: skip
        connect(agency_client)
        register = reverse("wagtail_client_billing_agency:register_webhook", args=["test"])
        page = html.unescape(agency_client.post(register, follow=True).content.decode())
        assert "Stripe already sends events to " + url + " (endpoint we_cli)" in page
        assert [target.id for target in simulator.engine.targets()] == ["we_cli"]


def test_live_webhook_endpoints_are_registered_over_https_only(agency_client, stripe, settings):
    settings.WAGTAIL_CLIENT_BILLING = {
        **settings.WAGTAIL_CLIENT_BILLING,
        "STRIPE_LIVE_SECRET_KEY": "sk_live_suite",
    }
    connect(agency_client, test_mode="")
    register = reverse("wagtail_client_billing_agency:register_webhook", args=["live"])
    page = agency_client.post(register, follow=True).content.decode()
    assert "Stripe sends live events to https addresses only" in page
    assert "register_stripe_webhook --mode live" in page
    assert stripe_api.list_webhook_endpoints("live") == []

    page = agency_client.post(register, follow=True, secure=True).content.decode()
    [endpoint] = stripe_api.list_webhook_endpoints("live")
    assert endpoint["url"] == "https://testserver/billing/stripe/webhook/"
    assert "STRIPE_LIVE_WEBHOOK_SECRET" in page


def test_register_webhook_endpoint_failure_is_explained(agency_client, stripe):
    connect(agency_client)
    stripe.fail_next("POST", "/v1/webhook_endpoints", status=500)
    page = agency_client.post(
        reverse("wagtail_client_billing_agency:register_webhook", args=["test"]), follow=True
    ).content.decode()
    assert "Stripe had a problem" in page
    assert stripe_api.list_webhook_endpoints("test") == []


def test_a_restricted_account_is_shown_as_such(agency_client, stripe):
    connect(agency_client)
    connection = StripeConnection.objects.get()
    connections.apply_account_state(
        connection,
        stripe_api.AccountState(
            id=connection.account_id,
            details_submitted=True,
            charges_enabled=False,
            payouts_enabled=False,
            requirements_due=["individual.verification.document"],
            disabled_reason="requirements.past_due",
        ),
    )
    page = agency_client.get(INDEX).content.decode()
    assert "Restricted" in page
    assert "<strong>Account holder</strong>: identity document" in page
    assert "Continue onboarding" in page


def test_what_stripe_still_needs_is_said_in_words(agency_client, stripe):
    """Stripe's field codes, as a new Express account reports them, read as words."""
    connect(agency_client)
    connection = StripeConnection.objects.get()
    due = [
        "business_profile.mcc", "business_profile.url", "business_type", "external_account",
        "individual.address.city", "individual.address.line1", "individual.dob.day",
        "individual.dob.month", "individual.dob.year", "individual.email",
        "individual.first_name", "individual.last_name", "person_1NfBc2.verification.document",
        "tos_acceptance.date", "tos_acceptance.ip", "individual.political_exposure",
        "something_new.field",
    ]  # fmt: skip
    StripeConnection.objects.filter(pk=connection.pk).update(requirements_due=due)
    page = agency_client.get(INDEX).content.decode()
    listed = re.search(r"<ul data-wcb-requirements>(.*?)</ul>", page, re.S).group(1)
    lines = [
        html.unescape(re.sub(r"<[^>]+>|\s+", " ", line)).strip() for line in listed.split("</li>")
    ]
    assert [line for line in lines if line] == [
        "Type of business",
        "Business : business category, website",
        "Account holder : address, date of birth, email address, name, "
        "individual.political_exposure",
        "A person of the company : identity document",
        "Bank account for payouts",
        "Acceptance of Stripe's services agreement",
        "something_new.field",
    ]
    assert "tos_acceptance.ip" in listed  # Stripe's own codes stay on hover (title)
    assert "Press Continue onboarding below" in page


def test_a_second_connect_from_an_old_tab_is_refused_in_plain_words(agency_client, stripe):
    connect(agency_client)
    page = connect(agency_client, nonce="nonce-from-an-old-tab").content.decode()
    assert "A client billing account is already linked for this mode; unlink it first." in page
    assert StripeConnection.objects.count() == 1
    assert 'value="https://agency.example/privacy"' in page  # what was typed is kept


def test_the_page_names_the_country_and_the_live_panel_asks_for_live(agency_client, stripe):
    connect(agency_client)
    page = agency_client.get(INDEX).content.decode()
    assert "<dd>France</dd>" in page
    live_create = f"{CONNECT}?mode=live"
    assert live_create in page
    form = agency_client.get(live_create).context["form"]
    assert form.initial["test_mode"] is False
    assert agency_client.get(CONNECT).context["form"].initial["test_mode"] is True


def test_an_existing_settings_row_is_the_one_the_page_shows_and_saves(agency_client, stripe):
    # A row as an older version made it (pk 1): the page shows and edits that one.
    AgencyBillingSettings.objects.create(pk=1, active_mode="live", notify_payments=False)
    page = agency_client.get(INDEX).content.decode()
    assert "Live mode is active" in page
    assert not agency_client.get(INDEX).context["notifications_form"]["notify_payments"].value()

    notifications = reverse("wagtail_client_billing_agency:notifications")
    agency_client.post(notifications, {"notify_payments": "on", "notification_recipients": ""})
    row = AgencyBillingSettings.objects.get()  # still one row
    assert (row.pk, row.active_mode, row.notify_payments) == (1, "live", True)
