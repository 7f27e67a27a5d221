"""The settings reader and the system checks: clear messages naming the key to set."""

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured

from wagtail_client_billing.conf import billing_settings


def configure(settings, **values):
    settings.WAGTAIL_CLIENT_BILLING = values


def check_ids() -> set[str]:
    return {message.id for message in run_checks() if message.id.startswith("wagtail_client")}


def test_defaults(settings):
    configure(settings)
    conf = billing_settings()
    assert conf.request_ttl == 86400
    assert conf.stripe_api_base == "https://api.stripe.com"
    assert conf.secret_key("test") == ""
    assert conf.webhook_secrets("live") == ()


def test_values_are_read_and_normalised(settings):
    configure(
        settings,
        STRIPE_TEST_SECRET_KEY=" sk_test_abc ",
        STRIPE_LIVE_SECRET_KEY="rk_live_abc",
        STRIPE_TEST_WEBHOOK_SECRET=["whsec_old", "whsec_new"],
        STRIPE_LIVE_WEBHOOK_SECRET="whsec_live",
        STRIPE_API_BASE="http://127.0.0.1:12111/",
        REQUEST_TTL=3600,
    )
    conf = billing_settings()
    assert conf.secret_key("test") == "sk_test_abc"
    assert conf.secret_key("live") == "rk_live_abc"
    assert conf.webhook_secrets("test") == ("whsec_old", "whsec_new")
    assert conf.webhook_secrets("live") == ("whsec_live",)
    assert conf.stripe_api_base == "http://127.0.0.1:12111"
    assert conf.request_ttl == 3600


def test_changes_to_settings_are_seen(settings):
    configure(settings, REQUEST_TTL=3600)
    assert billing_settings().request_ttl == 3600
    configure(settings, REQUEST_TTL=7200)
    assert billing_settings().request_ttl == 7200


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"REQUEST_TTL": 60}, "WAGTAIL_CLIENT_BILLING['REQUEST_TTL'] must be between 1800"),
        ({"REQUEST_TTL": 90000}, "WAGTAIL_CLIENT_BILLING['REQUEST_TTL']"),
        ({"REQUEST_TTL": "1 day"}, "WAGTAIL_CLIENT_BILLING['REQUEST_TTL'] must be a number"),
        ({"STRIPE_TEST_SECRET_KEY": "sk_live_oops"}, "['STRIPE_TEST_SECRET_KEY'] must be a test"),
        ({"STRIPE_LIVE_SECRET_KEY": "pk_live_oops"}, "['STRIPE_LIVE_SECRET_KEY'] must be a live"),
        ({"STRIPE_TEST_WEBHOOK_SECRET": "secret"}, "['STRIPE_TEST_WEBHOOK_SECRET']"),
        ({"STRIPE_LIVE_WEBHOOK_SECRET": [1]}, "['STRIPE_LIVE_WEBHOOK_SECRET'] must be a string"),
        ({"STRIPE_API_BASE": "api.stripe.com"}, "['STRIPE_API_BASE'] must be an http(s) URL"),
        ({"ENCRYPTION_KEYS": 42}, "['ENCRYPTION_KEYS']"),
    ],
)
def test_bad_values_name_the_key(settings, values, named):
    configure(settings, **values)
    with pytest.raises(ImproperlyConfigured) as error:
        billing_settings()
    assert named in str(error.value)
    assert "oops" not in str(error.value)  # secrets are never echoed


def test_not_a_dict(settings):
    settings.WAGTAIL_CLIENT_BILLING = ["sk_test_x"]
    with pytest.raises(ImproperlyConfigured, match="WAGTAIL_CLIENT_BILLING must be a dict"):
        billing_settings()


def test_check_reports_bad_settings_as_an_error(settings):
    configure(settings, REQUEST_TTL=10)
    messages = [m for m in run_checks() if m.id == "wagtail_client_billing.E001"]
    assert len(messages) == 1
    assert "REQUEST_TTL" in messages[0].msg


def test_check_warns_about_typos_missing_keys_and_secrets(settings):
    configure(settings, REQUEST_TTLL=3600)
    assert {"wagtail_client_billing.W001", "wagtail_client_billing.W002"} <= check_ids()
    configure(settings, STRIPE_TEST_SECRET_KEY="sk_test_x")
    ids = check_ids()
    assert "wagtail_client_billing.W003" in ids
    assert "wagtail_client_billing.W002" not in ids


def test_check_is_quiet_when_configured(settings):
    configure(settings, STRIPE_TEST_SECRET_KEY="sk_test_x", STRIPE_TEST_WEBHOOK_SECRET="whsec_x")
    assert check_ids() == set()


def test_check_warns_without_q_cluster(settings):
    del settings.Q_CLUSTER
    assert "wagtail_client_billing.W004" in check_ids()
