"""A site's email settings as a hostile site editor sees them (issue 10).

- The stored SMTP password belongs to the server it was entered for: pointing the
  settings at another server drops it, so a test email cannot hand it to that server.
- Editing email settings is its own per-site permission, not implied by billing.
- Without Custom SMTP, the From address is the project's, unless the site's address is
  on one of the agency's sender domains; the site's address becomes the Reply-To.
- At most ``TEST_EMAILS_PER_MINUTE`` test emails per user per minute, counted in the
  database (every web process sees the same count).
"""

from __future__ import annotations

import re
from datetime import timedelta
from email.utils import parseaddr

import pytest
from aiosmtpd.smtp import AuthResult
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from wagtail.log_actions import registry as log_registry
from wagtail.models import GroupSitePermission, ModelLogEntry, Site

from tests.factories import (
    connect_ready_account,
    grant_billing,
    grant_email_settings,
    make_site,
    make_user,
    request_details,
)
from tests.smtp import PASSWORD, SMTPServer, closed_port
from tests.test_email_settings import csrf_post, save, settings_form
from wagtail_client_billing import billing
from wagtail_client_billing.mail import messages as compose
from wagtail_client_billing.models import SiteEmailSettings
from wagtail_client_billing.views.email_settings import SiteEmailSettingsForm

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS"),
]

SETTINGS_URL = reverse("wagtail_client_billing_requests:email_settings")
TEST_URL = reverse("wagtail_client_billing_requests:email_settings_test")
INDEX = reverse("wagtail_client_billing_requests:index")
ACTION_EDIT = "wagtail_client_billing.email_settings.edit"
ACTION_TEST = "wagtail_client_billing.email_settings.test"
PASSWORD_REMOVED = "The stored password was removed"


def client_of(user) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


@pytest.fixture
def editor(sites):
    """An editor who may bill for Acme and edit Acme's email settings."""
    user = make_user("acme-editor")
    grant_billing(user, sites[0])
    grant_email_settings(user, sites[0])
    return client_of(user)


def follow(client, response) -> str:
    assert response.status_code == 302, response.content.decode()[:2000]
    return client.get(response["Location"]).content.decode()


def send_test(client, site, to="me@acme.test") -> str:
    response = csrf_post(client, f"{TEST_URL}?site={site.pk}", {"_site": site.pk, "to": to})
    return follow(client, response)


# 1. The stored password belongs to its server -------------------------------------------------


class AttackerServer(SMTPServer):
    """An SMTP server of the editor's own: accepts any login and keeps what it was sent."""

    def __init__(self) -> None:
        self.credentials: list[object] = []
        super().__init__(auth=True)

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        self.inbox.auth_attempts += 1
        self.credentials.append(auth_data)
        return AuthResult(success=True, handled=False)


def test_pointing_the_settings_at_another_server_cannot_leak_the_stored_password(editor, sites):
    acme = sites[0]
    with SMTPServer(auth=True) as real:
        save(editor, acme, server=real)
        assert "A test email was sent" in send_test(editor, acme)
    assert SiteEmailSettings.objects.get(site=acme).get_password() == PASSWORD

    with AttackerServer() as evil:
        # "Leave it blank to keep it": the editor changes only the port, to their server.
        page = follow(editor, save(editor, acme, port=str(evil.port), password=""))
        assert PASSWORD_REMOVED in page
        assert not SiteEmailSettings.objects.get(site=acme).has_password
        page = send_test(editor, acme)
    assert evil.credentials == [] and evil.inbox.auth_attempts == 0
    assert PASSWORD not in repr(evil.credentials) and PASSWORD not in repr(evil.messages)
    assert "The test email could not be sent" in page
    assert "Authentication required" in page  # the server asked for what it did not get


@pytest.mark.parametrize(
    "change",
    [
        {"host": "smtp.evil.test"},
        {"host": "127.0.0.2"},
        {"port": "2525"},
        {"username": "someone-else@acme.test"},
        {"security": "starttls"},  # from "none": the same password, on another channel
    ],
)
def test_any_change_of_server_drops_the_stored_password(editor, sites, change):
    acme = sites[0]
    save(editor, acme)
    page = follow(editor, save(editor, acme, password="", **change))
    assert not SiteEmailSettings.objects.get(site=acme).has_password
    assert PASSWORD_REMOVED in page
    entry = ModelLogEntry.objects.filter(action=ACTION_EDIT).latest("pk")
    assert "password" in entry.data["changed"]
    assert entry.data["password_removed"] is True


