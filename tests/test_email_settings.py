"""The per-site "Email settings" page: fields, the write-only password, isolation, test email."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.db import connection as db
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from wagtail.models import ModelLogEntry

from tests.factories import (
    connect_ready_account,
    grant_billing,
    grant_email_settings,
    make_user,
    request_details,
)
from tests.smtp import PASSWORD, USERNAME, SMTPServer, closed_port
from wagtail_client_billing import billing
from wagtail_client_billing.models import BillingRequest, SiteEmailSettings

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS"),
]

SETTINGS_URL = reverse("wagtail_client_billing_requests:email_settings")
TEST_URL = reverse("wagtail_client_billing_requests:email_settings_test")
INDEX = reverse("wagtail_client_billing_requests:index")


@pytest.fixture
def editor(sites):
    """A CSRF-checking client of an editor who may bill for Acme and edit its email settings."""
    client = Client(enforce_csrf_checks=True)
    user = make_user("acme-editor")
    grant_billing(user, sites[0])
    grant_email_settings(user, sites[0])
    client.force_login(user)
    return client


def csrf_post(client, url, data):
    """POST as a browser does: with the token from the page's cookie."""
    client.get(f"{SETTINGS_URL}?site={data.pop('_site')}" if "_site" in data else SETTINGS_URL)
    token = client.cookies["csrftoken"].value
    return client.post(url, {**data, "csrfmiddlewaretoken": token})


