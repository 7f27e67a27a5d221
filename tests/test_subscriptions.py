"""Subscriptions after Paid: kept true by Stripe's webhooks on the simulator's moved clock
(renewals, a failed renewal, the client fixing the card in the customer portal), canceled
by the agency now or at the period's end, counted as recurring revenue."""

from __future__ import annotations

import datetime

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from wagtail.models import ModelLogEntry

from tests.factories import grant_billing, make_user
from tests.test_billing_requests import CommittingClient, add, deliver
from wagtail_client_billing import billing, stripe_api
from wagtail_client_billing.billing import subscriptions
from wagtail_client_billing.models import BillingRequest, OutgoingEmail

pytestmark = pytest.mark.django_db

Kind = OutgoingEmail.Kind
DAY = 24 * 3600


@pytest.fixture
def agency(django_capture_on_commit_callbacks):
    client = Client()
    client.force_login(make_user("agency-admin", superuser=True))
    return CommittingClient(client, django_capture_on_commit_callbacks)


@pytest.fixture
def editor(sites, django_capture_on_commit_callbacks):
    client = Client()
    user = make_user("acme-editor")
    grant_billing(user, sites[0])
    client.force_login(user)
    return CommittingClient(client, django_capture_on_commit_callbacks)


class Events:
    """Delivers the simulator's events to our webhook, each once, in Stripe's order."""

    def __init__(self, client, stripe) -> None:
        self.client, self.stripe = client, stripe
        self.seen: set[str] = set()

    def deliver_new(self) -> list[str]:
        delivered = []
        for event in self.stripe.events():
            if event["id"] not in self.seen:
                self.seen.add(event["id"])
                assert deliver(self.client, event).status_code == 200
                delivered.append(event["type"])
        return delivered


def subscribed(agency, sites, stripe, billing_type="monthly", **changes) -> BillingRequest:
    """A monthly (or yearly) request of Acme, paid through Checkout and its webhooks."""
    add(agency, sites[0], billing_type=billing_type, **changes)
    request = BillingRequest.objects.latest("pk")
    stripe.complete_checkout(request.checkout_session_id)
    Events(agency, stripe).deliver_new()
    request.refresh_from_db()
    assert request.status == BillingRequest.Status.PAID
    return request


def inspect(client, request) -> str:
    url = reverse("wagtail_client_billing_requests:inspect", args=[request.pk])
    return client.get(url).content.decode()


def cancel_url(request) -> str:
    return reverse("wagtail_client_billing_requests:cancel_subscription", args=[request.pk])


def at_stripe(request):
    return stripe_api.get_client("test").v1.subscriptions.retrieve(
        request.subscription_id, options={"stripe_account": request.account_id}
    )


def test_a_paid_subscription_shows_its_next_payment_and_the_clients_page(
    agency, sites, connection, stripe
):
    request = subscribed(agency, sites, stripe)
    assert request.customer_id.startswith("cus_") and request.subscription_status == "active"
    end = subscriptions.period_end(at_stripe(request))
    assert request.current_period_end == datetime.datetime.fromtimestamp(end, datetime.UTC)
    page = inspect(agency, request)
    assert "Next payment" in page and request.get_manage_url() in page
    assert "Cancel subscription" in page


def test_renewals_on_the_moved_clock_move_the_next_payment(agency, sites, connection, stripe):
    request = subscribed(agency, sites, stripe)
    events = Events(agency, stripe)
    events.deliver_new()
    first_end = request.current_period_end
    stripe.advance_clock(32 * DAY)
    delivered = events.deliver_new()
    assert "invoice.paid" in delivered and "customer.subscription.updated" in delivered
    request.refresh_from_db()
    assert request.current_period_end > first_end + datetime.timedelta(days=27)
    assert request.subscription_status == "active"