def test_the_same_server_keeps_the_password_and_a_new_one_can_be_typed(editor, sites):
    acme = sites[0]
    save(editor, acme)
    token = SiteEmailSettings.objects.get(site=acme).password_encrypted
    # From, Reply-to and Custom SMTP are not the server: the password stays.
    page = follow(editor, save(editor, acme, password="", from_email="hi@acme.test"))
    assert PASSWORD_REMOVED not in page
    assert SiteEmailSettings.objects.get(site=acme).password_encrypted == token
    # A new server with its password typed in the same save: that password is stored.
    page = follow(editor, save(editor, acme, host="smtp.acme.test", password="new-one"))
    assert PASSWORD_REMOVED not in page
    assert SiteEmailSettings.objects.get(site=acme).get_password() == "new-one"


def test_the_rule_holds_outside_the_form_too(sites):
    """The model keeps the rule: the shell, or any code that saves the settings."""
    stored = SiteEmailSettings(site=sites[0], custom_smtp=True, host="smtp.acme.test")
    stored.set_password(PASSWORD)
    stored.save()
    loaded = SiteEmailSettings.objects.get(pk=stored.pk)
    loaded.reply_to = "office@acme.test"
    loaded.save()
    assert not loaded.password_removed and loaded.get_password() == PASSWORD
    loaded.port = 2525
    loaded.save(update_fields=["port"])
    assert loaded.password_removed
    assert SiteEmailSettings.objects.get(pk=stored.pk).password_encrypted == ""
    # A password set for the new server in the same save is that server's.
    loaded.host = "smtp.elsewhere.test"
    loaded.set_password("elsewhere")
    loaded.save()
    assert not loaded.password_removed
    assert SiteEmailSettings.objects.get(pk=stored.pk).get_password() == "elsewhere"


def test_the_form_says_the_password_belongs_to_its_server(editor, sites):
    page = editor.get(f"{SETTINGS_URL}?site={sites[0].pk}").content.decode()
    assert "changing the host, port, username or security removes it" in page
    save(editor, sites[0])
    page = editor.get(f"{SETTINGS_URL}?site={sites[0].pk}").content.decode()
    assert "A password is stored for this server. Leave this blank to keep it" in page
    assert "changing the host, port, username or security removes it" in page


def test_the_audit_log_records_the_old_and_new_server_never_the_password(editor, sites):
    acme = sites[0]
    save(editor, acme)
    save(editor, acme, host="smtp.evil.test", port="2525", password="")
    entry = ModelLogEntry.objects.filter(action=ACTION_EDIT).latest("pk")
    assert entry.data["server"] == {"old": "127.0.0.1:587", "new": "smtp.evil.test:2525"}
    assert PASSWORD not in repr(entry.data)
    assert "127.0.0.1:587" in entry.message and "smtp.evil.test:2525" in entry.message
    # The first save had no old server; a save that keeps the server records none.
    first = ModelLogEntry.objects.filter(action=ACTION_EDIT).earliest("pk")
    assert "server" not in first.data
    save(editor, acme, host="smtp.evil.test", port="2525", password="", reply_to="x@acme.test")
    assert "server" not in ModelLogEntry.objects.filter(action=ACTION_EDIT).latest("pk").data


# 2. Its own permission --------------------------------------------------------------------------


def test_billing_for_a_site_does_not_open_its_email_settings(sites, mailoutbox):
    acme = sites[0]
    user = make_user("billing-only")
    grant_billing(user, acme)
    client = client_of(user)
    listing = client.get(f"{INDEX}?site={acme.pk}").content.decode()
    assert SETTINGS_URL not in listing
    assert client.get(f"{SETTINGS_URL}?site={acme.pk}").status_code == 404
    assert client.get(SETTINGS_URL).status_code == 403
    token = client.cookies["csrftoken"].value
    data = {**settings_form(from_email="ceo@agency.example"), "csrfmiddlewaretoken": token}
    assert client.post(f"{SETTINGS_URL}?site={acme.pk}", data).status_code == 404
    assert client.post(SETTINGS_URL, data).status_code == 403
    test = {"to": "me@evil.test", "csrfmiddlewaretoken": token}
    assert client.post(f"{TEST_URL}?site={acme.pk}", test).status_code == 404
    assert client.post(TEST_URL, test).status_code == 403
    assert not SiteEmailSettings.objects.exists()
    assert mailoutbox == []
    assert not ModelLogEntry.objects.filter(action__in=[ACTION_EDIT, ACTION_TEST]).exists()


