"""The agency's "Stripe events" screens: listing, inspect, reprocess, and who may see them."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.test_webhooks import (
    account_updated_event,
    handlers,  # noqa: F401  (fixture)
    link,
    make_event,
    onboarding_entries,
)
from wagtail_client_billing.models import StripeConnection, WebhookEvent

STATUS = WebhookEvent.Status
NS = "wagtail_client_billing_events"
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "handlers.py", line 3, in apply\n'
    "ConnectionError: the database of a third party is down\n"
)


def url(name: str, *args: Any) -> str:
    return reverse(f"{NS}:{name}", args=args)


def store(event: dict[str, Any], **fields: Any) -> WebhookEvent:
    return WebhookEvent.objects.create(
        stripe_id=event["id"],
        type=event["type"],
        account=event.get("account") or "",
        livemode=event["livemode"],
        payload=event,
        **fields,
    )


def messages_of(response) -> list[str]:
    return [str(message).strip() for message in response.context["messages"]]


def csrf_token(html: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


def user_with(username: str, *permissions: str, superuser: bool = False):
    User = get_user_model()
    if superuser:
        return User.objects.create_superuser(username, f"{username}@example.com", "pw")
    user = User.objects.create_user(username, f"{username}@example.com", "pw")
    group = Group.objects.create(name=f"{username} group")
    for permission in ("wagtailadmin.access_admin", *permissions):
        app_label, codename = permission.split(".")
        group.permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    user.groups.add(group)
    return user


@pytest.fixture
def connection(db) -> StripeConnection:
    return link()


@pytest.fixture
def events(connection) -> dict[str, WebhookEvent]:
    now = timezone.now()
    return {
        "processed": store(account_updated_event(), status=STATUS.PROCESSED, processed_at=now),
        "ignored": store(
            make_event("invoice.paid", {"id": "in_1"}, account="acct_other"),
            status=STATUS.IGNORED,
            note="no handler",
            processed_at=now,
        ),
        "failed": store(account_updated_event(), status=STATUS.FAILED, attempts=1, error=TRACEBACK),
        "live": store(
            make_event("invoice.paid", {"id": "in_2"}, livemode=True, account="acct_live"),
            status=STATUS.IGNORED,
            note="no account is linked in live mode",
        ),
    }


@pytest.fixture(params=["superuser", "agency permission"])
def agency_client(request, db) -> Client:
    """An agency admin (a superuser, or a holder of the agency permission), CSRF enforced."""
    if request.param == "superuser":
        user = user_with("agency", superuser=True)
    else:
        user = user_with("accountant", "wagtail_client_billing.manage_agency_billing")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


@pytest.fixture
def editor_client(db) -> Client:
    """A site editor: may use the admin, but is not an agency admin."""
    client = Client()
    client.force_login(user_with("editor", "wagtailcore.add_collection"))
    return client


# Listing and inspect ---------------------------------------------------------------------


def test_the_listing_shows_every_event_with_its_columns(agency_client, events):
    response = agency_client.get(url("index"))

    assert response.status_code == 200
    html = response.content.decode()
    for heading in ("Type", "Account", "Mode", "Status", "Received", "Processed", "Error"):
        assert f">{heading}<" in html or heading in html
    assert "account.updated" in html and "invoice.paid" in html
    assert "acct_agency" in html and "acct_live" in html
    assert "Test mode" in html and "Live mode" in html
    assert "Failed" in html and "Ignored" in html and "Processed" in html
    # The error column shows the exception, not the whole traceback.
    assert "ConnectionError: the database of a third party is down" in html
    assert "handlers.py" not in html
    # Reprocess is offered for the failed event only.
    assert html.count(url("reprocess", events["failed"].pk)) == 1
    assert url("reprocess", events["processed"].pk) not in html
    # View-only: no add button.
    assert url("add") not in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status": "failed"}, ["failed"]),
        ({"status": ["ignored", "processed"]}, ["processed", "ignored", "live"]),
        ({"mode": "live"}, ["live"]),
        ({"mode": "test", "type": "account.updated"}, ["processed", "failed"]),
        ({"account": "ACCT_OTHER"}, ["ignored"]),
        ({"q": "acct_live"}, ["live"]),
    ],
)
def test_the_listing_filters(agency_client, events, query, expected):
    response = agency_client.get(url("index_results"), query)
    assert response.status_code == 200
    shown = {event.pk for event in response.context["object_list"]}
    assert shown == {events[name].pk for name in expected}


def test_inspect_shows_the_payload_and_the_error(agency_client, events):
    failed = events["failed"]

    response = agency_client.get(url("inspect", failed.pk))

    assert response.status_code == 200
    html = response.content.decode()
    assert failed.stripe_id in html
    assert "Test mode" in html
    assert "&quot;charges_enabled&quot;: true" in html  # the payload, pretty-printed
    assert "File &quot;handlers.py&quot;, line 3" in html  # the whole traceback
    assert url("reprocess", failed.pk) in html


def test_inspect_offers_no_reprocess_for_an_applied_event(agency_client, events):
    html = agency_client.get(url("inspect", events["processed"].pk)).content.decode()
    assert url("reprocess", events["processed"].pk) not in html


def test_the_model_permissions_are_not_offered_in_the_groups_editor(agency_client, db):
    response = agency_client.get(reverse("wagtailusers_groups:add"))
    if response.status_code == 403:  # the permission holder may not edit groups
        return
    assert "webhookevent" not in response.content.decode()


# Reprocess ---------------------------------------------------------------------------


def test_reprocess_asks_for_confirmation_then_applies_the_event(agency_client, events):
    failed, connection = events["failed"], StripeConnection.objects.get()

    confirmation = agency_client.get(url("reprocess", failed.pk))
    assert confirmation.status_code == 200
    assert "Yes, reprocess" in confirmation.content.decode()
    failed.refresh_from_db()
    assert failed.status == STATUS.FAILED  # a GET changes nothing

    response = agency_client.post(
        url("reprocess", failed.pk),
        {"csrfmiddlewaretoken": csrf_token(confirmation.content.decode())},
        follow=True,
    )

    assert response.redirect_chain[0] == (url("inspect", failed.pk), 302)
    assert messages_of(response) == ["The event was reprocessed successfully."]
    failed.refresh_from_db()
    assert (failed.status, failed.attempts, failed.error) == (STATUS.PROCESSED, 2, "")
    connection.refresh_from_db()
    assert connection.charges_enabled
    assert onboarding_entries() == 1


def test_reprocess_reports_a_new_failure(agency_client, events, handlers):  # noqa: F811
    def still_broken(event, payload):
        raise ConnectionError("still down")

    handlers["account.updated"] = still_broken
    failed = events["failed"]
    token = csrf_token(agency_client.get(url("reprocess", failed.pk)).content.decode())

    response = agency_client.post(
        url("reprocess", failed.pk), {"csrfmiddlewaretoken": token}, follow=True
    )

    assert messages_of(response) == ["Reprocessing failed again: ConnectionError: still down"]
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == (STATUS.FAILED, 2)
    assert "still_broken" in failed.error


def test_reprocess_reports_an_event_that_is_now_ignored(agency_client, events):
    StripeConnection.objects.update(unlinked_at=timezone.now())
    failed = events["failed"]
    token = csrf_token(agency_client.get(url("reprocess", failed.pk)).content.decode())

    response = agency_client.post(
        url("reprocess", failed.pk), {"csrfmiddlewaretoken": token}, follow=True
    )

    assert messages_of(response) == ["The event was not applied: account acct_agency was unlinked"]
    failed.refresh_from_db()
    assert failed.status == STATUS.IGNORED


def test_only_failed_events_can_be_reprocessed(agency_client, events):
    processed = events["processed"]
    agency_client.get(url("inspect", processed.pk))
    token = agency_client.cookies["csrftoken"].value

    response = agency_client.post(
        url("reprocess", processed.pk), {"csrfmiddlewaretoken": token}, follow=True
    )

    assert response.redirect_chain[0] == (url("inspect", processed.pk), 302)
    assert messages_of(response) == [
        "Only failed events can be reprocessed; this one is processed."
    ]
    before = processed.attempts
    processed.refresh_from_db()
    assert (processed.status, processed.attempts) == (STATUS.PROCESSED, before)
    assert onboarding_entries() == 0


def test_reprocess_needs_the_csrf_token(agency_client, events):
    response = agency_client.post(url("reprocess", events["failed"].pk))
    assert response.status_code == 403
    events["failed"].refresh_from_db()
    assert events["failed"].status == STATUS.FAILED


def test_reprocess_of_a_missing_event_is_404(agency_client, events):
    assert agency_client.get(url("reprocess", 999999)).status_code == 404


# Everyone else -------------------------------------------------------------------------


def every_url(event: WebhookEvent) -> list[str]:
    return [
        url("index"),
        url("index_results"),
        url("add"),
        url("inspect", event.pk),
        url("reprocess", event.pk),
        url("reprocess", 999999),
        url("edit", event.pk),
        url("delete", event.pk),
        url("history", event.pk),
        url("history_results", event.pk),
        url("usage", event.pk),
    ]


def test_an_editor_gets_403_on_every_url(editor_client, events):
    failed = events["failed"]
    for address in every_url(failed):
        assert editor_client.get(address).status_code == 403, address
        assert editor_client.post(address).status_code == 403, address
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == (STATUS.FAILED, 1)
    assert WebhookEvent.objects.count() == len(events)


def test_agency_admins_cannot_add_change_or_delete_events(agency_client, events):
    event = events["processed"]
    agency_client.get(url("index"))
    token = agency_client.cookies["csrftoken"].value
    for address in (url("add"), url("edit", event.pk), url("delete", event.pk)):
        # Wagtail's own answer to PermissionDenied: back to the dashboard with a message.
        for method in (agency_client.get, agency_client.post):
            response = method(address, {"csrfmiddlewaretoken": token})
            assert (response.status_code, response["Location"]) == (302, "/admin/"), address
    assert WebhookEvent.objects.filter(pk=event.pk, status=STATUS.PROCESSED).exists()
    assert WebhookEvent.objects.count() == len(events)


def test_anonymous_visitors_are_sent_to_the_login_page(client, events):
    response = client.get(url("inspect", events["failed"].pk))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_the_menu_entry_is_shown_to_agency_admins_only(agency_client, editor_client, events):
    assert url("index") in agency_client.get(reverse("wagtailadmin_home")).content.decode()
    assert url("index") not in editor_client.get(reverse("wagtailadmin_home")).content.decode()