def settings_form(server=None, **changes):
    data = {
        "custom_smtp": "on",
        "host": "127.0.0.1",
        "port": str(server.port if server else 587),
        "username": USERNAME,
        "password": PASSWORD,
        "security": "none",
        "from_email": "billing@acme.test",
        "reply_to": "agency@agency.test",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def save(client, site, **changes):
    return csrf_post(
        client, f"{SETTINGS_URL}?site={site.pk}", {"_site": site.pk, **settings_form(**changes)}
    )


def raw_row(site) -> str:
    """The settings row exactly as the database holds it."""
    table = SiteEmailSettings._meta.db_table
    with db.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {db.ops.quote_name(table)} WHERE site_id = %s", [site.pk])  # noqa: S608
        return repr(cursor.fetchall())


# The page -----------------------------------------------------------------------------------


def test_the_listing_links_to_the_sites_email_settings(editor, sites):
    page = editor.get(f"{INDEX}?site={sites[0].pk}").content.decode()
    assert "Email settings" in page
    assert f"{SETTINGS_URL}?site={sites[0].pk}" in page


def test_the_page_has_the_products_fields(editor, sites):
    response = editor.get(f"{SETTINGS_URL}?site={sites[0].pk}")
    assert response.status_code == 200
    page = response.content.decode()
    for label in (
        "Custom SMTP", "Host", "Port", "Username", "Password", "Security",
        "STARTTLS", "SSL/TLS", "From", "Reply-to", "Save", "Send a test email", "Acme Plumbing",
    ):  # fmt: skip
        assert label in page, label


def test_the_page_in_french_uses_the_products_words(client, sites):
    user = make_user("editrice", language="fr")
    grant_billing(user, sites[0])
    grant_email_settings(user, sites[0])
    client.force_login(user)
    page = client.get(f"{SETTINGS_URL}?site={sites[0].pk}").content.decode()
    for label in (
        "SMTP personnalisé", "Hôte", "Nom d&#x27;utilisateur", "Mot de passe", "De",
        "Répondre à", "Sauvegarder", "Envoyer un courriel de test",
    ):  # fmt: skip
        assert label in page, label


def test_saving_stores_the_settings_and_encrypts_the_password(editor, sites, caplog):
    caplog.set_level(logging.DEBUG)
    acme = sites[0]
    response = save(editor, acme)
    assert response.status_code == 302
    stored = SiteEmailSettings.objects.get(site=acme)
    assert stored.custom_smtp and stored.host == "127.0.0.1" and stored.port == 587
    assert stored.from_email == "billing@acme.test" and stored.reply_to == "agency@agency.test"
    assert stored.get_password() == PASSWORD

    # The plaintext is nowhere: the row, the page, a failed save, the logs, the history.
    assert stored.password_encrypted.startswith("gAAAAA")
    assert PASSWORD not in raw_row(acme)
    page = editor.get(f"{SETTINGS_URL}?site={acme.pk}").content.decode()
    assert PASSWORD not in page
    assert "A password is stored" in page
    invalid = save(editor, acme, host="not a host!").content.decode()
    assert "Enter a host name" in invalid and PASSWORD not in invalid
    assert PASSWORD not in caplog.text
    entry = ModelLogEntry.objects.get(action="wagtail_client_billing.email_settings.edit")
    assert "password" in entry.data["changed"]
    assert PASSWORD not in repr(entry.data)
    assert PASSWORD not in repr(stored) and PASSWORD not in str(stored)


def test_a_blank_password_keeps_the_stored_one_and_clearing_removes_it(editor, sites):
    acme = sites[0]
    save(editor, acme)
    token = SiteEmailSettings.objects.get(site=acme).password_encrypted
    # The same server (another From): kept. Another server drops it, see
    # test_email_settings_security.py (the password belongs to its server).
    save(editor, acme, password="", from_email="hello@acme.test")
    stored = SiteEmailSettings.objects.get(site=acme)
    assert stored.from_email == "hello@acme.test"
    assert stored.password_encrypted == token
    save(editor, acme, password="", clear_password="on")
    assert SiteEmailSettings.objects.get(site=acme).password_encrypted == ""


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"host": ""}, "Custom SMTP needs a host."),
        ({"from_email": ""}, "Custom SMTP needs a From address."),
        ({"host": "smtp.acme.test\r\nX-Evil: 1"}, "Enter a host name"),
        ({"port": "0"}, "greater than or equal to 1"),
        ({"port": "70000"}, "less than or equal to 65535"),
        ({"from_email": "billing@acme.test\nBcc: x@evil.test"}, "Enter a valid email address"),
        ({"reply_to": "not-an-address"}, "Enter a valid email address"),
        ({"security": "smoke-signals"}, "Select a valid choice"),
    ],
)
def test_bad_settings_are_refused_and_kept(editor, sites, changes, message):
    response = save(editor, sites[0], **changes)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not SiteEmailSettings.objects.filter(site=sites[0]).exists()
    # The test email still goes through what is saved, and the page says so.
    assert "through the settings as saved (the default email backend)" in (
        response.content.decode()
    )


def test_without_custom_smtp_host_and_from_are_optional(editor, sites):
    response = save(editor, sites[0], custom_smtp=None, host="", from_email="", password="")
    assert response.status_code == 302
    assert SiteEmailSettings.objects.get(site=sites[0]).custom_smtp is False


def test_the_port_is_needed_with_custom_smtp_only(editor, sites):
    response = save(editor, sites[0], port="")
    assert response.status_code == 200
    assert "Custom SMTP needs a port." in response.content.decode()
    assert not SiteEmailSettings.objects.filter(site=sites[0]).exists()

    response = save(editor, sites[0], custom_smtp=None, port="", password="")
    assert response.status_code == 302
    assert SiteEmailSettings.objects.get(site=sites[0]).port == 587


def test_an_undecryptable_password_is_reported_on_the_page(editor, sites):
    SiteEmailSettings.objects.create(
        site=sites[0], custom_smtp=True, host="smtp.acme.test", password_encrypted="gAAAAAgarbage"
    )
    page = editor.get(f"{SETTINGS_URL}?site={sites[0].pk}").content.decode()
    assert "cannot be decrypted with the configured keys" in page
    assert "gAAAAAgarbage" not in page


# Isolation ----------------------------------------------------------------------------------