def test_the_email_permission_on_site_a_opens_site_a_only(sites, mailoutbox):
    acme, bakery = sites
    user = make_user("acme-mail")
    grant_billing(user, acme, bakery)
    grant_email_settings(user, acme)
    client = client_of(user)
    SiteEmailSettings.objects.create(site=bakery, from_email="secret@bakery.test")

    page = client.get(f"{SETTINGS_URL}?site={acme.pk}")
    assert page.status_code == 200
    switcher = page.content.decode()
    assert "Acme Plumbing" in switcher and "Rue Haute Bakery" not in switcher
    assert (
        f"{SETTINGS_URL}?site={acme.pk}" in client.get(f"{INDEX}?site={acme.pk}").content.decode()
    )
    assert SETTINGS_URL not in client.get(f"{INDEX}?site={bakery.pk}").content.decode()

    assert client.get(f"{SETTINGS_URL}?site={bakery.pk}").status_code == 404
    client.get(SETTINGS_URL)
    token = client.cookies["csrftoken"].value
    data = {**settings_form(from_email="taken@evil.test"), "csrfmiddlewaretoken": token}
    assert client.post(f"{SETTINGS_URL}?site={bakery.pk}", data).status_code == 404
    test = {"to": "me@evil.test", "csrfmiddlewaretoken": token}
    assert client.post(f"{TEST_URL}?site={bakery.pk}", test).status_code == 404
    assert SiteEmailSettings.objects.get(site=bakery).from_email == "secret@bakery.test"
    assert mailoutbox == []
    # Without ?site=, the page is a site the user may edit, never another.
    assert "secret@bakery.test" not in client.get(SETTINGS_URL).content.decode()
    mine = {**settings_form(custom_smtp=None, host=""), "csrfmiddlewaretoken": token}
    assert client.post(f"{SETTINGS_URL}?site={acme.pk}", mine).status_code == 302
    assert "A test email was sent" in follow(
        client, client.post(f"{TEST_URL}?site={acme.pk}", test)
    )


def test_email_settings_alone_need_no_billing_permission(sites):
    acme = sites[0]
    user = make_user("mail-only")
    grant_email_settings(user, acme)
    client = client_of(user)
    page = client.get(f"{SETTINGS_URL}?site={acme.pk}")
    assert page.status_code == 200
    # No way back to a billing area this user cannot open.
    assert "Back to the billing requests" not in page.content.decode()
    # Wagtail sends who may not open the billing area back to the dashboard.
    assert client.get(f"{INDEX}?site={acme.pk}")["Location"] == reverse("wagtailadmin_home")


def test_agency_admins_edit_every_sites_email_settings(sites):
    client = client_of(make_user("agency", agency=True))
    for site in sites:
        page = client.get(f"{SETTINGS_URL}?site={site.pk}")
        assert page.status_code == 200
        assert "Rue Haute Bakery" in page.content.decode()
        assert "Acme Plumbing" in page.content.decode()
        assert f"{SETTINGS_URL}?site={site.pk}" in (
            client.get(f"{INDEX}?site={site.pk}").content.decode()
        )
    assert save(client, sites[1]).status_code == 302


def test_the_groups_editor_grants_the_email_settings_permission_per_site(client, sites):
    from wagtail_client_billing.permissions import EmailSettingsSitePermissionForm

    acme, bakery = sites
    client.force_login(make_user("boss", superuser=True))
    page = client.get(reverse("wagtailusers_groups:add")).content.decode()
    assert "Client billing: sites whose email settings this group can edit" in page
    assert "Client billing: sites this group can bill for" in page  # next to it
    boxes = re.findall(
        r'name="wagtail_client_billing_email_settings_permissions-sites" value="(\d+)"', page
    )
    assert set(map(int, boxes)) == set(Site.objects.values_list("pk", flat=True))

    group = Group.objects.create(name="Acme mail")
    prefix = "wagtail_client_billing_email_settings_permissions"
    form = EmailSettingsSitePermissionForm({f"{prefix}-sites": [acme.pk]}, instance=group)
    assert form.is_valid(), form.errors
    form.save()
    (granted,) = GroupSitePermission.objects.filter(group=group)
    assert (granted.site, granted.permission.codename) == (acme, "change_siteemailsettings")
    user = make_user("acme-mail")
    user.groups.add(group)
    assert client_of(user).get(f"{SETTINGS_URL}?site={acme.pk}").status_code == 200
    # The group's page shows the site ticked.
    page = client.get(reverse("wagtailusers_groups:edit", args=[group.pk])).content.decode()
    assert re.search(rf'name="{prefix}-sites" value="{acme.pk}"[^>]*checked', page)


