"""Screens that guide (issue 13): the site being billed, the alerts, the deleted hint,
the currency list; through the real admin views and the simulator."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import grant_billing, make_user
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


def add(client, site, **changes):
    data = {
        "email": "client@example.com",
        "currency": "eur",
        "amount": "49.90",
        "description": "Website maintenance",
        "success_url": "https://acme.test/thanks/",
        "cancel_url": "https://acme.test/cancel/",
        "billing_type": "one_time",
        "nonce": f"nonce-{timezone.now().timestamp()}",
        **changes,
    }
    return client.post(f"{ADD}?site={site.pk}", data)


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