def test_an_editor_of_site_a_cannot_read_or_change_site_b(editor, sites):
    acme, bakery = sites
    SiteEmailSettings.objects.create(site=bakery, from_email="secret@bakery.test")
    assert editor.get(f"{SETTINGS_URL}?site={bakery.pk}").status_code == 404
    editor.get(SETTINGS_URL)  # the editor's own page: a CSRF token
    token = editor.cookies["csrftoken"].value
    data = {**settings_form(from_email="taken@evil.test"), "csrfmiddlewaretoken": token}
    assert editor.post(f"{SETTINGS_URL}?site={bakery.pk}", data).status_code == 404
    test = {"to": "me@evil.test", "csrfmiddlewaretoken": token}
    assert editor.post(f"{TEST_URL}?site={bakery.pk}", test).status_code == 404
    assert SiteEmailSettings.objects.get(site=bakery).from_email == "secret@bakery.test"
    # Without ?site= the page is the editor's own site, never another.
    page = editor.get(SETTINGS_URL).content.decode()
    assert "Acme Plumbing" in page and "secret@bakery.test" not in page


def test_users_who_cannot_bill_get_403(client, sites):
    client.force_login(make_user("writer"))
    assert client.get(f"{SETTINGS_URL}?site={sites[0].pk}").status_code == 404  # not theirs
    assert client.get(SETTINGS_URL).status_code == 403
    assert client.post(SETTINGS_URL, settings_form()).status_code == 403
    assert not SiteEmailSettings.objects.exists()


def test_agency_admins_can_edit_every_site(client, sites):
    client.force_login(make_user("agency", agency=True))
    page = client.get(f"{SETTINGS_URL}?site={sites[1].pk}").content.decode()
    assert "Rue Haute Bakery" in page and "Acme Plumbing" in page  # the switcher


# Send a test email --------------------------------------------------------------------------


def send_test(client, site, to="me@acme.test"):
    response = csrf_post(client, f"{TEST_URL}?site={site.pk}", {"_site": site.pk, "to": to})
    assert response.status_code == 302
    return client.get(response["Location"]).content.decode()


def test_a_test_email_goes_through_the_saved_settings(editor, sites):
    with SMTPServer(auth=True) as server:
        save(editor, sites[0], server=server, port=str(server.port))
        page = send_test(editor, sites[0])
    assert f"A test email was sent to me@acme.test through 127.0.0.1:{server.port}." in page
    (message,) = server.messages
    assert message["To"] == "me@acme.test"
    assert message["From"] == "Acme Plumbing <billing@acme.test>"
    assert message["Reply-To"] == "agency@agency.test"


def test_a_test_email_through_the_default_backend(editor, sites, mailoutbox):
    page = send_test(editor, sites[0])
    assert "through the default email backend" in page
    assert mailoutbox[0].to == ["me@acme.test"]


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("down", "Could not connect to 127.0.0.1:{port}: connection refused."),
        ("auth", "The SMTP server refused the username or password: 535"),
        ("sender", "The SMTP server refused the sender billing@acme.test: 553 5.7.1 Not yours"),
        ("tls", "The TLS connection to 127.0.0.1:{port} failed"),
        ("ssl-on-plain-port", "this port does not speak SSL/TLS from the start"),
    ],
)
def test_a_failing_test_email_says_what_the_server_said(editor, sites, fault, expected, tmp_path):
    from tests.smtp import make_certificate

    server = SMTPServer(
        auth=fault == "auth",
        starttls=fault == "tls",
        cert=make_certificate(tmp_path) if fault == "tls" else None,
    )
    with server:
        port = closed_port() if fault == "down" else server.port
        server.inbox.mail_reply = "553 5.7.1 Not yours" if fault == "sender" else ""
        security = {"tls": "starttls", "ssl-on-plain-port": "ssl"}.get(fault, "none")
        password = "wrong-password" if fault == "auth" else ""
        save(editor, sites[0], port=str(port), security=security, password=password)
        page = send_test(editor, sites[0])
    assert "The test email could not be sent" in page
    assert expected.format(port=port) in page
    assert "wrong-password" not in page
    assert server.messages == []


