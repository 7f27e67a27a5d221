"""Every page and email in French, as a French agency, its editors and its clients see them."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.core import mail as outbox
from django.urls import reverse
from django.utils import timezone, translation
from wagtail.users.models import UserProfile

from tests.factories import grant_billing, grant_email_settings, make_user, request_details
from tests.test_billing_requests import CommittingClient, add, deliver, last_event, make_french
from tests.test_translations import PO_FILE, entries
from wagtail_client_billing import billing
from wagtail_client_billing.billing import subscriptions
from wagtail_client_billing.forms import ConnectForm
from wagtail_client_billing.mail import outbox as mail_outbox
from wagtail_client_billing.mail.queue import queue_billing_email
from wagtail_client_billing.models import BillingRequest, WebhookEvent

pytestmark = pytest.mark.django_db

Status = BillingRequest.Status


@pytest.fixture
def web(client, django_capture_on_commit_callbacks):
    """The test client, running on-commit callbacks (the emails) as a real commit would."""
    return CommittingClient(client, django_capture_on_commit_callbacks)


def requests_url(name: str, *args) -> str:
    return reverse(f"wagtail_client_billing_requests:{name}", args=args)


def text_of(page: str) -> str:
    """What a reader sees: the text, and the labels and tooltips in attributes; not the
    raw data shown as code (Stripe's payload, event types, ids)."""
    page = re.sub(r"(?is)<(script|style|pre|code|textarea)\b.*?</\1>", " ", page)
    said = re.findall(
        r'\b(?:aria-label|title|placeholder|alt|data-w-tooltip-content-value)="([^"]*)"', page
    )
    page = re.sub(r"(?s)<[^>]+>", " ", page)
    return re.sub(r"\s+", " ", html.unescape(" ".join([page, *said])))


def english_fragments() -> set[str]:
    """Pieces of our English strings that a French page must never show.

    Built from the English msgids of our catalogue, so a string added later is covered
    the day it is added: each msgid whose French differs, cut at its placeholders, keeping
    the pieces of two words or more (a single word such as "Description", "Type" or
    "Stripe" is French too). The placeholders' values (a site's name, an amount) are the
    page's data, not its wording.
    """
    fragments = set()
    for (_context, msgid), french in entries(PO_FILE.read_text()).items():
        msgid = msgid.replace('\\"', '"').replace("\\n", " ")
        if french == msgid:
            continue
        pieces = re.split(r"%\(\w+\)[sd]|%[sd]|\{\{[^}]*\}\}|<[^>]*>|\\n", msgid)
        for piece in pieces:
            piece = piece.strip(" .,:;()·—-\"'")
            if len(piece.split()) >= 2 and len(piece) >= 10:
                fragments.add(piece)
    return fragments


# Words of English prose never written in French: they catch a string no one marked for
# translation (it is in no catalogue, so the msgids above cannot know it).
ENGLISH_WORDS = re.compile(r"\b(the|and|with|your|been|was|were|has|have|will|this|not)\b")


def english_in(text: str) -> list[str]:
    found = [fragment for fragment in sorted(english_fragments()) if fragment in text]
    found += [match.group(0) for match in ENGLISH_WORDS.finditer(text)]
    return found


@pytest.fixture
def french_world(web, sites, connection, stripe, settings):
    """A French agency (a project in French, its admin in Paris), a French editor and
    French client sites, with requests in every state: paid (a subscription), pending,
    expired, deleted, and one whose email was not sent because it had ended."""
    settings.LANGUAGE_CODE = "fr"  # the agency's notifications are in the project's language
    for site in sites:
        make_french(site)
    boss = make_user("patronne", superuser=True, language="fr")
    profile = UserProfile.get_for_user(boss)
    profile.current_time_zone = "Europe/Paris"
    profile.save()
    editor = make_user("redacteur", language="fr")
    grant_billing(editor, sites[0])
    grant_email_settings(editor, sites[0])
    details = {"description": "Entretien du site", "email": "client@exemple.fr"}

    web.force_login(editor)
    assert add(web, sites[0], billing_type="monthly", **details).status_code == 302
    paid = BillingRequest.objects.get()
    stripe.complete_checkout(paid.checkout_session_id)
    assert deliver(web, last_event(stripe, "checkout.session.completed")).status_code == 200
    # A one-time payment, partly refunded by the agency, then disputed by the client.
    assert add(web, sites[0], **details).status_code == 302
    refunded = BillingRequest.objects.latest("pk")
    stripe.complete_checkout(refunded.checkout_session_id)
    assert deliver(web, last_event(stripe, "checkout.session.completed")).status_code == 200
    refunded.refresh_from_db()
    billing.refund(refunded, amount=1000, reason="requested_by_customer", key="fr", user=boss)
    stripe.create_dispute(refunded.payment_intent_id)
    assert deliver(web, last_event(stripe, "charge.dispute.created")).status_code == 200
    make = billing.create_request
    pending = make(site=sites[0], details=request_details(**details, amount=1990))
    expired = make(site=sites[0], details=request_details(**details, amount=2990))
    deleted = make(site=sites[0], details=request_details(**details, amount=3990))
    ended = make(site=sites[0], details=request_details(**details, amount=5990))
    billing.delete_request(deleted)
    billing.expire_overdue(now=timezone.now() + timedelta(days=2))
    pending.refresh_from_db()
    BillingRequest.objects.filter(pk=pending.pk).update(
        status=Status.PENDING, expired_at=None, expires_at=timezone.now() + timedelta(hours=5)
    )
    BillingRequest.objects.filter(pk__in=[expired.pk, ended.pk]).update(status=Status.EXPIRED)
    # Last (Stripe's clock moves on a month): the subscription's renewal fails (the client
    # is told), then the agency cancels it.
    paid.refresh_from_db()
    stripe.fail_renewals(paid.customer_id)
    stripe.advance_clock(32 * 24 * 3600)
    for event in stripe.events("customer.subscription.updated"):
        assert deliver(web, event).status_code == 200
    paid.refresh_from_db()
    subscriptions.cancel(paid, at_period_end=True, user=boss)
    queue_billing_email(ended)  # queued, then found ended when its turn comes
    mail_outbox.send_pending_emails(sites[0].pk)
    requests = {"paid": paid, "pending": pending, "expired": expired, "deleted": deleted}
    requests["ended"], requests["refunded"] = ended, refunded
    for request in requests.values():
        request.refresh_from_db()
    return {"boss": boss, "editor": editor, "requests": requests}


def admin_pages(world) -> dict[str, list[str]]:
    """The admin pages each user opens."""
    requests = world["requests"]
    listing = requests_url("index") + f"?site={requests['paid'].site_id}"
    event = WebhookEvent.objects.first()
    per_request = [
        url
        for request in requests.values()
        for url in (requests_url("inspect", request.pk), requests_url("history", request.pk))
    ]
    editor_pages = [
        "/admin/",
        listing,
        listing + "&status=deleted",
        requests_url("add") + f"?site={requests['paid'].site_id}",
        requests_url("email_settings"),
        requests_url("renew", requests["expired"].pk),
        requests_url("delete", requests["pending"].pk),
        *per_request,
    ]
    agency_pages = [
        *editor_pages,
        requests_url("overview"),
        requests_url("refund", requests["refunded"].pk),
        requests_url("cancel_subscription", requests["paid"].pk),
        reverse("wagtail_client_billing_agency:index"),
        reverse("wagtail_client_billing_agency:connect"),
        reverse("wagtail_client_billing_agency:unlink", args=["test"]),
        reverse("wagtail_client_billing_events:index"),
        reverse("wagtail_client_billing_events:inspect", args=[event.pk]),
    ]
    return {"redacteur": editor_pages, "patronne": agency_pages}


def test_no_english_on_any_french_page_or_email(web, french_world):
    found = {}
    for username, urls in admin_pages(french_world).items():
        web.force_login(french_world["boss" if username == "patronne" else "editor"])
        for url in urls:
            response = web.get(url)
            assert response.status_code == 200, (username, url, response.status_code)
            english = english_in(text_of(response.content.decode()))
            if english:
                found[f"{username} {url}"] = english
    web.logout()
    for name, request in french_world["requests"].items():
        response = web.get(request.get_payment_path(), HTTP_HOST="acme.test")
        assert response.status_code in (200, 302, 410), name
        if response.status_code != 302:  # pending: off to Stripe's checkout
            english = english_in(text_of(response.content.decode()))
            if english:
                found[f"client {name}"] = english
    pending = french_world["requests"]["pending"]
    for state in ("processing", "failed"):  # a delayed payment: our page, not Checkout's
        BillingRequest.objects.filter(pk=pending.pk).update(payment_state=state)
        response = web.get(pending.get_payment_path(), HTTP_HOST="acme.test")
        assert response.status_code == 200, state
        found[f"client {state}"] = english_in(text_of(response.content.decode()))
    response = web.get(pending.get_manage_url(), HTTP_HOST="acme.test")  # no subscription
    assert response.status_code == 410
    found["client manage, nothing to manage"] = english_in(text_of(response.content.decode()))
    response = web.get("/billing/pay/no-such-link/", HTTP_HOST="acme.test")
    found.update({"client unknown link": english_in(text_of(response.content.decode()))})
    assert outbox.outbox, "the French world sends emails"
    subjects = [message.subject for message in outbox.outbox]
    assert any(s.startswith("Remboursé 10,00") for s in subjects), subjects
    assert any(s.startswith("Paiement contesté") for s in subjects), subjects
    assert any("n'a pas abouti" in s for s in subjects), subjects  # the card to update
    assert any(s.startswith("Votre abonnement à") for s in subjects), subjects  # canceled
    for message in outbox.outbox:
        alternatives = getattr(message, "alternatives", [])
        bodies = [message.subject, message.body, *(body for body, _ in alternatives)]
        english = english_in(text_of(" ".join(bodies)))
        if english:
            found[f"email to {message.to}: {message.subject}"] = english
    assert {page: words for page, words in found.items() if words} == {}


def test_the_english_detector_finds_english(web, french_world):
    """The check above is only worth something if it sees English where there is some."""
    web.force_login(french_world["editor"])
    UserProfile.objects.filter(user=french_world["editor"]).update(preferred_language="en")
    page = web.get(requests_url("inspect", french_world["requests"]["ended"].pk))
    assert "Not sent: the request had ended" in english_in(text_of(page.content.decode()))


def test_an_email_not_sent_says_why_in_the_readers_language(web, french_world):
    web.force_login(french_world["editor"])
    page = web.get(requests_url("inspect", french_world["requests"]["ended"].pk))
    said = text_of(page.content.decode())
    assert "Non envoyé" in said and "la demande était terminée" in said, said


def test_just_now_is_said_in_french_not_0_minutes(web, french_world):
    web.force_login(french_world["boss"])
    paid = french_world["requests"]["paid"]
    listing = requests_url("index") + f"?site={paid.site_id}"
    for url in (listing, requests_url("history", paid.pk)):
        said = text_of(web.get(url).content.decode())
        assert "À l'instant" in said, url
        assert "0 minute" not in said, url


def test_a_subscription_status_agrees_in_french(web, french_world):
    web.force_login(french_world["boss"])
    paid = french_world["requests"]["paid"]
    listing = requests_url("index") + f"?site={paid.site_id}"
    said = text_of(web.get(listing).content.decode())
    # The world's subscription is past due (its renewal failed): an adjective of "abonnement".
    assert "Payé · en retard de paiement" in said
    said = text_of(web.get(requests_url("inspect", paid.pk)).content.decode())
    assert "Statut en retard de paiement" in said, said


def test_countries_are_sorted_as_french_readers_sort_them(db):
    with translation.override("fr"):
        names = [str(name) for code, name in ConnectForm().fields["country"].choices if code]
    united_states = next(name for name in names if name.startswith("États-Unis"))
    assert names.index("Estonie") < names.index(united_states) < names.index("Finlande"), names


def test_webhook_secrets_not_configured_agree_in_the_plural(web, french_world, settings):
    settings.WAGTAIL_CLIENT_BILLING = {
        **settings.WAGTAIL_CLIENT_BILLING,
        "STRIPE_TEST_WEBHOOK_SECRET": "",
    }
    web.force_login(french_world["boss"])
    said = text_of(web.get(reverse("wagtail_client_billing_agency:index")).content.decode())
    assert "Secrets de webhook Non configurés" in said, said


def test_the_event_page_and_the_history_agree_on_the_time_in_paris(web, french_world):
    web.force_login(french_world["boss"])
    paid = french_world["requests"]["paid"]
    session = paid.checkout_session_id
    event = WebhookEvent.objects.get(
        type="checkout.session.completed", payload__data__object__id=session
    )
    paris = timezone.localtime(event.received_at, timezone=_paris())
    expected = paris.strftime("%H:%M")
    page = web.get(reverse("wagtail_client_billing_events:inspect", args=[event.pk]))
    said = text_of(page.content.decode())
    received = re.search(r"Reçu (.+?\d\d:\d\d)", said).group(1)
    assert received.endswith(expected), (received, expected)
    history = text_of(web.get(requests_url("history", paid.pk)).content.decode())
    inspect = text_of(web.get(requests_url("inspect", paid.pk)).content.decode())
    assert f"Événements Stripe {received} ·" in inspect, inspect
    assert expected in history


def _paris():
    import zoneinfo

    return zoneinfo.ZoneInfo("Europe/Paris")
