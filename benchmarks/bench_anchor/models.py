"""``AnchorRequest``: the billing requests' columns, types and listing indexes, nothing else.

No methods, no properties, no outbox: what a developer would list with a plain
``ModelViewSet``. ``overview.py`` fills it with the very rows of the overview
(``INSERT ... SELECT``), so both pages read the same data the same way.
"""

from django.db import models

# The columns copied from the billing requests' table (same names and types).
COPIED_COLUMNS = [
    "id",
    "site_id",
    "token",
    "form_nonce",
    "email",
    "currency",
    "amount",
    "description",
    "success_url",
    "cancel_url",
    "billing_type",
    "status",
    "payment_state",
    "late_payment",
    "mode",
    "account_id",
    "checkout_session_id",
    "checkout_url",
    "subscription_id",
    "subscription_status",
    "created_at",
    "expires_at",
    "paid_at",
    "expired_at",
    "deleted_at",
    "delete_requested_at",
    "reconciled_at",
    "client_asked_at",
    "payment_intent_id",
    "customer_id",
    "refunded_amount",
    "dispute_status",
    "current_period_end",
    "cancel_at_period_end",
]


class AnchorRequest(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PAID = "paid", "Paid"
        EXPIRED = "expired", "Expired"
        DELETED = "deleted", "Deleted"

    class BillingType(models.TextChoices):
        ONE_TIME = "one_time", "One-time"
        MONTHLY = "monthly", "Monthly"
        YEARLY = "yearly", "Yearly"

    class Mode(models.TextChoices):
        TEST = "test", "Test mode"
        LIVE = "live", "Live mode"

    site = models.ForeignKey("wagtailcore.Site", on_delete=models.PROTECT, related_name="+")
    token = models.CharField(max_length=64)
    form_nonce = models.CharField(max_length=64, null=True)  # noqa: DJ001 (as copied)
    email = models.EmailField()
    currency = models.CharField(max_length=3)
    amount = models.BigIntegerField()
    description = models.CharField(max_length=250)
    success_url = models.URLField(max_length=2000)
    cancel_url = models.URLField(max_length=2000)
    billing_type = models.CharField(max_length=10, choices=BillingType.choices)
    status = models.CharField(max_length=10, choices=Status.choices)
    payment_state = models.CharField(max_length=12, blank=True)
    late_payment = models.BooleanField(default=False)
    mode = models.CharField(max_length=4, choices=Mode.choices)
    account_id = models.CharField(max_length=255, blank=True)
    checkout_session_id = models.CharField(max_length=255, null=True)  # noqa: DJ001 (as copied)
    checkout_url = models.URLField(max_length=2000, blank=True)
    subscription_id = models.CharField(max_length=255, blank=True)
    subscription_status = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    paid_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    delete_requested_at = models.DateTimeField(null=True, blank=True)
    reconciled_at = models.DateTimeField(null=True, blank=True)
    client_asked_at = models.DateTimeField(null=True, blank=True)
    payment_intent_id = models.CharField(max_length=255, blank=True)
    customer_id = models.CharField(max_length=255, blank=True)
    refunded_amount = models.BigIntegerField(default=0)
    dispute_status = models.CharField(max_length=32, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at", "-pk"]
        # The billing requests' indexes that serve a listing (same columns, same order).
        indexes = [
            models.Index(fields=["site", "status", "-created_at"], name="bench_anchor_site_status"),
            models.Index(fields=["site", "-created_at"], name="bench_anchor_site_created"),
            models.Index(fields=["-created_at", "-id"], name="bench_anchor_created"),
            models.Index(fields=["status", "-created_at"], name="bench_anchor_status_created"),
            models.Index(fields=["currency", "-created_at"], name="bench_anchor_currency_created"),
            models.Index(fields=["billing_type", "-created_at"], name="bench_anchor_type_created"),
            models.Index(fields=["mode", "-created_at"], name="bench_anchor_mode_created"),
        ]

    def __str__(self) -> str:
        return self.email


class AnchorEvent(models.Model):
    """The webhook's floor: a view that stores each event once (``bench_urls.store_post``)."""

    stripe_id = models.CharField(max_length=255, unique=True)
    payload = models.JSONField()

    def __str__(self) -> str:
        return self.stripe_id
