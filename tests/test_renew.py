"""Renew: an Expired or Deleted request becomes a new Pending one with the same details."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from wagtail.models import ModelLogEntry

from tests.factories import (
    connect_ready_account,
    grant_billing,
    make_site,
    make_user,
    request_details,
)
from wagtail_client_billing import billing
from wagtail_client_billing.models import BillingRequest

pytestmark = pytest.mark.django_db
Status = BillingRequest.Status


@pytest.fixture
def setup(billing_stripe_settings, client):
    site = make_site("acme.test", "Acme Plumbing")
    connect_ready_account(billing_stripe_settings)
    user = make_user("acme-editor")
    grant_billing(user, site)
    client.force_login(user)
    original = billing.create_request(
        site=site,
        details=request_details(description="Maintenance", billing_type="monthly"),
        user=user,
    )
    return client, original, billing_stripe_settings


def renew_url(request):
    return reverse("wagtail_client_billing_requests:renew", args=[request.pk])


def test_renew_shows_what_will_be_sent_then_sends_it(setup):
    client, original, stripe = setup
    billing.expire_overdue(now=timezone.now() + timedelta(days=2))
    original.refresh_from_db()
    assert original.status == Status.EXPIRED

    page = client.get(renew_url(original)).content.decode()
    assert "client@example.com" in page and "€49.90" in page and "Maintenance" in page

    response = client.post(renew_url(original), {"nonce": "renew-1"})
    renewed = BillingRequest.objects.exclude(pk=original.pk).get()
    assert response.status_code == 302
    assert renewed.status == Status.PENDING
    assert (renewed.email, renewed.amount, renewed.currency, renewed.billing_type) == (
        "client@example.com", 4990, "eur", "monthly",
    )  # fmt: skip
    assert renewed.checkout_session_id != original.checkout_session_id
    assert renewed.token != original.token
    original.refresh_from_db()
    assert original.status == Status.EXPIRED  # the old one stays as it was
    entry = ModelLogEntry.objects.get(action=billing.ACTION_RENEW)
    assert entry.data["renewed_as"] == renewed.pk

    client.post(renew_url(original), {"nonce": "renew-1"})  # a double click
    assert BillingRequest.objects.count() == 2


def test_pending_and_paid_requests_cannot_be_renewed(setup):
    client, original, _ = setup
    client.post(renew_url(original), {"nonce": "x"})
    assert BillingRequest.objects.count() == 1


def test_renew_with_stripe_down_keeps_everything(setup):
    client, original, stripe = setup
    billing.delete_request(original)
    # More failures than the SDK's retries (STRIPE_MAX_NETWORK_RETRIES, 2 by default).
    stripe.fail_next("POST", "/v1/checkout/sessions", times=5, status=500)
    page = client.post(renew_url(original), {"nonce": "n"}, follow=True).content.decode()
    assert "Stripe had a problem" in page
    assert BillingRequest.objects.count() == 1


def test_another_sites_editor_cannot_renew(setup):
    from django.test import Client

    _client, original, _ = setup
    billing.delete_request(original)
    other = Client()
    user = make_user("bakery-editor")
    grant_billing(user, make_site("bakery.test", "Bakery"))
    other.force_login(user)
    assert other.get(renew_url(original)).status_code == 404
    assert other.post(renew_url(original), {"nonce": "n"}).status_code == 404
    assert BillingRequest.objects.count() == 1


def test_a_request_is_renewed_once_and_both_pages_link_to_each_other(setup):
    client, original, stripe = setup
    billing.delete_request(original)
    inspect = reverse("wagtail_client_billing_requests:inspect", args=[original.pk])
    assert renew_url(original) in client.get(inspect).content.decode()

    client.post(renew_url(original), {"nonce": "renew-1"})
    renewed = BillingRequest.objects.get(renewed_from=original)

    page = client.get(inspect).content.decode()
    assert "Renewed as" in page
    assert reverse("wagtail_client_billing_requests:inspect", args=[renewed.pk]) in page
    assert renew_url(original) not in page  # no second Renew button
    page = client.get(
        reverse("wagtail_client_billing_requests:inspect", args=[renewed.pk])
    ).content.decode()
    assert "Renewal of" in page and inspect in page

    # Another form (an old tab, a colleague): the client is not billed a second time.
    response = client.get(renew_url(original), follow=True)
    assert response.redirect_chain[-1][0].endswith(f"/{renewed.pk}/")
    assert "already renewed" in response.content.decode()
    response = client.post(renew_url(original), {"nonce": "renew-2"}, follow=True)
    assert "already renewed" in response.content.decode()
    assert BillingRequest.objects.count() == 2
    sessions = list(stripe.engine.store.iter("checkout.session"))
    assert len(sessions) == 2  # the original's and the renewal's

    # The renewal can itself be renewed once it has ended.
    billing.delete_request(renewed)
    client.post(renew_url(renewed), {"nonce": "renew-3"})
    assert BillingRequest.objects.get(renewed_from=renewed).status == Status.PENDING
