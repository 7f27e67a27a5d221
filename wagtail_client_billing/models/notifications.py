"""Notifications the app sends to people (not to clients), each exactly once."""

from __future__ import annotations

from django.db import models
from django.utils import formats, timezone
from django.utils.translation import gettext, gettext_noop
from django.utils.translation import gettext_lazy as _

# Stored in ``Notification.error`` untranslated, shown in the reader's language.
NO_RECIPIENTS = gettext_noop(
    "No address to send to: add recipients, or give a superuser an email address."
)


class Notification(models.Model):
    """One notification, stored under a key that makes it unique (one email per event).

    Created in the transaction of the change it reports, so a webhook retry or a
    duplicate delivery finds the key taken; the task then claims it before sending, so
    the at-least-once broker cannot send it twice. A failure that may pass is tried
    again at ``retry_at`` (the every-minute drain), as billing emails are.
    """

    class Kind(models.TextChoices):
        PAID = "paid", _("Payment received")
        PAYMENT_FAILED = "payment_failed", _("Subscription payment failed")
        NEW_LINK_ASKED = "new_link_asked", _("Client asked for a new link")

    key = models.CharField(max_length=255, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    billing_request = models.ForeignKey(
        "wagtail_client_billing.BillingRequest", on_delete=models.CASCADE, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # When the next attempt is due after a failure that may pass; null otherwise.
    retry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")

    def __str__(self) -> str:
        return self.key

    @property
    def error_display(self) -> str:
        """The reason it failed, in the reader's language where it is the app's own."""
        reason = gettext(self.error) if self.error == NO_RECIPIENTS else self.error
        if self.retry_at is None or self.sent_at is not None:
            return reason
        when = formats.date_format(timezone.localtime(self.retry_at), "SHORT_DATETIME_FORMAT")
        return gettext("%(reason)s Next attempt: %(when)s.") % {"reason": reason, "when": when}