# The pay page's contact address --------------------------------------------------------------


@pytest.fixture
def expired_request(billing_stripe_settings, sites, django_capture_on_commit_callbacks):
    connect_ready_account(billing_stripe_settings)
    request = billing.create_request(
        site=sites[0],
        details=request_details(),
    )
    BillingRequest.objects.filter(pk=request.pk).update(
        status=BillingRequest.Status.EXPIRED, expires_at=timezone.now() - timedelta(hours=1)
    )
    return request


@pytest.mark.parametrize(
    ("from_email", "reply_to", "shown"),
    [
        ("billing@acme.test", "agency@agency.test", "agency@agency.test"),
        ("billing@acme.test", "", "billing@acme.test"),
        ("", "", "billing@localhost"),
    ],
)
def test_the_pay_page_offers_the_sites_reply_to(
    client, sites, expired_request, from_email, reply_to, shown, settings
):
    settings.DEFAULT_FROM_EMAIL = "billing@localhost"
    SiteEmailSettings.objects.create(site=sites[0], from_email=from_email, reply_to=reply_to)
    page = client.get(expired_request.get_payment_path(), HTTP_HOST="acme.test").content.decode()
    assert shown in page


# The language of a site's client emails and pages ---------------------------------------


def test_each_site_says_which_language_its_clients_get(editor, sites):
    page = editor.get(f"{SETTINGS_URL}?site={sites[0].pk}").content.decode()
    assert "Language of client emails and pages" in page
    # Blank by default: the site's own (its root page's locale, English here), named.
    assert '<option value="" selected>The site&#x27;s own language: English</option>' in page
    assert '<option value="fr">français</option>' in page

    response = save(editor, sites[0], custom_smtp=None, password="", client_language="fr")
    assert response.status_code == 302
    assert SiteEmailSettings.objects.get(site=sites[0]).client_language == "fr"
    response = save(editor, sites[0], custom_smtp=None, password="", client_language="xx")
    assert "Select a valid choice." in response.content.decode()


def test_a_french_client_of_an_english_project_gets_french_emails_and_pages(
    billing_stripe_settings, client, sites, settings, mailoutbox, django_capture_on_commit_callbacks
):
    """The project and the site's root page are English; the site bills a French client."""
    assert settings.LANGUAGE_CODE.startswith("en")
    SiteEmailSettings.objects.create(site=sites[0], client_language="fr")
    connect_ready_account(billing_stripe_settings)
    with django_capture_on_commit_callbacks(execute=True):
        request = billing.create_request(site=sites[0], details=request_details())
    (email,) = [message for message in mailoutbox if request.email in message.to]
    assert email.subject.startswith("Demande de paiement"), email.subject
    assert "Payer en toute sécurité avec Stripe" in email.body
    page = client.get(request.get_payment_path(), HTTP_HOST="acme.test")
    assert page.status_code == 302  # off to Checkout
    BillingRequest.objects.filter(pk=request.pk).update(status=BillingRequest.Status.EXPIRED)
    page = client.get(request.get_payment_path(), HTTP_HOST="acme.test").content.decode()
    assert '<html lang="fr">' in page
    assert "Cette demande de paiement a expiré" in page
    # Another site keeps its own language.
    assert SiteEmailSettings.for_site_or_default(sites[1].pk).language(sites[1]) == "en"


def test_the_sites_billing_screens_say_which_language_its_clients_read(editor, sites):
    listing = f"{INDEX}?site={sites[0].pk}"
    assert "Client emails and pages in English" in editor.get(listing).content.decode()
    SiteEmailSettings.objects.create(site=sites[0], client_language="fr")
    assert "Client emails and pages in français" in editor.get(listing).content.decode()
    add_form = reverse("wagtail_client_billing_requests:add") + f"?site={sites[0].pk}"
    page = editor.get(add_form).content.decode()
    assert "<span data-wcb-client-language>français</span>" in page