# 3. No spoofed From through the default backend -----------------------------------------------


@pytest.fixture
def billing_request(billing_stripe_settings, sites):
    connect_ready_account(billing_stripe_settings)
    return billing.create_request(
        site=sites[0],
        details=request_details(),
    )


@pytest.fixture
def default_from(settings):
    settings.DEFAULT_FROM_EMAIL = "Agency <billing@agency.example>"


def messages_for(request, **fields):
    """The billing email and the test email for the request's site with ``fields`` saved."""
    email_settings = SiteEmailSettings.objects.create(site=request.site, **fields)
    return (
        compose.billing_email(request, email_settings=email_settings, links={}),
        compose.test_email(email_settings, "me@acme.test"),
    )


def test_without_custom_smtp_a_foreign_from_becomes_the_reply_to(billing_request, default_from):
    for message in messages_for(billing_request, from_email="ceo@agency.example"):
        assert parseaddr(message.from_email) == ("Acme Plumbing", "billing@agency.example")
        assert message.reply_to == ["ceo@agency.example"]
        assert "ceo@agency.example" not in message.message()["From"]


def test_without_custom_smtp_the_reply_to_wins_over_the_from(billing_request, default_from):
    fields = {"from_email": "ceo@agency.example", "reply_to": "office@acme.test"}
    for message in messages_for(billing_request, **fields):
        assert parseaddr(message.from_email)[1] == "billing@agency.example"
        assert message.reply_to == ["office@acme.test"]


@pytest.mark.parametrize(
    ("from_email", "allowed"),
    [
        ("billing@client.example", True),
        ("Billing@CLIENT.Example", True),
        ("billing@sub.client.example", False),  # exact domains only
        ("billing@client.example.evil.test", False),
        ("billing@evilclient.example", False),
    ],
)
def test_sender_domains_let_a_site_use_its_own_from(
    billing_request, default_from, settings, from_email, allowed
):
    settings.WAGTAIL_CLIENT_BILLING = {
        **settings.WAGTAIL_CLIENT_BILLING,
        "SENDER_DOMAINS": ["client.example"],
    }
    for message in messages_for(billing_request, from_email=from_email):
        expected = from_email if allowed else "billing@agency.example"
        assert parseaddr(message.from_email) == ("Acme Plumbing", expected)
        assert message.reply_to == ([] if allowed else [from_email])


def test_custom_smtp_sends_from_the_sites_own_address(billing_request, default_from):
    fields = {"custom_smtp": True, "host": "smtp.acme.test", "from_email": "ceo@agency.example"}
    for message in messages_for(billing_request, **fields):
        assert parseaddr(message.from_email) == ("Acme Plumbing", "ceo@agency.example")
        assert not message.reply_to


def test_a_test_email_through_the_default_backend_cannot_spoof(editor, sites, mailoutbox, settings):
    settings.DEFAULT_FROM_EMAIL = "billing@agency.example"
    save(editor, sites[0], custom_smtp=None, host="", password="", from_email="ceo@agency.example")
    send_test(editor, sites[0])
    (message,) = mailoutbox
    assert parseaddr(message.from_email) == ("Acme Plumbing", "billing@agency.example")
    assert message.reply_to == ["agency@agency.test"]  # the form's Reply-to


def test_the_page_says_which_from_address_is_used(editor, sites, settings):
    settings.DEFAULT_FROM_EMAIL = "billing@agency.example"
    page = follow(
        editor,
        save(editor, sites[0], custom_smtp=None, host="", password="", reply_to="",
             from_email="ceo@agency.example"),
    )  # fmt: skip
    assert "sent from billing@agency.example" in page
    assert "not from ceo@agency.example" in page
    assert SiteEmailSettings.objects.get(site=sites[0]).from_email == "ceo@agency.example"
    # Allowed, or with Custom SMTP, nothing to explain.
    settings.WAGTAIL_CLIENT_BILLING = {
        **settings.WAGTAIL_CLIENT_BILLING,
        "SENDER_DOMAINS": ["agency.example"],
    }
    page = editor.get(f"{SETTINGS_URL}?site={sites[0].pk}").content.decode()
    assert "not from ceo@agency.example" not in page


# 4. At most a few test emails per user per minute -----------------------------------------------


