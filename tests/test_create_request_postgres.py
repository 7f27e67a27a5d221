"""A new billing request on PostgreSQL: made Pending, its audit entry, its email's outbox
row and (with django-q2's ORM broker) the email's task in one statement, committed
together or not at all (issue 12: ``create_request`` in 3 statements)."""

from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django.db.models.signals import post_save
from django.urls import reverse
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.signing import SignedPackage
from wagtail.models import ModelLogEntry

from tests.factories import connect_ready_account, make_site, make_user, request_details
from wagtail_client_billing import billing
from wagtail_client_billing.mail.queue import queue_billing_email
from wagtail_client_billing.models import BillingRequest, OutgoingEmail, StripeConnection

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("wagtail_root"),
]


@pytest.fixture
def orm_broker(monkeypatch):
    """django-q2's ORM broker on our database, as in production (the suite runs tasks
    inline)."""
    monkeypatch.setattr(Conf, "SYNC", False)
    assert Conf.ORM == connection.alias


@pytest.fixture
def site(stripe):
    connect_ready_account(stripe)
    return make_site("acme.test", "Acme Plumbing")


def statements_of(call):
    """``call()``'s result and the SQL statements it ran."""
    statements: list[str] = []

    def count(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        return call(), statements


def task_of(row: OrmQ) -> tuple:
    task = SignedPackage.loads(row.payload)
    return row.key, task["func"], task["args"], task["group"], task["name"].split("-1")[0]


def test_a_request_its_entry_its_email_and_its_task_commit_in_three_statements(site, orm_broker):
    user = make_user("editor")
    ContentType.objects.get_for_model(BillingRequest)  # cached in a running project
    reverse("wagtailadmin_home")  # the admin's viewsets registered, as in a running project
    request, statements = statements_of(
        lambda: billing.create_request(
            site=site, details=request_details(), nonce="form-1", user=user
        )
    )
    # The look-up; the row as "creating"; (Stripe;) Pending with its entry, email and task.
    assert len(statements) == 3, statements
    request.refresh_from_db()
    assert request.status == BillingRequest.Status.PENDING
    entry = ModelLogEntry.objects.get(object_id=str(request.pk), action=billing.ACTION_CREATE)
    assert entry.user_id == user.pk
    (email,) = OutgoingEmail.objects.filter(billing_request=request)
    assert (email.key, email.kind, email.status, email.recipient, email.site_id) == (
        f"request-{request.pk}",
        "request",
        "queued",
        request.email,
        site.pk,
    )
    (row,) = OrmQ.objects.all()
    made = task_of(row)
    assert made[1:3] == ("wagtail_client_billing.tasks.send_billing_email", (request.pk,))

    # The very task the general path (a Resend) hands to django-q2.
    OrmQ.objects.all().delete()
    with transaction.atomic():
        queue_billing_email(request)
    (row,) = OrmQ.objects.all()
    assert task_of(row) == made


def test_without_the_orm_broker_the_email_still_goes_with_the_request(site):
    """Tasks run inline (the suite's setting, or another broker): the outbox row commits
    with the request and the task sends it after the commit."""
    from django.core import mail

    request = billing.create_request(site=site, details=request_details())
    (email,) = OutgoingEmail.objects.filter(billing_request=request)
    assert email.status == "sent"
    assert [message.to for message in mail.outbox] == [[request.email]]


def test_a_request_that_does_not_become_pending_queues_no_email(site, stripe, orm_broker):
    """Unlinked while Stripe made the session: no entry, no email row, no task."""
    link = StripeConnection.objects.get(unlinked_at__isnull=True)

    def unlink_meanwhile(sender, instance, created, **kwargs):
        if created and instance.status == BillingRequest.CREATING:
            assert billing.withdraw_and_unlink(link, reason="test").unlinked

    post_save.connect(unlink_meanwhile, sender=BillingRequest)
    try:
        with pytest.raises(billing.NotReadyToCharge):
            billing.create_request(site=site, details=request_details())
    finally:
        post_save.disconnect(unlink_meanwhile, sender=BillingRequest)
    assert not BillingRequest.objects.exists()
    assert not OutgoingEmail.objects.exists()
    assert not OrmQ.objects.exists()
    assert not ModelLogEntry.objects.filter(action=billing.ACTION_CREATE).exists()
