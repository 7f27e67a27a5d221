"""After Paid: the refunds of a request's payments and the invoices Stripe made for them."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .requests import user_link


class Refund(models.Model):
    """Money given back for one payment of a request, ours or made in Stripe's dashboard.

    A refund made here is saved ``sending`` (its amount held against what remains) before
    Stripe is called with ``key`` as the idempotency key, so a double click, two people at
    once or a retry after Stripe timed out make one refund, never more than was paid."""

    class Reason(models.TextChoices):
        REQUESTED_BY_CUSTOMER = "requested_by_customer", _("Requested by the client")
        DUPLICATE = "duplicate", _("Duplicate payment")
        FRAUDULENT = "fraudulent", _("Fraudulent payment")

    class Status(models.TextChoices):
        SENDING = "sending", _("Not confirmed by Stripe")
        PENDING = "pending", _("Pending")
        REQUIRES_ACTION = "requires_action", _("Requires action")
        SUCCEEDED = "succeeded", _("Refunded")
        FAILED = "failed", _("Failed")
        CANCELED = "canceled", _("Canceled")

    #: Statuses whose amount counts as given back (or about to be): held against what remains.
    HELD = (Status.SENDING, Status.PENDING, Status.REQUIRES_ACTION, Status.SUCCEEDED)

    billing_request = models.ForeignKey(
        "wagtail_client_billing.BillingRequest", on_delete=models.PROTECT, related_name="refunds"
    )
    key = models.CharField(max_length=64)  # unique: Meta
    stripe_id = models.CharField(max_length=255, null=True)  # noqa: DJ001 (unique, NULL until known)
    payment_intent_id = models.CharField(max_length=255, blank=True)
    amount = models.BigIntegerField(_("Amount"))
    currency = models.CharField(max_length=3)
    reason = models.CharField(_("Reason"), max_length=32, choices=Reason.choices, blank=True)
    status = models.CharField(_("Status"), max_length=16, choices=Status.choices)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(_("Created"), auto_now_add=True)
    created_by = user_link()

    class Meta:
        verbose_name = _("refund")
        verbose_name_plural = _("refunds")
        ordering = ["created_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["key"], name="wcb_refund_key"),
            models.UniqueConstraint(fields=["stripe_id"], name="wcb_refund_stripe_id"),
        ]
        indexes = [models.Index(fields=["payment_intent_id"], name="wcb_refund_intent")]

    def __str__(self) -> str:
        return self.stripe_id or self.key

    @property
    def error_display(self) -> str:
        """Why it failed, in the reader's language where the words are the app's own."""
        return gettext(self.error) if self.error else ""


class Invoice(models.Model):
    """A Stripe invoice of a request: the one of a one-time payment, or each payment of a
    subscription (the payments so far). Kept current by ``invoice.*`` webhooks."""

    billing_request = models.ForeignKey(
        "wagtail_client_billing.BillingRequest", on_delete=models.CASCADE, related_name="invoices"
    )
    stripe_id = models.CharField(max_length=255)  # unique: Meta
    number = models.CharField(_("Invoice number"), max_length=64, blank=True)
    status = models.CharField(_("Status"), max_length=16, blank=True)
    billing_reason = models.CharField(max_length=40, blank=True)
    currency = models.CharField(max_length=3)
    amount_due = models.BigIntegerField(default=0)
    amount_paid = models.BigIntegerField(default=0)
    hosted_invoice_url = models.URLField(max_length=2000, blank=True)
    invoice_pdf = models.URLField(max_length=2000, blank=True)
    payment_intent_id = models.CharField(max_length=255, blank=True)
    created = models.DateTimeField(_("Date"))
    paid_at = models.DateTimeField(null=True, blank=True)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("invoice")
        verbose_name_plural = _("invoices")
        ordering = ["-created", "-pk"]
        constraints = [models.UniqueConstraint(fields=["stripe_id"], name="wcb_invoice_stripe_id")]
        indexes = [models.Index(fields=["billing_request", "-created"], name="wcb_invoice_req")]

    def __str__(self) -> str:
        return self.number or self.stripe_id
