"""An agency admin connects and unlinks the client billing account in a real browser."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.factories import PASSWORD, make_user
from wagtail_client_billing.models import StripeConnection

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("wagtail_root"),
]

WORDS = {
    "en": {
        "settings": "Settings",
        "menu": "Client billing account",
        "create": "Create client billing account",
        "test_mode": "Test mode",
        "country": "Country",
        "country_name": "France",
        "privacy": "Privacy policy URL",
        "terms": "Terms of service URL",
        "connect": "Connect",
        "ready": "Ready to charge",
        "unlink": "Unlink account",
        "confirm": "Yes, unlink account",
    },
    "fr": {
        "settings": "Paramètres",
        "menu": "Compte de facturation client",
        "create": "Créer un compte de facturation client",
        "test_mode": "Mode test",
        "country": "Pays",
        "country_name": "France",
        "privacy": "URL de la politique de confidentialité",
        "terms": "URL des conditions de service",
        "connect": "Connecter",
        "ready": "Prêt à encaisser",
        "unlink": "Dissocier le compte",
        "confirm": "Oui, dissocier le compte",
    },
}


@pytest.mark.parametrize("language", ["en", "fr"])
def test_connect_onboard_and_unlink(live_server, page, stripe, language):
    words = WORDS[language]
    make_user("agency", superuser=True, language=language)

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("input[name=username]", "agency")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")

    page.get_by_role("button", name=words["settings"]).click()
    page.get_by_role("link", name=words["menu"]).click()
    page.get_by_role("link", name=words["create"]).click()

    expect(page.get_by_label(words["test_mode"])).to_be_checked()
    page.get_by_label(words["country"]).select_option(label=words["country_name"])
    page.get_by_label(words["privacy"]).fill("https://agency.example/privacy")
    page.get_by_label(words["terms"]).fill("https://agency.example/terms")
    page.get_by_role("button", name=words["connect"], exact=True).click()

    # Stripe's (simulated) onboarding, then back to the admin.
    page.wait_for_url(re.compile(re.escape(stripe.url)))
    page.get_by_role("button", name="Complete onboarding").click()
    page.wait_for_url(re.compile(re.escape(live_server.url)))
    section = page.locator("section[data-mode=test]")
    expect(section.get_by_role("heading", name=words["ready"])).to_be_visible()
    connection = StripeConnection.objects.get()
    expect(section).to_contain_text(connection.account_id)

    section.get_by_role("link", name=words["unlink"]).click()
    page.get_by_role("button", name=words["confirm"]).click()
    expect(page.get_by_role("link", name=words["create"])).to_be_visible()
    connection.refresh_from_db()
    assert not connection.is_linked