def test_a_failed_renewal_tells_the_agency_and_the_client_who_fixes_the_card(
    agency, sites, connection, stripe
):
    request = subscribed(agency, sites, stripe)
    events = Events(agency, stripe)
    events.deliver_new()
    stripe.fail_renewals(request.customer_id)
    stripe.advance_clock(32 * DAY)
    assert "invoice.payment_failed" in events.deliver_new()
    request.refresh_from_db()
    assert request.subscription_status == "past_due"
    assert OutgoingEmail.objects.filter(kind=Kind.PAYMENT_FAILED).count() == 1
    (card,) = OutgoingEmail.objects.filter(kind=Kind.CARD_FAILED)
    assert card.recipient == "client@example.com" and card.status == OutgoingEmail.Status.SENT
    (to_client,) = [
        m for m in mail.outbox if m.to == ["client@example.com"] and "did not go" in m.subject
    ]
    assert request.get_manage_url() in to_client.body
    assert (
        "at risk"
        in agency.get(reverse("wagtail_client_billing_requests:overview")).content.decode()
    )

    # The client opens the link: Stripe's customer portal, on the connected account.
    response = agency.get(request.get_manage_url(), HTTP_HOST="acme.test")
    assert response.status_code == 302 and response["Location"].startswith(stripe.url)
    stripe.update_payment_method(request.customer_id)  # the portal's button
    assert "invoice.paid" in events.deliver_new()
    request.refresh_from_db()
    assert request.subscription_status == "active"
    # Stripe's further updates of the same subscription tell no one again.
    assert OutgoingEmail.objects.filter(kind=Kind.CARD_FAILED).count() == 1


def test_cancel_at_the_period_end_then_it_ends_on_the_clock(agency, sites, connection, stripe):
    request = subscribed(agency, sites, stripe)
    events = Events(agency, stripe)
    events.deliver_new()
    page = agency.get(cancel_url(request)).content.decode()
    assert "At the end of the period already paid" in page
    response = agency.post(cancel_url(request), {"when": "period_end"}, follow=True)
    assert "The subscription ends on" in response.content.decode()
    request.refresh_from_db()
    assert request.cancel_at_period_end and request.subscription_status == "active"
    assert at_stripe(request).cancel_at_period_end is True
    assert "Ends on" in inspect(agency, request)
    entry = ModelLogEntry.objects.get(action=billing.ACTION_SUBSCRIPTION_CANCELED)
    assert entry.data["when"] == "period_end" and entry.user.username == "agency-admin"
    (told,) = [m for m in mail.outbox if "is canceled" in m.subject]
    assert told.to == ["client@example.com"] and "stays active until" in told.body

    events.deliver_new()
    stripe.advance_clock(32 * DAY)
    assert "customer.subscription.deleted" in events.deliver_new()
    request.refresh_from_db()
    assert request.subscription_status == "canceled"
    assert "Cancel subscription" not in inspect(agency, request)
    # A late copy of an older update does not bring it back to life.
    stale = dict(stripe.events("customer.subscription.updated")[0], id="evt_stale_copy")
    assert deliver(agency, stale).status_code == 200
    request.refresh_from_db()
    assert request.subscription_status == "canceled"


def test_cancel_now_and_a_second_cancel_says_so(agency, sites, connection, stripe):
    request = subscribed(agency, sites, stripe)
    response = agency.post(cancel_url(request), {"when": "now"}, follow=True)
    assert "The subscription is canceled" in response.content.decode()
    request.refresh_from_db()
    assert request.subscription_status == "canceled"
    assert at_stripe(request).status == "canceled"
    response = agency.post(cancel_url(request), {"when": "now"}, follow=True)
    assert "already canceled" in response.content.decode()
    assert ModelLogEntry.objects.filter(action=billing.ACTION_SUBSCRIPTION_CANCELED).count() == 1


def test_stripe_down_during_a_cancel_changes_nothing(agency, sites, connection, stripe):
    request = subscribed(agency, sites, stripe)
    stripe.fail_next("POST", f"/v1/subscriptions/{request.subscription_id}", status=500)
    response = agency.post(cancel_url(request), {"when": "period_end"}, follow=True)
    assert "Stripe had a problem" in response.content.decode()
    request.refresh_from_db()
    assert not request.cancel_at_period_end
    assert at_stripe(request).cancel_at_period_end is False
    assert not ModelLogEntry.objects.filter(action=billing.ACTION_SUBSCRIPTION_CANCELED).exists()


