"""Screens that guide (issue 13): the site being billed, the alerts, the deleted hint,
the currency list; through the real admin views and the simulator."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tests.factories import grant_billing, make_user
from tests.test_billing_requests import add
from wagtail_client_billing import money
from wagtail_client_billing.models import BillingRequest

pytestmark = pytest.mark.django_db

INDEX = reverse("wagtail_client_billing_requests:index")
ADD = reverse("wagtail_client_billing_requests:add")


@pytest.fixture
def client(client, django_capture_on_commit_callbacks):
    """The test client, running on-commit callbacks (the emails) after each request."""

    class Committing:
        def get(self, *args, **kwargs):
            with django_capture_on_commit_callbacks(execute=True):
                return client.get(*args, **kwargs)

        def post(self, *args, **kwargs):
            with django_capture_on_commit_callbacks(execute=True):
                return client.post(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(client, name)

    return Committing()


@pytest.fixture
def editor(client, sites):
    """An editor who may bill for Acme only."""
    user = make_user("acme-editor")
    grant_billing(user, sites[0])
    client.force_login(user)
    return client


def alerts(page: str) -> list[str]:
    """The red alert boxes above a form, as text."""
    box = r'<div class="help-block help-critical" role="alert">(.*?)</div>'
    boxes = re.findall(box, page, re.S)
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", box)).strip() for box in boxes]


# The Add form's alerts -------------------------------------------------------------------


def test_field_errors_alone_show_no_empty_red_box(editor, sites, connection, stripe):
    response = add(editor, sites[0], email="not an address", amount="")
    page = response.content.decode()
    assert "Enter a valid email address." in page  # under its field
    assert alerts(page) == []


def test_a_form_error_is_in_the_red_box(editor, sites, connection, stripe):
    response = add(editor, sites[0], nonce="")
    assert alerts(response.content.decode()) == [
        "This form arrived incomplete (it may have been cut off or changed on the way). "
        "Check the values below and send it again."
    ]


def test_no_linked_account_is_said_once(editor, sites, stripe):
    response = add(editor, sites[0])
    page = response.content.decode()
    assert page.count("No client billing account is connected") == 1
    assert alerts(page) == []
    assert BillingRequest.objects.count() == 0


# The site being billed -------------------------------------------------------------------


def billed_site(page: str) -> str:
    """The "Client site" box of a page, as text ("" if there is none)."""
    found = re.search(r"<div[^>]*data-wcb-billed-site[^>]*>(.*?)</div>", page, re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found.group(1))).strip() if found else ""


def test_an_agency_admin_with_several_sites_opens_on_a_site_chooser(
    client, sites, connection, stripe
):
    """Not on the admin's own host (the agency's site, with nothing to bill): a chooser
    of the client sites, each with its address and its requests, then the one chosen."""
    editor = make_user("acme-editor")
    grant_billing(editor, sites[0])
    client.force_login(editor)
    add(client, sites[0], email="first@example.com")
    add(client, sites[0], email="second@example.com")
    client.force_login(make_user("agency", superuser=True))

    page = client.get(INDEX).content.decode()
    assert "data-wcb-site-chooser" in page
    chooser = page[page.index("data-wcb-site-chooser") :].split("</table>")[0]
    acme = chooser[chooser.index("Acme Plumbing") :].split("</tr>")[0]
    assert f'href="{INDEX}?site={sites[0].pk}"' in chooser
    assert re.findall(r"<td[^>]*>\s*([^<\s][^<]*?)\s*</td>", acme) == ["acme.test", "2", "2"]
    bakery = chooser[chooser.index("Rue Haute Bakery") :].split("</tr>")[0]
    assert "bakery.test" in bakery

    chosen = client.get(f"{INDEX}?site={sites[0].pk}").content.decode()
    assert "second@example.com" in chosen
    # Remembered: the menu item opens on it now, with a way back to every site.
    again = client.get(INDEX).content.decode()
    assert "second@example.com" in again and "data-wcb-site-chooser" not in again
    assert f'href="{reverse("wagtail_client_billing_requests:choose_site")}"' in again


def test_an_editor_of_one_site_opens_on_it(editor, sites, connection, stripe):
    add(editor, sites[0], email="first@example.com")
    page = editor.get(INDEX).content.decode()
    assert "first@example.com" in page and "data-wcb-site-chooser" not in page
    assert editor.get(reverse("wagtail_client_billing_requests:choose_site")).status_code == 200


def test_the_site_chooser_is_for_those_who_can_bill(client, sites):
    client.force_login(make_user("writer"))
    response = client.get(reverse("wagtail_client_billing_requests:choose_site"))
    assert response.status_code == 302  # Wagtail's answer to PermissionDenied: the dashboard
    assert "Acme Plumbing" not in response.content.decode()


def test_every_form_names_the_client_site_and_its_address(editor, sites, connection, stripe):
    shown = "Client site: Acme Plumbing · acme.test · its clients read English"
    assert billed_site(editor.get(f"{ADD}?site={sites[0].pk}").content.decode()) == shown
    add(editor, sites[0])
    request = BillingRequest.objects.get()
    for name in ("inspect", "delete"):
        page = editor.get(reverse(f"wagtail_client_billing_requests:{name}", args=[request.pk]))
        assert billed_site(page.content.decode()) == shown, name
    editor.post(reverse("wagtail_client_billing_requests:delete", args=[request.pk]))
    renew = editor.get(reverse("wagtail_client_billing_requests:renew", args=[request.pk]))
    assert billed_site(renew.content.decode()) == shown


def test_an_unusual_port_is_part_of_the_address(editor, sites, connection, stripe):
    sites[0].port = 8443
    sites[0].save()
    page = editor.get(f"{ADD}?site={sites[0].pk}").content.decode()
    assert billed_site(page).startswith("Client site: Acme Plumbing · acme.test:8443 · ")


# Deleted requests: hidden, but said -------------------------------------------------------


def delete(client, request):
    client.post(reverse("wagtail_client_billing_requests:delete", args=[request.pk]))


def hint(page: str) -> str:
    found = re.search(r"<p[^>]*data-wcb-hidden-deleted[^>]*>(.*?)</p>", page, re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found.group(1))).strip() if found else ""


def test_the_listing_says_how_many_deleted_requests_it_hides_and_links_to_them(
    editor, sites, connection, stripe
):
    for email in ("gone@example.com", "gone-too@example.com", "kept@example.com"):
        add(editor, sites[0], email=email)
    for request in BillingRequest.objects.exclude(email="kept@example.com"):
        delete(editor, request)

    editor.get(INDEX)  # shows (and so clears) the messages of the actions above
    page = editor.get(f"{INDEX}?site={sites[0].pk}").content.decode()
    assert "gone@example.com" not in page
    assert hint(page) == "2 deleted requests are hidden. Show them"
    link = re.search(r'data-wcb-hidden-deleted.*?<a href="([^"]+)"', page, re.S).group(1)
    shown = editor.get(link.replace("&amp;", "&")).content.decode()
    assert "gone@example.com" in shown and "gone-too@example.com" in shown
    assert "kept@example.com" not in shown.split('class="listing')[-1]
    assert hint(shown) == ""

    # The search is kept, and counts: one of them matches.
    found = editor.get(f"{INDEX}?site={sites[0].pk}&q=gone-too").content.decode()
    assert hint(found) == "1 deleted request is hidden. Show it"
    link = re.search(r'data-wcb-hidden-deleted.*?<a href="([^"]+)"', found, re.S).group(1)
    assert "q=gone-too" in link and "status=deleted" in link


def test_no_hint_when_nothing_is_hidden(editor, sites, connection, stripe):
    add(editor, sites[0])
    assert hint(editor.get(f"{INDEX}?site={sites[0].pk}").content.decode()) == ""


def test_the_status_filter_is_wagtails_checkboxes(editor, sites, connection, stripe):
    page = editor.get(f"{INDEX}?site={sites[0].pk}").content.decode()
    for status in ("pending", "paid", "expired", "deleted"):
        assert re.search(rf'<input type="checkbox" name="status" value="{status}"', page), status
    assert '<select name="status"' not in page


# The currency list --------------------------------------------------------------------------


def currency_groups(page: str) -> dict[str, list[str]]:
    """The Add form's currency list: each group's label and its option values, in order."""
    select = re.search(r'<select name="currency".*?</select>', page, re.S).group(0)
    groups = re.findall(r'<optgroup label="([^"]+)">(.*?)</optgroup>', select, re.S)
    return {label: re.findall(r'value="([^"]*)"', options) for label, options in groups}


def selected_currency(page: str) -> str:
    select = re.search(r'<select name="currency".*?</select>', page, re.S).group(0)
    found = re.search(r'<option value="([^"]*)"[^>]*selected', select)
    return found.group(1) if found else ""


@pytest.mark.parametrize(("country", "currency"), [("FR", "eur"), ("US", "usd"), ("CH", "chf")])
def test_the_currency_starts_as_the_accounts_country_currency(
    editor, sites, connection, stripe, country, currency
):
    connection.country = country
    connection.save()
    page = editor.get(f"{ADD}?site={sites[0].pk}").content.decode()
    assert selected_currency(page) == currency
    assert currency_groups(page)["Most used"][0] == currency


def test_the_currencies_billed_in_come_first_then_the_rest_by_name(
    editor, sites, connection, stripe
):
    add(editor, sites[0], currency="jpy", amount="5000", email="a@example.com")
    add(editor, sites[0], currency="jpy", amount="6000", email="b@example.com")
    add(editor, sites[0], currency="sek", amount="100", email="c@example.com")
    add(editor, sites[0], currency="usd", amount="10", email="d@example.com")
    groups = currency_groups(editor.get(f"{ADD}?site={sites[0].pk}").content.decode())
    # The account's (France: euro), then this site's by use, then the usual ones.
    assert groups["Most used"][:5] == ["eur", "jpy", "sek", "usd", "gbp"]
    everything = groups["All currencies"]
    assert not set(everything) & set(groups["Most used"])
    assert len(everything) + len(groups["Most used"]) == len(money.CURRENCIES)  # all of Stripe's
    assert everything[:3] == ["afn", "all", "dzd"]  # Afghan Afghani, Albanian Lek, Algerian Dinar


def test_in_french_the_rest_is_sorted_by_the_french_names(client, sites, connection, stripe):
    user = make_user("editrice", language="fr")
    grant_billing(user, sites[0])
    client.force_login(user)
    page = client.get(f"{ADD}?site={sites[0].pk}").content.decode()
    groups = currency_groups(page)
    assert list(groups) == ["Les plus utilisées", "Toutes les devises"]
    # afghani, ariary, baht... (by the French names, not by the codes AFN, MGA, THB)
    assert groups["Toutes les devises"][:3] == ["afn", "mga", "thb"]
    assert "Euro (EUR)" in page


def test_the_requests_page_colours_its_status_as_the_listing_does(
    editor, sites, connection, stripe
):
    add(editor, sites[0])
    request = BillingRequest.objects.get()
    delete(editor, request)
    page = editor.get(reverse("wagtail_client_billing_requests:inspect", args=[request.pk]))
    assert "w-status w-status--label wcb-status wcb-status--deleted" in page.content.decode()
