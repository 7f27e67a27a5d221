"""Stripe webhook events, stored once under their id before they are applied."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils.translation import gettext_lazy as _

from .agency import Mode


class WebhookEvent(models.Model):
    class Status(models.TextChoices):
        RECEIVED = "received", _("Received")
        PROCESSED = "processed", _("Processed")
        IGNORED = "ignored", _("Ignored")
        FAILED = "failed", _("Failed")

    # Unique and indexed through Meta: no PostgreSQL "_like" indexes (LIKE is never asked).
    stripe_id = models.CharField(_("event id"), max_length=255)
    type = models.CharField(_("type"), max_length=255)
    account = models.CharField(_("account"), max_length=255, blank=True)
    livemode = models.BooleanField(_("live mode"), default=False)
    api_version = models.CharField(max_length=64, blank=True)
    payload = models.JSONField()
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.RECEIVED
    )
    note = models.TextField(_("note"), blank=True)
    error = models.TextField(_("error"), blank=True)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    received_at = models.DateTimeField(_("received"), auto_now_add=True, db_index=True)
    processed_at = models.DateTimeField(_("processed"), null=True, blank=True)

    #: Set while it is applied: the linked connection it is about (``match_connection``).
    linked_connection: Any = None

    class Meta:
        verbose_name = _("Stripe event")
        verbose_name_plural = _("Stripe events")
        ordering = ["-received_at", "-pk"]
        constraints = [models.UniqueConstraint(fields=["stripe_id"], name="wcb_event_stripe_id")]
        indexes = [
            models.Index(fields=["type"], name="wcb_event_type"),
            models.Index(fields=["account"], name="wcb_event_account"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.stripe_id}"

    @property
    def mode(self) -> Mode:
        return Mode.LIVE if self.livemode else Mode.TEST