def test_site_editors_cannot_cancel(editor, agency, sites, connection, stripe):
    request = subscribed(agency, sites, stripe)
    assert editor.get(cancel_url(request)).status_code == 403
    assert editor.post(cancel_url(request), {"when": "now"}).status_code == 403
    assert cancel_url(request) not in inspect(editor, request)
    assert at_stripe(request).status == "active"


def test_the_clients_subscription_link_says_why_when_it_cannot_open(
    agency, sites, connection, stripe
):
    add(agency, sites[0])
    pending = BillingRequest.objects.get()
    response = agency.get(pending.get_manage_url(), HTTP_HOST="acme.test")
    assert response.status_code == 410 and "no subscription to manage" in response.content.decode()
    assert agency.get("/billing/manage/nope/x/", HTTP_HOST="acme.test").status_code == 404

    request = subscribed(agency, sites, stripe, email="monthly@example.com")
    stripe.fail_next("POST", "/v1/billing_portal/sessions", status=500)
    response = agency.get(request.get_manage_url(), HTTP_HOST="acme.test")
    assert response.status_code == 503 and "try again" in response.content.decode()


def test_recurring_revenue_counts_a_year_as_twelve_months(agency, sites, connection, stripe):
    subscribed(agency, sites, stripe)  # EUR 49.90 a month
    subscribed(agency, sites, stripe, billing_type="yearly", amount="120", email="y@example.com")
    page = agency.get(reverse("wagtail_client_billing_requests:overview")).content.decode()
    box = page[page.index('data-total="recurring"') :][:800]
    assert "€59.90 / month" in box and "2 subscriptions" in box
    home = agency.get(reverse("wagtailadmin_home")).content.decode()
    assert "€59.90 / month" in home


def test_the_history_says_how_it_was_canceled(agency, sites, connection, stripe):
    request = subscribed(agency, sites, stripe)
    agency.post(cancel_url(request), {"when": "period_end"})
    history = reverse("wagtail_client_billing_requests:history", args=[request.pk])
    page = agency.get(history).content.decode()
    assert "Subscription canceled at the end of the period already paid" in page


def test_a_subscriptions_latest_payment_is_refunded(agency, sites, connection, stripe):
    from wagtail_client_billing.models import Refund

    request = subscribed(agency, sites, stripe)
    events = Events(agency, stripe)
    stripe.advance_clock(32 * DAY)  # a renewal: the latest payment is the second invoice
    events.deliver_new()
    latest = request.invoices.filter(status="paid").first()
    assert latest.billing_reason == "subscription_cycle"
    refund_url = reverse("wagtail_client_billing_requests:refund", args=[request.pk])
    data = {"amount": "10", "reason": "requested_by_customer", "nonce": "sub-refund"}
    response = agency.post(refund_url, data, follow=True)
    assert "€10.00 refunded." in response.content.decode()
    latest.refresh_from_db()
    refund = Refund.objects.get()
    assert refund.payment_intent_id == latest.payment_intent_id != ""  # asked of Stripe once
    api = stripe_api.get_client("test").v1
    made = api.refunds.retrieve(refund.stripe_id, options={"stripe_account": request.account_id})
    assert made.payment_intent == latest.payment_intent_id and made.amount == 1000
    request.refresh_from_db()
    assert request.get_status_label() == "Partially refunded"

    # A refund of that renewal made in Stripe's Dashboard finds the request by its payment.
    stripe.refund(latest.payment_intent_id, amount=500)
    events.deliver_new()
    request.refresh_from_db()
    assert request.refunded_amount == 1500 and Refund.objects.count() == 2


def test_the_clients_paid_page_links_their_subscription(agency, sites, connection, stripe):
    request = subscribed(agency, sites, stripe)
    page = agency.get(request.get_payment_path(), HTTP_HOST="acme.test").content.decode()
    assert "Manage your subscription" in page and request.get_manage_url() in page
    agency.post(cancel_url(request), {"when": "now"})
    page = agency.get(request.get_payment_path(), HTTP_HOST="acme.test").content.decode()
    assert "Manage your subscription" not in page


