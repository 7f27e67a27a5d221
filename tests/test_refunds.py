"""Refunds and disputes: through the admin, Stripe's dashboard (webhooks only) and the
simulator's faults; never more than was paid, one refund per form, nothing lost."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from wagtail.models import ModelLogEntry

from tests.factories import grant_billing, make_user
from tests.test_billing_requests import CommittingClient, add, deliver, last_event
from wagtail_client_billing import billing, stripe_api
from wagtail_client_billing.models import BillingRequest, OutgoingEmail, Refund

pytestmark = pytest.mark.django_db

Status = BillingRequest.Status


@pytest.fixture
def agency(django_capture_on_commit_callbacks):
    """An agency admin (the only ones who may refund), committing like a real request."""
    client = Client()
    client.force_login(make_user("agency-admin", superuser=True))
    return CommittingClient(client, django_capture_on_commit_callbacks)


@pytest.fixture
def editor(sites, django_capture_on_commit_callbacks):
    """An editor who may bill for Acme (and see its requests), in a browser of their own."""
    client = Client()
    user = make_user("acme-editor")
    grant_billing(user, sites[0])
    client.force_login(user)
    return CommittingClient(client, django_capture_on_commit_callbacks)


def paid(agency, sites, stripe, **changes) -> BillingRequest:
    """A request of Acme for EUR 49.90, paid through Checkout and its signed webhook."""
    add(agency, sites[0], **changes)
    request = BillingRequest.objects.latest("pk")
    stripe.complete_checkout(request.checkout_session_id)
    assert deliver(agency, last_event(stripe, "checkout.session.completed")).status_code == 200
    request.refresh_from_db()
    assert request.status == Status.PAID
    return request


def refund_url(request: BillingRequest) -> str:
    return reverse("wagtail_client_billing_requests:refund", args=[request.pk])


def inspect_url(request: BillingRequest) -> str:
    return reverse("wagtail_client_billing_requests:inspect", args=[request.pk])


def post_refund(client, request, amount="49.90", nonce="form-1", reason="requested_by_customer"):
    data = {"amount": amount, "reason": reason, "nonce": nonce}
    return client.post(refund_url(request), data, follow=True)


def refunds_at_stripe(request: BillingRequest) -> list:
    listed = stripe_api.get_client("test").v1.refunds.list(
        {"payment_intent": request.payment_intent_id},
        options={"stripe_account": request.account_id},
    )
    return listed.data


def charge_at_stripe(request: BillingRequest):
    client = stripe_api.get_client("test").v1
    options = {"stripe_account": request.account_id}
    intent = client.payment_intents.retrieve(request.payment_intent_id, options=options)
    return client.charges.retrieve(intent.latest_charge, options=options)


def deliver_all(client, stripe, event_type: str) -> None:
    for event in stripe.events(event_type):
        assert deliver(client, event).status_code == 200


def refund_entries() -> int:
    return ModelLogEntry.objects.filter(action=billing.ACTION_REFUND).count()


def notifications(kind: str) -> int:
    return OutgoingEmail.objects.filter(kind=kind).count()


# The payment ------------------------------------------------------------------------------


def test_paid_request_keeps_the_payment_stripe_took(agency, sites, connection, stripe):
    request = paid(agency, sites, stripe)
    session = stripe.get_object(request.checkout_session_id, "checkout.session")
    assert request.payment_intent_id == session["payment_intent"]
    assert request.payment_intent_id.startswith("pi_")


# Refunding from the admin -----------------------------------------------------------------


def test_partial_refund_then_the_rest(agency, sites, connection, stripe):
    request = paid(agency, sites, stripe)
    page = agency.get(refund_url(request)).content.decode()
    assert "€49.90" in page and "Can be refunded" in page
    assert "What client@example.com will see" in page

    response = post_refund(agency, request, amount="10", nonce="first")
    assert "€10.00 refunded." in response.content.decode()
    request.refresh_from_db()
    assert request.refunded_amount == 1000
    assert request.get_status_label() == "Partially refunded"
    assert charge_at_stripe(request).amount_refunded == 1000
    (refund,) = Refund.objects.all()
    assert refund.status == Refund.Status.SUCCEEDED and refund.stripe_id.startswith("re_")
    assert refund.created_by.username == "agency-admin"
    assert refund_entries() == 1 and notifications(OutgoingEmail.Kind.REFUNDED) == 1

    # Stripe's own events about it change nothing more.
    deliver_all(agency, stripe, "refund.created")
    deliver_all(agency, stripe, "charge.refunded")
    request.refresh_from_db()
    assert request.refunded_amount == 1000 and Refund.objects.count() == 1
    assert refund_entries() == 1 and notifications(OutgoingEmail.Kind.REFUNDED) == 1

    page = agency.get(refund_url(request)).content.decode()
    assert "€39.90" in page  # what remains, offered
    response = post_refund(agency, request, amount="39.90", nonce="second")
    assert "€39.90 refunded." in response.content.decode()
    request.refresh_from_db()
    assert request.refunded_amount == 4990
    assert request.get_status_label() == "Refunded"
    assert charge_at_stripe(request).refunded is True

    inspect = agency.get(inspect_url(request)).content.decode()
    assert "€49.90 refunded" in inspect and refund_url(request) not in inspect
    response = agency.get(refund_url(request), follow=True)
    assert "already been refunded in full" in response.content.decode()


def test_more_than_remains_is_refused_before_stripe(agency, sites, connection, stripe):
    request = paid(agency, sites, stripe)
    response = post_refund(agency, request, amount="49.91")
    assert "At most €49.90 can be refunded." in response.content.decode()
    for amount, error in [("0", "greater than zero"), ("1.234", "at most 2 decimal places")]:
        assert error in post_refund(agency, request, amount=amount).content.decode()
    assert refunds_at_stripe(request) == [] and not Refund.objects.exists()


def test_a_double_click_makes_one_refund(agency, sites, connection, stripe):
    request = paid(agency, sites, stripe)
    post_refund(agency, request, amount="20", nonce="same-form")
    response = post_refund(agency, request, amount="20", nonce="same-form")
    assert "€20.00 refunded." in response.content.decode()
    assert len(refunds_at_stripe(request)) == 1 and Refund.objects.count() == 1
    request.refresh_from_db()
    assert request.refunded_amount == 2000


def test_two_people_refunding_the_whole_payment_give_it_back_once(
    agency, sites, connection, stripe
):
    request = paid(agency, sites, stripe)
    # Both opened the form while the whole payment remained.
    billing.refund(request, amount=4990, reason="", key="alice")
    with pytest.raises(billing.RefundTooLarge, match="already been refunded in full"):
        billing.refund(request, amount=4990, reason="", key="bob")
    with pytest.raises(billing.RefundTooLarge, match=r"At most €0.00|refunded in full"):
        billing.refund(request, amount=1, reason="", key="carol")
    assert len(refunds_at_stripe(request)) == 1
    assert charge_at_stripe(request).amount_refunded == 4990


def test_stripe_down_keeps_the_refund_and_the_same_form_finishes_it(
    agency, sites, connection, stripe
):
    request = paid(agency, sites, stripe)
    stripe.fail_next("POST", "/v1/refunds", status=500)
    response = post_refund(agency, request, amount="15", nonce="while-down")
    page = response.content.decode()
    assert "Stripe had a problem" in page
    assert 'value="15"' in page and 'value="while-down"' in page  # what was typed is kept
    (refund,) = Refund.objects.all()
    assert refund.status == Refund.Status.SENDING  # held: not refunded twice meanwhile
    request.refresh_from_db()
    assert request.refunded_amount == 1500 and refunds_at_stripe(request) == []
    assert "Not confirmed by Stripe" in agency.get(inspect_url(request)).content.decode()

    response = post_refund(agency, request, amount="15", nonce="while-down")
    assert "€15.00 refunded." in response.content.decode()
    refund.refresh_from_db()
    assert refund.status == Refund.Status.SUCCEEDED
    assert len(refunds_at_stripe(request)) == 1 and refund_entries() == 1


def test_no_answer_then_the_retry_gets_stripes_refund_not_a_second(
    agency, sites, connection, stripe
):
    request = paid(agency, sites, stripe)
    stripe.hang_next("POST", "/v1/refunds", seconds=3)  # longer than the app's 2 s timeout
    response = post_refund(agency, request, amount="5", nonce="slow")
    assert "could not be reached" in response.content.decode()
    stripe.wait_idle()  # Stripe carried it out after the app stopped waiting
    assert len(refunds_at_stripe(request)) == 1

    response = post_refund(agency, request, amount="5", nonce="slow")
    assert "€5.00 refunded." in response.content.decode()
    assert len(refunds_at_stripe(request)) == 1 and Refund.objects.get().stripe_id


def test_stripe_refusing_frees_the_amount_and_says_why(agency, sites, connection, stripe):
    request = paid(agency, sites, stripe)
    stripe.refund(request.payment_intent_id)  # in Stripe's dashboard; no webhook yet
    response = post_refund(agency, request, amount="49.90", nonce="too-late")
    page = response.content.decode()
    assert "has already been refunded" in page
    assert 'value="too-late"' not in page  # a new try is a new refund
    refused = Refund.objects.get(key="too-late")
    assert refused.status == Refund.Status.FAILED and refused.error
    request.refresh_from_db()
    assert request.refunded_amount == 0

    deliver_all(agency, stripe, "refund.created")
    request.refresh_from_db()
    assert request.refunded_amount == 4990 and request.get_status_label() == "Refunded"


def test_site_editors_cannot_refund(editor, agency, sites, connection, stripe):
    request = paid(agency, sites, stripe)
    assert editor.get(refund_url(request)).status_code == 403
    assert editor.post(refund_url(request), {"amount": "1", "nonce": "x"}).status_code == 403
    assert refund_url(request) not in editor.get(inspect_url(request)).content.decode()
    assert refund_url(request) in agency.get(inspect_url(request)).content.decode()
    assert not Refund.objects.exists()


def test_only_a_paid_request_is_refunded(agency, sites, connection, stripe):
    add(agency, sites[0])
    pending = BillingRequest.objects.get()
    response = agency.get(refund_url(pending), follow=True)
    assert "Only a paid billing request" in response.content.decode()
    response = post_refund(agency, pending)
    assert "Only a paid billing request" in response.content.decode()
    assert not Refund.objects.exists()


# Refunds made in Stripe's dashboard, and their events ------------------------------------


def test_a_dashboard_refund_arrives_by_webhook_once(agency, sites, connection, stripe):
    request = paid(agency, sites, stripe)
    stripe.refund(request.payment_intent_id, amount=1200, reason="duplicate")
    # Out of order and twice: the charge first, then the refund's own event.
    deliver_all(agency, stripe, "charge.refunded")
    deliver_all(agency, stripe, "refund.created")
    deliver_all(agency, stripe, "refund.created")
    (refund,) = Refund.objects.all()
    assert refund.amount == 1200 and refund.created_by is None
    assert refund.reason == "duplicate" and refund.key.startswith("stripe-")
    request.refresh_from_db()
    assert request.refunded_amount == 1200
    assert refund_entries() == 1 and notifications(OutgoingEmail.Kind.REFUNDED) == 1
    entry = ModelLogEntry.objects.get(action=billing.ACTION_REFUND)
    assert entry.data["dashboard"] is True and entry.data["refunded"] == 1200
    inspect = agency.get(inspect_url(request)).content.decode()
    assert "in Stripe&#x27;s dashboard" in inspect or "in Stripe's dashboard" in inspect


def test_a_pending_refund_that_fails_gives_the_amount_back(agency, sites, connection, stripe):
    request = paid(agency, sites, stripe)
    stripe.delay_next_refunds(1)
    response = post_refund(agency, request, amount="49.90", nonce="slow-bank")
    assert "is pending at Stripe" in response.content.decode()
    request.refresh_from_db()
    assert request.refunded_amount == 4990  # held while pending
    refund = Refund.objects.get()
    stripe.settle_refund(refund.stripe_id, succeed=False)
    deliver_all(agency, stripe, "refund.updated")
    refund.refresh_from_db()
    request.refresh_from_db()
    assert refund.status == Refund.Status.FAILED
    assert request.refunded_amount == 0 and request.get_status_label() == "Paid"
    assert "Refund" in agency.get(inspect_url(request)).content.decode()


def test_refund_events_of_another_account_are_ignored(agency, sites, connection, stripe):
    request = paid(agency, sites, stripe)
    stripe.refund(request.payment_intent_id)
    event = dict(last_event(stripe, "refund.created"), account="acct_someone_else")
    event["id"] = "evt_other_account"
    assert deliver(agency, event).status_code == 200
    assert not Refund.objects.exists()


# Disputes ---------------------------------------------------------------------------------


def test_a_dispute_is_shown_told_once_and_never_reopened(agency, sites, connection, stripe):
    request = paid(agency, sites, stripe)
    dispute = stripe.create_dispute(request.payment_intent_id)
    deliver_all(agency, stripe, "charge.dispute.created")
    request.refresh_from_db()
    assert request.dispute_status == "needs_response"
    assert "disputed by the client" in agency.get(inspect_url(request)).content.decode()
    assert notifications(OutgoingEmail.Kind.DISPUTED) == 1
    assert ModelLogEntry.objects.filter(action=billing.ACTION_DISPUTED).count() == 1

    stripe.close_dispute(dispute["id"], won=False)
    deliver_all(agency, stripe, "charge.dispute.closed")
    # A late copy of the opening, under a new event id, does not reopen it.
    late = dict(last_event(stripe, "charge.dispute.created"), id="evt_late_copy")
    deliver(agency, late)
    request.refresh_from_db()
    assert request.dispute_status == "lost"
    assert "dispute lost" in agency.get(inspect_url(request)).content.decode()
    assert notifications(OutgoingEmail.Kind.DISPUTED) == 1


# What the agency adds up ------------------------------------------------------------------


def test_totals_chart_and_export_count_refunds(agency, sites, connection, stripe):
    from tests.test_overview import OVERVIEW, csv_rows

    request = paid(agency, sites, stripe)
    post_refund(agency, request, amount="10", nonce="partial")
    page = agency.get(OVERVIEW).content.decode()
    paid_box = page[page.index('data-total="paid_this_month"') :]
    assert "€39.90" in paid_box[:600] and "net of €10.00 refunded" in paid_box[:600]
    assert "Partially refunded" in page
    (row,) = csv_rows(agency.get(f"{OVERVIEW}?export=csv"))
    assert row["Status"] == "Partially refunded" and row["Refunded"] == "10.00"
    assert row["Amount"] == "49.90"
    home = agency.get(reverse("wagtailadmin_home")).content.decode()
    assert "€39.90" in home  # the dashboard's paid total and chart are net too


def test_money_moved_after_unlinking_is_still_recorded(agency, sites, connection, stripe):
    from wagtail_client_billing import connections

    request = paid(agency, sites, stripe)
    connections.unlink(connection, reason="deauthorized at Stripe")
    stripe.refund(request.payment_intent_id, amount=700)
    stripe.create_dispute(request.payment_intent_id)
    deliver_all(agency, stripe, "refund.created")
    deliver_all(agency, stripe, "charge.dispute.created")
    request.refresh_from_db()
    assert request.refunded_amount == 700 and request.dispute_status == "needs_response"
    # The Refund button is gone: the account that took the payment is no longer ours.
    assert refund_url(request) not in agency.get(inspect_url(request)).content.decode()


def test_the_request_page_lists_its_refund_dispute_and_invoice_events(
    agency, sites, connection, stripe
):
    request = paid(agency, sites, stripe)
    deliver_all(agency, stripe, "invoice.paid")
    post_refund(agency, request, amount="1", nonce="one")
    deliver_all(agency, stripe, "refund.created")
    page = agency.get(inspect_url(request)).content.decode()
    events = page[page.index("data-wcb-stripe-events") :]
    for event_type in ("checkout.session.completed", "invoice.paid", "refund.created"):
        assert event_type in events


def test_an_unconfirmed_refund_is_looked_up_later_never_made_twice(
    agency, sites, connection, stripe
):
    from datetime import timedelta

    from django.utils import timezone

    request = paid(agency, sites, stripe)
    # Two refunds left unconfirmed, the forms never sent again: Stripe made the first
    # (its answer was lost), never got the second.
    stripe.hang_next("POST", "/v1/refunds", seconds=3)
    post_refund(agency, request, amount="5", nonce="answer-lost")
    stripe.wait_idle()
    stripe.fail_next("POST", "/v1/refunds", status=500)
    post_refund(agency, request, amount="7", nonce="never-made")
    request.refresh_from_db()
    assert request.refunded_amount == 1200  # both held meanwhile
    assert billing.settle_unconfirmed() == 0  # too early: the forms may come back

    later = timezone.now() + timedelta(minutes=6)
    assert billing.settle_unconfirmed(now=later) == 2
    made, never = Refund.objects.get(key="answer-lost"), Refund.objects.get(key="never-made")
    assert made.status == Refund.Status.SUCCEEDED and made.stripe_id
    assert never.status == Refund.Status.FAILED and "never confirmed" in never.error
    assert len(refunds_at_stripe(request)) == 1  # nothing was asked of Stripe again
    request.refresh_from_db()
    assert request.refunded_amount == 500


def test_a_late_pending_event_never_holds_a_failed_refund_again(agency, sites, connection, stripe):
    request = paid(agency, sites, stripe)
    stripe.delay_next_refunds(1)
    post_refund(agency, request, amount="20", nonce="bank-says-no")
    refund = Refund.objects.get()
    stripe.settle_refund(refund.stripe_id, succeed=False)
    deliver_all(agency, stripe, "refund.updated")  # failed
    deliver_all(agency, stripe, "refund.created")  # pending, late
    refund.refresh_from_db()
    request.refresh_from_db()
    assert refund.status == Refund.Status.FAILED and request.refunded_amount == 0


def test_a_payment_made_before_this_version_kept_its_intent_is_refunded(
    agency, sites, connection, stripe
):
    request = paid(agency, sites, stripe)
    intent = request.payment_intent_id
    BillingRequest.objects.filter(pk=request.pk).update(payment_intent_id="")  # as upgraded
    assert refund_url(request) in agency.get(inspect_url(request)).content.decode()
    response = post_refund(agency, request, amount="3", nonce="after-upgrade")
    assert "€3.00 refunded." in response.content.decode()
    request.refresh_from_db()
    assert request.payment_intent_id == intent  # asked of Stripe once, then kept
    assert Refund.objects.get().payment_intent_id == intent


def test_the_clients_paid_page_says_what_was_refunded(agency, sites, connection, stripe):
    request = paid(agency, sites, stripe)
    post_refund(agency, request, amount="10", nonce="part")
    page = agency.get(request.get_payment_path(), HTTP_HOST="acme.test").content.decode()
    assert "€10.00 of it was refunded to you." in page
    post_refund(agency, request, amount="39.90", nonce="rest")
    page = agency.get(request.get_payment_path(), HTTP_HOST="acme.test").content.decode()
    assert "This payment was refunded to you in full." in page


@pytest.mark.parametrize(
    "changes",
    [
        {"amount": "12"},
        {"amount": 10**20},
        {"currency": "euros"},
        {"status": "x" * 40},
        {"reason": "because"},
        {"id": "re_" + "x" * 300},
    ],
)
def test_a_malformed_refund_is_ignored_saying_why_never_failed(
    agency, sites, connection, stripe, changes
):
    from wagtail_client_billing.models import WebhookEvent

    request = paid(agency, sites, stripe)
    stripe.refund(request.payment_intent_id, amount=100)
    event = last_event(stripe, "refund.created")
    event = {
        **event,
        "id": "evt_malformed",
        "data": {"object": {**event["data"]["object"], **changes}},
    }
    assert deliver(agency, event).status_code == 200
    stored = WebhookEvent.objects.get(stripe_id="evt_malformed")
    assert stored.status == WebhookEvent.Status.IGNORED and "refund object" in stored.note
    assert not Refund.objects.exists()
