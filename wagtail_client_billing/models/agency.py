"""The agency's Stripe account: one connection per mode, and which mode is active."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _
from django_countries import countries
from wagtail.contrib.settings.models import BaseGenericSetting


class Mode(models.TextChoices):
    """Stripe's two worlds, kept apart everywhere: test data or real money."""

    TEST = "test", _("Test mode")
    LIVE = "live", _("Live mode")


class StripeConnection(models.Model):
    """A Stripe account for one mode, at most one linked; unlinking keeps the row (history)."""

    class Status(models.TextChoices):
        ONBOARDING = "onboarding", _("Onboarding incomplete")
        RESTRICTED = "restricted", _("Restricted")
        READY = "ready", _("Ready to charge")

    mode = models.CharField(_("mode"), max_length=4, choices=Mode.choices)
    account_id = models.CharField(_("Stripe account"), max_length=255)
    direct = models.BooleanField(
        _("direct mode"),
        default=False,
        help_text=_("The platform's own Stripe account takes the payments (no Connect)."),
    )
    country = models.CharField(_("country"), max_length=2, blank=True)
    privacy_policy_url = models.URLField(_("privacy policy URL"), max_length=500, blank=True)
    terms_of_service_url = models.URLField(_("terms of service URL"), max_length=500, blank=True)
    details_submitted = models.BooleanField(default=False)
    charges_enabled = models.BooleanField(default=False)
    payouts_enabled = models.BooleanField(default=False)
    requirements_due = models.JSONField(default=list, blank=True)
    disabled_reason = models.CharField(max_length=255, blank=True)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    connected_at = models.DateTimeField(auto_now_add=True)
    onboarded_at = models.DateTimeField(null=True, blank=True)
    unlinked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("client billing account")
        verbose_name_plural = _("client billing accounts")
        constraints = [
            models.UniqueConstraint(
                fields=["mode"],
                condition=models.Q(unlinked_at__isnull=True),
                name="wcb_one_linked_connection_per_mode",
            )
        ]
        permissions = [
            ("manage_agency_billing", _("Can manage the agency's client billing account")),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} ({self.mode})"

    @property
    def status(self) -> str:
        if self.charges_enabled:
            return self.Status.READY
        if self.details_submitted:
            return self.Status.RESTRICTED
        return self.Status.ONBOARDING

    def get_status_display(self) -> str:
        return str(self.Status(self.status).label)

    def get_country_display(self) -> str:
        """The country's name in the reader's language ("France", "Allemagne")."""
        return str(countries.name(self.country)) or self.country

    @property
    def is_linked(self) -> bool:
        return self.unlinked_at is None


class AgencyBillingSettings(BaseGenericSetting):
    """The agency's one settings row: the active mode (changed only through
    ``connections.switch_mode``, audited), who hears of payments, and what invoices say."""

    active_mode = models.CharField(
        _("active mode"), max_length=4, choices=Mode.choices, default=Mode.TEST
    )
    notify_payments = models.BooleanField(
        _("Email me when money arrives"),
        default=True,
        help_text=_(
            "An email when a billing request is paid, refunded or disputed, or a subscription "
            "payment fails."
        ),
    )
    notification_recipients = models.TextField(
        _("Notification recipients"),
        blank=True,
        help_text=_("One address per line. Empty: every active superuser with an email address."),
    )
    create_invoices = models.BooleanField(
        _("Invoice one-time payments"),
        default=True,
        help_text=_(
            "Stripe makes a numbered invoice (PDF) and a receipt for each one-time payment. "
            "Subscriptions always have invoices."
        ),
    )
    invoice_footer = models.TextField(
        _("Invoice footer"),
        blank=True,
        max_length=5000,
        help_text=_("Printed at the bottom of each invoice (legal notices, payment terms)."),
    )
    invoice_custom_fields = models.TextField(
        _("Invoice fields"),
        blank=True,
        help_text=_(
            'Up to 4 lines "Name: value" printed on each invoice, e.g. "VAT number: FR12345678901".'
        ),
    )
    collect_tax_id = models.BooleanField(
        _("Ask for the client's tax ID"),
        default=False,
        help_text=_("Checkout lets a business client enter its VAT or other tax ID."),
    )
    collect_billing_address = models.BooleanField(
        _("Ask for the client's billing address"), default=False
    )

    class Meta:
        verbose_name = _("agency billing settings")