def test_at_most_three_test_emails_per_user_per_minute(editor, sites, mailoutbox):
    acme = sites[0]
    for _ in range(3):
        assert "A test email was sent" in send_test(editor, acme)
    page = send_test(editor, acme)
    assert (
        "You have sent 3 test emails in the last minute; wait a minute before sending another."
        in page
    )
    assert len(mailoutbox) == 3
    entries = ModelLogEntry.objects.filter(action=ACTION_TEST)
    assert entries.count() == 3
    assert {entry.user.username for entry in entries} == {"acme-editor"}
    assert entries.first().data["to"] == "me@acme.test"

    # Another session of the same user (another browser, another web process) counts too.
    same_user = client_of(entries.first().user)
    assert "You have sent 3 test emails" in send_test(same_user, acme)
    # Another user has their own count.
    other = make_user("acme-colleague")
    grant_email_settings(other, acme)
    assert "A test email was sent" in send_test(client_of(other), acme)
    assert len(mailoutbox) == 4

    # A minute later, the editor may send again.
    entries.filter(user__username="acme-editor").update(
        timestamp=timezone.now() - timedelta(seconds=61)
    )
    assert "A test email was sent" in send_test(editor, acme)
    assert len(mailoutbox) == 5


def test_failed_test_emails_count_too(editor, sites, settings):
    settings.WAGTAIL_CLIENT_BILLING = {
        **settings.WAGTAIL_CLIENT_BILLING,
        "TEST_EMAILS_PER_MINUTE": 1,
    }
    save(editor, sites[0], port=str(closed_port()), password="")
    assert "The test email could not be sent" in send_test(editor, sites[0])
    entry = ModelLogEntry.objects.get(action=ACTION_TEST)
    assert "connection refused" in entry.data["error"]
    page = send_test(editor, sites[0])
    assert (
        "You have sent 1 test email in the last minute; wait a minute before sending another."
        in page
    )


def test_the_test_email_log_action_is_registered():
    assert log_registry.get_action_label(ACTION_TEST) == "Send a test email"


# In a browser --------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("wagtail_root")
def test_in_a_browser_a_new_host_leaves_no_stored_password(live_server, page):
    from playwright.sync_api import expect

    from tests.factories import PASSWORD as LOGIN_PASSWORD

    acme = make_site("acme.test", "Acme Plumbing")
    user = make_user("acme-editor")
    grant_billing(user, acme)
    grant_email_settings(user, acme)
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("input[name=username]", "acme-editor")
    page.fill("input[name=password]", LOGIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")

    page.goto(f"{live_server.url}{INDEX}?site={acme.pk}")
    page.get_by_role("link", name="Email settings").first.click()
    page.get_by_label("Custom SMTP").check()
    page.get_by_label("Host", exact=True).fill("smtp.acme.test")
    page.get_by_label("Username", exact=True).fill("billing@acme.test")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("From", exact=True).fill("billing@acme.test")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text("Email settings saved for Acme Plumbing.")).to_be_visible()
    expect(page.get_by_text("A password is stored for this server.")).to_be_visible()

    # The editor points the settings at another server and leaves the password blank.
    page.get_by_label("Host", exact=True).fill("smtp.elsewhere.test")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text(PASSWORD_REMOVED)).to_be_visible()
    expect(page.get_by_text("A password is stored for this server.")).to_have_count(0)
    expect(page.get_by_label("Remove the stored password")).to_have_count(0)
    assert not SiteEmailSettings.objects.get(site=acme).has_password


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "10.0.0.5", "169.254.169.254"])
def test_a_private_address_typed_as_the_host_is_refused_at_once(sites, settings, host):
    # The obvious cases are said on save; a name is checked when an email is sent.
    settings.WAGTAIL_CLIENT_BILLING = {
        **settings.WAGTAIL_CLIENT_BILLING,
        "SMTP_ALLOW_PRIVATE_HOSTS": False,
    }
    form = SiteEmailSettingsForm(
        data={"custom_smtp": "on", "host": host, "port": "587", "security": "starttls",
              "from_email": "billing@acme.test"},
        instance=SiteEmailSettings(site=sites[0]),
    )  # fmt: skip
    assert not form.is_valid()
    assert "private or local address" in str(form.errors["host"])
    settings.WAGTAIL_CLIENT_BILLING = {
        **settings.WAGTAIL_CLIENT_BILLING,
        "SMTP_ALLOW_PRIVATE_HOSTS": True,
    }
    form = SiteEmailSettingsForm(data=form.data, instance=SiteEmailSettings(site=sites[0]))
    assert form.is_valid(), form.errors
