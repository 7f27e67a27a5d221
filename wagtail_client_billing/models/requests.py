"""Billing requests: what a client site asks a client to pay, and where it stands."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from .. import money
from .agency import Mode
from .outbox import OutgoingEmail


def _email_field(kind: str, name: str) -> Any:
    """A field of the request's outbox row of one kind, read as the request's own."""
    return property(lambda request: getattr(request.outgoing_email(kind), name))


def new_token() -> str:
    return secrets.token_urlsafe(32)


def user_link() -> models.ForeignKey:
    """Who did it, kept if the user goes. No index: only a user's deletion looks them up
    (a rare, one-off scan)."""
    return models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )


MANAGE_SALT = "wagtail_client_billing.manage"
TOTALLED = ["mode", "site", "currency", "amount", "refunded_amount"]  # reports.totals' columns


# Stripe's subscription statuses; the context tells translators whose adjective it is.
SUBSCRIPTION_STATUSES = {
    "incomplete": pgettext_lazy("subscription status", "incomplete"),
    "incomplete_expired": pgettext_lazy("subscription status", "incomplete, expired"),
    "trialing": pgettext_lazy("subscription status", "trialing"),
    "active": pgettext_lazy("subscription status", "active"),
    "past_due": pgettext_lazy("subscription status", "past due"),
    "canceled": pgettext_lazy("subscription status", "canceled"),
    "unpaid": pgettext_lazy("subscription status", "unpaid"),
    "paused": pgettext_lazy("subscription status", "paused"),
}


REFUND_STATES = {"refunded": _("Refunded"), "partially_refunded": _("Partially refunded")}
DISPUTE_STATES = {
    "open": _("disputed by the client"),
    "won": _("dispute won"),
    "lost": _("dispute lost: the money went back to the client"),
    "warning_closed": _("dispute inquiry closed"),
    "prevented": _("dispute prevented"),
}


class BillingRequest(models.Model):
    """One billing request of one site, tied to one Stripe Checkout Session."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        PAID = "paid", _("Paid")
        EXPIRED = "expired", _("Expired")
        DELETED = "deleted", _("Deleted")

    #: Saved, but Stripe has not given its session yet: not a choice, never listed or swept.
    CREATING = "creating"

    class BillingType(models.TextChoices):
        ONE_TIME = "one_time", _("One-time")
        MONTHLY = "monthly", _("Monthly")
        YEARLY = "yearly", _("Yearly")

    EmailStatus = OutgoingEmail.Status

    class PaymentState(models.TextChoices):
        NONE = "", _("None")
        PROCESSING = "processing", _("Processing")
        FAILED = "failed", _("Payment failed")

    site = models.ForeignKey(
        "wagtailcore.Site",
        on_delete=models.PROTECT,  # billing history outlives a site's deletion attempt
        related_name="billing_requests",
        verbose_name=_("site"),
        db_index=False,  # the (site, ...) indexes below serve it
    )
    # Unique through Meta's constraints: no PostgreSQL "_like" index (LIKE is never asked).
    token = models.CharField(max_length=64, default=new_token, editable=False)
    # NULL where no form made the request; unique among the rest (a double submit).
    form_nonce = models.CharField(max_length=64, null=True, editable=False)  # noqa: DJ001

    email = models.EmailField(_("Email"))
    currency = models.CharField(_("Currency"), max_length=3)
    amount = models.BigIntegerField(_("Amount"), help_text=_("In the currency's minor unit."))
    description = models.CharField(_("Description"), max_length=250)
    success_url = models.URLField(_("Success URL"), max_length=2000)
    cancel_url = models.URLField(_("Cancel URL"), max_length=2000)
    billing_type = models.CharField(
        _("Billing type"), max_length=10, choices=BillingType.choices, default=BillingType.ONE_TIME
    )

    status = models.CharField(
        _("Status"), max_length=10, choices=Status.choices, default=Status.PENDING
    )
    payment_state = models.CharField(
        _("Payment"), max_length=12, choices=PaymentState.choices, default="", blank=True
    )
    late_payment = models.BooleanField(
        _("paid late"),
        default=False,
        help_text=_("Stripe confirmed a payment after the request had expired or been deleted."),
    )

    mode = models.CharField(max_length=4, choices=Mode.choices, default=Mode.TEST)
    account_id = models.CharField(max_length=255, blank=True)
    checkout_session_id = models.CharField(max_length=255, null=True)  # noqa: DJ001
    checkout_url = models.URLField(max_length=2000, blank=True)
    subscription_id = models.CharField(max_length=255, blank=True)
    subscription_status = models.CharField(_("Subscription"), max_length=32, blank=True)
    # After Paid: the payment to refund (a one-time payment's, or a subscription's latest),
    # the client's Stripe customer, what was given back, a dispute, the subscription's period.
    payment_intent_id = models.CharField(max_length=255, blank=True)
    customer_id = models.CharField(max_length=255, blank=True)
    refunded_amount = models.BigIntegerField(_("Refunded"), default=0)
    dispute_status = models.CharField(_("Dispute"), max_length=32, blank=True)
    current_period_end = models.DateTimeField(_("Next payment"), null=True, blank=True)
    cancel_at_period_end = models.BooleanField(_("Ends at the end of the period"), default=False)

    created_at = models.DateTimeField(_("Created"), auto_now_add=True)
    created_by = user_link()
    expires_at = models.DateTimeField(_("Expires"))
    paid_at = models.DateTimeField(_("Paid at"), null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    # Set first, so that the checkout.session.expired event a delete causes makes it Deleted.
    delete_requested_at = models.DateTimeField(null=True, blank=True)
    delete_requested_by = user_link()
    reconciled_at = models.DateTimeField(null=True, blank=True)
    client_asked_at = models.DateTimeField(_("Client asked for a new link"), null=True, blank=True)
    # One renewal per request (unique), so the client is never billed twice for it.
    renewed_from = models.OneToOneField(
        "self",
        verbose_name=_("Renewal of"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="renewal",
    )

    class Meta:
        verbose_name = _("billing request")
        verbose_name_plural = _("billing requests")
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["token"], name="wcb_req_token"),
            models.UniqueConstraint(fields=["form_nonce"], name="wcb_req_form_nonce"),
            models.UniqueConstraint(fields=["checkout_session_id"], name="wcb_req_session"),
        ]
        indexes = [
            models.Index(fields=["subscription_id"], name="wcb_req_subscription"),
            models.Index(fields=["site", "status", "-created_at"], name="wcb_req_site_status"),
            models.Index(fields=["site", "-created_at"], name="wcb_req_site_created"),
            # The overview: its ordering, each filter with it, the columns it sorts by.
            models.Index(fields=["-created_at", "-id"], name="wcb_req_created"),
            models.Index(fields=["status", "-created_at"], name="wcb_req_status_created"),
            models.Index(fields=["currency", "-created_at"], name="wcb_req_currency_created"),
            models.Index(fields=["billing_type", "-created_at"], name="wcb_req_type_created"),
            models.Index(fields=["mode", "-created_at"], name="wcb_req_mode_created"),
            models.Index(fields=["email"], name="wcb_req_email"),
            models.Index(fields=["amount"], name="wcb_req_amount"),
            # Totals, latest payments, the paid-per-month chart: paid (or expired) since.
            # On PostgreSQL they carry what the totals add up: read from the index alone.
            models.Index(
                fields=["status", "paid_at"], include=TOTALLED, name="wcb_req_status_paid"
            ),
            models.Index(
                fields=["status", "expired_at"], include=TOTALLED, name="wcb_req_status_expired"
            ),
            models.Index(fields=["site", "status", "paid_at"], name="wcb_req_site_status_paid"),
            # Recurring revenue and subscriptions at risk (reports.recurring): live ones only.
            models.Index(
                fields=["mode", "currency"],
                include=["site", "amount", "billing_type", "subscription_status"],
                name="wcb_req_live_subscriptions",
                condition=models.Q(
                    status="paid",
                    subscription_status__in=["active", "trialing", "past_due", "unpaid"],
                ),
            ),
            # The expiry sweep and the reconciliation look for pending requests by time.
            models.Index(
                fields=["expires_at"],
                name="wcb_req_pending_expiry",
                condition=models.Q(status="pending"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} · {money.format_money(self.amount, self.currency)}"

    email_status = _email_field("request", "status")
    get_email_status_display = _email_field("request", "get_status_display")
    email_sent_at = _email_field("request", "sent_at")
    email_error = _email_field("request", "error")
    email_reason = _email_field("request", "reason")
    email_due_at = _email_field("request", "due_at")
    email_attempts = _email_field("request", "attempts")
    email_message_id = _email_field("request", "message_id")
    reminder_status = _email_field("reminder", "status")
    get_reminder_status_display = _email_field("reminder", "get_status_display")
    reminder_sent_at = _email_field("reminder", "sent_at")
    reminder_error = _email_field("reminder", "error")
    reminder_reason = _email_field("reminder", "reason")
    reminder_due_at = _email_field("reminder", "due_at")
    reminder_message_id = _email_field("reminder", "message_id")

    def outgoing_email(self, kind: str) -> OutgoingEmail:
        """The request's email of ``kind`` (unsaved "not sent" if none), cached until a refresh."""
        if "emails" not in getattr(self, "_prefetched_objects_cache", {}):
            models.prefetch_related_objects([self], "emails")
        found = next((email for email in self.emails.all() if email.kind == kind), None)
        return found or OutgoingEmail(kind=kind, site_id=self.site_id, billing_request=self)

    @property
    def amount_major(self):  # -> Decimal
        return money.to_major(self.amount, self.currency)

    @property
    def refunded_major(self):  # -> Decimal
        return money.to_major(self.refunded_amount, self.currency)

    @property
    def currency_code(self) -> str:
        return self.currency.upper()

    @property
    def is_recurring(self) -> bool:
        return self.billing_type != self.BillingType.ONE_TIME

    def get_subscription_status_display(self) -> str:
        """Stripe's subscription status in the reader's words ("active": French "actif",
        agreeing with "abonnement", not with the request's "Payé")."""
        status = SUBSCRIPTION_STATUSES.get(self.subscription_status)
        return str(status) if status else self.subscription_status.replace("_", " ")

    @property
    def refund_state(self) -> str:
        """ "refunded" (a one-time payment given back in full), "partially_refunded", or ""."""
        if self.refunded_amount <= 0 or self.status != self.Status.PAID:
            return ""
        full = not self.is_recurring and self.refunded_amount >= self.amount
        return "refunded" if full else "partially_refunded"

    def get_status_label(self) -> str:
        """The status as its tag says it: Paid, or what refunds made of it."""
        return str(REFUND_STATES.get(self.refund_state) or self.get_status_display())

    def get_dispute_display(self) -> str:
        """ "" (none), or the client's dispute with their bank, in words."""
        if not self.dispute_status:
            return ""
        return str(DISPUTE_STATES.get(self.dispute_status, DISPUTE_STATES["open"]))

    def get_payment_path(self) -> str:
        return reverse("wagtail_client_billing:pay", args=[self.token])

    def get_payment_url(self) -> str:
        return self.site.root_url.rstrip("/") + self.get_payment_path()

    @property
    def manage_key(self) -> str:
        """The secret of the client's subscription link: not the pay link's token (which
        the site's editors see), so only the client and the agency can open the portal."""
        return self.manage_keys()[0]

    def manage_keys(self) -> list[str]:
        """The key under ``SECRET_KEY``, then under each of ``SECRET_KEY_FALLBACKS`` (links
        emailed before a key rotation keep working)."""
        secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
        return [
            salted_hmac(MANAGE_SALT, self.token, secret=secret, algorithm="sha256").hexdigest()[:40]
            for secret in secrets
        ]

    def get_manage_url(self) -> str:
        """The client's link to their subscription (Stripe's customer portal), on the site."""
        path = reverse("wagtail_client_billing:manage", args=[self.token, self.manage_key])
        return self.site.root_url.rstrip("/") + path