def test_the_pay_links_token_alone_does_not_open_the_clients_portal(
    editor, agency, sites, connection, stripe
):
    request = subscribed(agency, sites, stripe)
    # An editor of the site sees the pay link (its token), not the subscription link.
    page = inspect(editor, request)
    assert request.token in page and request.get_manage_url() not in page
    assert request.manage_key not in page
    for guess in (request.token, "0" * 40, request.token[:40]):
        url = f"/billing/manage/{request.token}/{guess}/"
        assert editor.get(url, HTTP_HOST="acme.test").status_code == 404
    assert request.get_manage_url() in inspect(agency, request)
    response = agency.get(request.get_manage_url(), HTTP_HOST="acme.test")
    assert response.status_code == 302


def test_a_secret_key_rotation_keeps_the_emailed_links(agency, sites, connection, stripe, settings):
    request = subscribed(agency, sites, stripe)
    emailed = request.get_manage_url()
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-" + "x" * 40
    assert request.get_manage_url() != emailed
    assert agency.get(emailed, HTTP_HOST="acme.test").status_code == 302
    settings.SECRET_KEY_FALLBACKS = []
    assert agency.get(emailed, HTTP_HOST="acme.test").status_code == 404


def test_a_failed_renewals_two_updates_in_either_order_end_past_due(
    agency, sites, connection, stripe
):
    request = subscribed(agency, sites, stripe)
    Events(agency, stripe).deliver_new()
    assert subscriptions.reconcile_overdue() == 1  # read once after its first events
    before = {event["id"] for event in stripe.events("customer.subscription.updated")}
    stripe.fail_renewals(request.customer_id)
    stripe.advance_clock(32 * DAY)
    renewal, failure = [
        e for e in stripe.events("customer.subscription.updated") if e["id"] not in before
    ]
    assert (renewal["data"]["object"]["status"], failure["data"]["object"]["status"]) == (
        "active",
        "past_due",
    )
    assert deliver(agency, failure).status_code == 200  # the newer one first,
    assert deliver(agency, renewal).status_code == 200  # then the renewal's "active"
    request.refresh_from_db()
    assert request.subscription_status == "active"  # the last event handled, for now
    assert subscriptions.reconcile_overdue() == 1  # the every-minute task reads it again
    request.refresh_from_db()
    assert request.subscription_status == "past_due"  # Stripe's word
    assert subscriptions.reconcile_overdue() == 0  # once
    assert OutgoingEmail.objects.filter(kind=Kind.PAYMENT_FAILED).count() == 1
    assert OutgoingEmail.objects.filter(kind=Kind.CARD_FAILED).count() == 1


def test_the_listing_says_when_a_canceled_subscription_ends(agency, sites, connection, stripe):
    request = subscribed(agency, sites, stripe)
    agency.post(cancel_url(request), {"when": "period_end"})
    listing = agency.get(reverse("wagtail_client_billing_requests:index") + f"?site={sites[0].pk}")
    assert "Paid · active · ends on" in listing.content.decode()


def test_a_renewal_whose_webhooks_were_lost_is_read_again(agency, sites, connection, stripe):
    request = subscribed(agency, sites, stripe)
    first_end = request.current_period_end
    stripe.advance_clock(32 * DAY)  # renewed at Stripe; none of its events delivered
    now = first_end + datetime.timedelta(hours=2)
    assert subscriptions.reconcile_overdue(now=now) == 1
    request.refresh_from_db()
    assert request.current_period_end > first_end + datetime.timedelta(days=27)
    assert subscriptions.reconcile_overdue(now=now) == 0  # now current: not read again
    # Stripe down: logged, tried again an hour later, not every minute.
    BillingRequest.objects.filter(pk=request.pk).update(current_period_end=first_end)
    stripe.fail_next("GET", f"/v1/subscriptions/{request.subscription_id}", status=500)
    later = now + datetime.timedelta(hours=2)
    assert subscriptions.reconcile_overdue(now=later) == 0
    assert subscriptions.reconcile_overdue(now=later + datetime.timedelta(minutes=1)) == 0
    assert subscriptions.reconcile_overdue(now=later + datetime.timedelta(hours=2)) == 1
