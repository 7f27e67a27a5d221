# One outbox: the billing email and reminder columns of BillingRequest and the
# Notification rows become OutgoingEmail rows, carried over by ``carry_over``.

from datetime import timedelta

import django.db.models.deletion
from django.db import migrations, models

STATUS_CHOICES = [
    ("", "Not sent"), ("queued", "Queued"), ("sending", "Sending"), ("sent", "Sent"),
    ("delivered", "Delivered"), ("opened", "Opened"), ("bounced", "Bounced"),
    ("complained", "Marked as spam"), ("failed", "Failed"),
]  # fmt: skip
KIND_CHOICES = [
    ("request", "Billing request"), ("reminder", "Reminder"), ("paid", "Payment received"),
    ("payment_failed", "Subscription payment failed"),
    ("new_link_asked", "Client asked for a new link"),
]  # fmt: skip
LOST_AFTER = timedelta(minutes=15)  # email.outbox.LOST_AFTER when this was written


def carry_over(apps, schema_editor):
    BillingRequest = apps.get_model("wagtail_client_billing", "BillingRequest")
    Notification = apps.get_model("wagtail_client_billing", "Notification")
    OutgoingEmail = apps.get_model("wagtail_client_billing", "OutgoingEmail")
    # Keep each row's own creation time (this historical model only).
    OutgoingEmail._meta.get_field("created_at").auto_now_add = False
    rows = []
    for request in BillingRequest.objects.order_by("pk").iterator():
        for kind, prefix in (("request", "email"), ("reminder", "reminder")):
            state = {
                name: getattr(request, f"{prefix}_{name}")
                for name in ("status", "sent_at", "error", "attempts", "due_at", "message_id")
            }
            if state["status"] or state["error"] or state["sent_at"] or state["attempts"]:
                rows.append(OutgoingEmail(
                    kind=kind, key=f"{kind}-{request.pk}", site_id=request.site_id,
                    billing_request_id=request.pk, recipient=request.email,
                    created_at=request.created_at, **state,
                ))  # fmt: skip
    for notification in Notification.objects.order_by("pk").iterator():
        # Claimed (claimed_at) and not released: sending, or failed for good with its
        # error. Released or never taken: queued, due at its retry time.
        due_at = notification.retry_at
        if notification.sent_at is not None:
            status, due_at = "sent", None
        elif notification.claimed_at is None:
            status = "queued"
        elif notification.error:
            status, due_at = "failed", None
        else:
            status, due_at = "sending", notification.claimed_at + LOST_AFTER
        rows.append(OutgoingEmail(
            kind=notification.kind, key=notification.key, site_id=notification.billing_request.site_id,
            billing_request_id=notification.billing_request_id, status=status,
            attempts=notification.attempts, due_at=due_at, error=notification.error,
            created_at=notification.created_at, sent_at=notification.sent_at,
        ))  # fmt: skip
    OutgoingEmail.objects.bulk_create(rows, batch_size=500)


class Migration(migrations.Migration):
    dependencies = [
        ("wagtail_client_billing", "0009_delete_intent"),
        ("wagtailcore", "0097_baselogentry_uuid_action_timestamp_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="OutgoingEmail",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("kind", models.CharField(choices=KIND_CHOICES, max_length=20)),
                ("key", models.CharField(max_length=255, unique=True)),
                ("recipient", models.TextField(blank=True)),
                ("status", models.CharField(blank=True, choices=STATUS_CHOICES, default="", max_length=10)),
                ("attempts", models.PositiveIntegerField(default=0)),
                ("due_at", models.DateTimeField(blank=True, null=True)),
                ("message_id", models.CharField(blank=True, max_length=255)),
                ("error", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("sent_at", models.DateTimeField(blank=True, null=True)),
                ("billing_request", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="emails", to="wagtail_client_billing.billingrequest")),
                ("site", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="+", to="wagtailcore.site")),
            ],
        ),
        migrations.AddIndex(
            model_name="outgoingemail",
            index=models.Index(condition=models.Q(("status__in", ["queued", "sending"])), fields=["due_at"], name="wcb_outbox_due"),
        ),
        migrations.RunPython(carry_over, migrations.RunPython.noop),
        migrations.RemoveIndex(model_name="billingrequest", name="wcb_req_email_due"),
        migrations.RemoveIndex(model_name="billingrequest", name="wcb_req_reminder_due"),
        *(
            migrations.RemoveField(model_name="billingrequest", name=f"{prefix}_{name}")
            for prefix in ("email", "reminder")
            for name in ("status", "sent_at", "error", "attempts", "due_at", "message_id")
        ),
        migrations.DeleteModel(name="Notification"),
    ]
