"""SMTP passwords at rest: encryption, key rotation, undecryptable values; email settings keys."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

from tests.factories import make_site
from wagtail_client_billing import crypto
from wagtail_client_billing.conf import billing_settings
from wagtail_client_billing.models import SiteEmailSettings

PASSWORD = "correct-horse-smtp"


def use_keys(settings, *keys):
    settings.WAGTAIL_CLIENT_BILLING = {
        **settings.WAGTAIL_CLIENT_BILLING,
        "ENCRYPTION_KEYS": list(keys),
    }


def test_a_round_trip_never_stores_the_plaintext(settings):
    use_keys(settings, "k" * 43)
    token = crypto.encrypt(PASSWORD)
    assert PASSWORD not in token
    assert crypto.encrypt(PASSWORD) != token  # a fresh IV each time
    assert crypto.decrypt(token) == PASSWORD
    assert crypto.encrypt("") == "" and crypto.decrypt("") == ""


def test_without_keys_the_key_comes_from_secret_key(settings):
    use_keys(settings)
    token = crypto.encrypt(PASSWORD)
    settings.SECRET_KEY = "a-new-secret-key-after-a-rotation"
    with pytest.raises(crypto.UndecryptableSecret):
        crypto.decrypt(token)
    # Django's SECRET_KEY_FALLBACKS keep the old values readable.
    settings.SECRET_KEY_FALLBACKS = ["tests-only-secret-key-not-for-production"]
    assert crypto.decrypt(token) == PASSWORD


def test_an_undecryptable_value_gives_a_clear_error(settings):
    use_keys(settings, "first-key-" * 4)
    token = crypto.encrypt(PASSWORD)
    use_keys(settings, "another-key-" * 4)
    with pytest.raises(crypto.UndecryptableSecret) as error:
        crypto.decrypt(token)
    message = str(error.value)
    assert "cannot be decrypted with the configured keys" in message
    assert "ENCRYPTION_KEYS" in message
    assert token not in message
    with pytest.raises(crypto.UndecryptableSecret):
        crypto.decrypt("not even base64 !!")


@pytest.mark.django_db
def test_rotation_re_encrypts_with_the_first_key(settings):
    old, new = "old-key-" * 5, "new-key-" * 5
    use_keys(settings, old)
    acme = SiteEmailSettings(site=make_site("acme.test", "Acme"))
    acme.set_password(PASSWORD)
    acme.save()
    bakery = SiteEmailSettings(site=make_site("bakery.test", "Bakery"))
    bakery.set_password("bakery-password")
    bakery.save()
    SiteEmailSettings.objects.create(site=make_site("empty.test", "Empty"))

    use_keys(settings, new, old)  # the new key first; the old one still decrypts
    assert SiteEmailSettings.objects.get(pk=acme.pk).get_password() == PASSWORD
    call_command("rotate_billing_encryption_keys")

    use_keys(settings, new)  # now the old key can go
    assert SiteEmailSettings.objects.get(pk=acme.pk).get_password() == PASSWORD
    assert SiteEmailSettings.objects.get(pk=bakery.pk).get_password() == "bakery-password"


@pytest.mark.django_db
def test_rotation_reports_what_it_cannot_read_and_rotates_the_rest(settings, capsys):
    use_keys(settings, "lost-key-" * 5)
    lost = SiteEmailSettings(site=make_site("lost.test", "Lost Site"))
    lost.set_password(PASSWORD)
    lost.save()
    use_keys(settings, "kept-key-" * 5)
    kept = SiteEmailSettings(site=make_site("kept.test", "Kept Site"))
    kept.set_password("kept-password")
    kept.save()
    use_keys(settings, "newest-key-" * 4, "kept-key-" * 5)

    with pytest.raises(CommandError) as error:
        call_command("rotate_billing_encryption_keys")
    assert "Lost Site" in str(error.value)
    assert lost.password_encrypted not in str(error.value)
    assert "Re-encrypted 1 stored SMTP password" in capsys.readouterr().out
    use_keys(settings, "newest-key-" * 4)
    assert SiteEmailSettings.objects.get(pk=kept.pk).get_password() == "kept-password"
    assert SiteEmailSettings.objects.get(pk=lost.pk).password_encrypted == lost.password_encrypted


# The email settings keys ------------------------------------------------------------------


def configure(settings, **values):
    settings.WAGTAIL_CLIENT_BILLING = values


def test_the_reminder_is_off_and_the_smtp_timeout_is_set_by_default(settings):
    configure(settings)
    assert billing_settings().reminder_hours_before_expiry is None
    assert billing_settings().smtp_timeout == 20


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"REMINDER_HOURS_BEFORE_EXPIRY": "4"}, "must be a number"),
        ({"REMINDER_HOURS_BEFORE_EXPIRY": -1}, "must be between 0 and 24"),
        (
            {"REMINDER_HOURS_BEFORE_EXPIRY": 24},
            "['REMINDER_HOURS_BEFORE_EXPIRY'] must be less than",
        ),
        (
            {"REMINDER_HOURS_BEFORE_EXPIRY": 2, "REQUEST_TTL": 3600},
            "must be less than WAGTAIL_CLIENT_BILLING['REQUEST_TTL'] (1 hours), got 2",
        ),
        ({"SMTP_TIMEOUT": 0}, "['SMTP_TIMEOUT'] must be between 1 and 300"),
    ],
)
def test_bad_email_settings_name_the_key(settings, values, message):
    configure(settings, **values)
    with pytest.raises(ImproperlyConfigured) as error:
        billing_settings()
    assert message in str(error.value)


def test_a_reminder_within_the_ttl_is_accepted(settings):
    configure(settings, REMINDER_HOURS_BEFORE_EXPIRY=4.5, SMTP_TIMEOUT=5)
    assert billing_settings().reminder_hours_before_expiry == 4.5
    assert billing_settings().smtp_timeout == 5
