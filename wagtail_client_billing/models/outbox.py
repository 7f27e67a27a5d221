"""The outbox: every email the app sends, one row each, with where its sending stands."""

from __future__ import annotations

from django.db import models
from django.utils import formats, timezone
from django.utils.translation import gettext, gettext_noop
from django.utils.translation import gettext_lazy as _

# Stored in ``OutgoingEmail.error`` untranslated, shown in the reader's language
# (``OutgoingEmail.reason``).
NO_RECIPIENTS = gettext_noop(
    "No address to send to: add recipients, or give a superuser an email address."
)


class OutgoingEmail(models.Model):
    """One email under a unique key (one per event, or per kind and request)."""

    class Kind(models.TextChoices):
        REQUEST = "request", _("Billing request")
        REMINDER = "reminder", _("Reminder")
        PAID = "paid", _("Payment received")
        PAYMENT_FAILED = "payment_failed", _("Subscription payment failed")
        NEW_LINK_ASKED = "new_link_asked", _("Client asked for a new link")
        REFUNDED = "refunded", _("Refund made")
        DISPUTED = "disputed", _("Payment disputed")
        # To the client, after a subscription's payment:
        CARD_FAILED = "card_failed", _("Subscription payment failed: update your card")
        SUBSCRIPTION_CANCELED = "canceled", _("Subscription canceled")

    class Status(models.TextChoices):
        NOT_SENT = "", _("Not sent")
        QUEUED = "queued", _("Queued")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        # Reported by an anymail ESP through its tracking webhooks.
        DELIVERED = "delivered", _("Delivered")
        OPENED = "opened", _("Opened")
        BOUNCED = "bounced", _("Bounced")
        COMPLAINED = "complained", _("Marked as spam")
        FAILED = "failed", _("Failed")

    kind = models.CharField(max_length=20, choices=Kind.choices)
    key = models.CharField(max_length=255)  # unique: Meta (no PostgreSQL "_like" index)
    site = models.ForeignKey("wagtailcore.Site", on_delete=models.CASCADE, related_name="+")
    billing_request = models.ForeignKey(
        "wagtail_client_billing.BillingRequest", on_delete=models.CASCADE, related_name="emails"
    )
    recipient = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default="", blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # Queued: when the next attempt is due (NULL: now). Sending: when it counts as lost.
    due_at = models.DateTimeField(null=True, blank=True)
    message_id = models.CharField(max_length=255, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key"], name="wcb_outbox_key")]
        indexes = [
            models.Index(
                fields=["due_at"],
                name="wcb_outbox_due",
                condition=models.Q(status__in=["queued", "sending"]),
            ),
        ]

    def __str__(self) -> str:
        return self.key

    @property
    def reason(self) -> str:
        """Why it was not sent, in the reader's language where it is the app's own."""
        # The app's own reasons are stored in English (gettext_noop): a worker has no
        # reader; a server's own reply has no entry in the catalogue and stays as it is.
        return gettext(self.error) if self.error else ""

    @property
    def error_display(self) -> str:
        """The reason, and when the next attempt is due."""
        reason = self.reason
        if self.status != self.Status.QUEUED or self.due_at is None:
            return reason
        when = formats.date_format(timezone.localtime(self.due_at), "SHORT_DATETIME_FORMAT")
        return gettext("%(reason)s Next attempt: %(when)s.") % {"reason": reason, "when": when}
