"""The audit-log actions the package writes, as Wagtail's history pages show them."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from wagtail.log_actions import LogActionRegistry, LogFormatter

from . import billing
from .connections import ACTION_CONNECT, ACTION_ONBOARDED, ACTION_SWITCH_MODE, ACTION_UNLINK
from .mail import outbox, tracking
from .models import Refund
from .money import format_money
from .views import email_settings


class EmailSettingsEditFormatter(LogFormatter):
    label = _("Edit email settings")

    def format_message(self, log_entry: Any) -> str:
        data = log_entry.data or {}
        server, removed = data.get("server"), data.get("password_removed")
        if server and removed:
            message = gettext(
                "Email settings changed: server %(old)s → %(new)s; the stored password was removed"
            )
            return message % server
        if server:
            return gettext("Email settings changed: server %(old)s → %(new)s") % server
        if removed:
            return gettext("Email settings changed; the stored password was removed")
        return gettext("Email settings changed")


class ResendFormatter(LogFormatter):
    label = _("Resend email")

    def format_message(self, log_entry: Any) -> str:
        return _("The email to %(email)s is queued.") % (log_entry.data or {})


class TestEmailFormatter(LogFormatter):
    label = _("Send a test email")

    def format_message(self, log_entry: Any) -> str:
        data = log_entry.data or {}
        if data.get("error"):
            return _("Test email to %(to)s failed: %(error)s") % data
        return _("Test email sent to %(to)s") % data


class RefundFormatter(LogFormatter):
    label = _("Refund")

    def format_message(self, log_entry: Any) -> str:
        data = log_entry.data or {}
        amount = format_money(data.get("refunded") or 0, data.get("currency") or "")
        reason = Refund.Reason(data["reason"]).label if data.get("reason") in Refund.Reason else ""
        if data.get("dashboard"):
            message = gettext("Refunded %(amount)s in Stripe's dashboard")
        else:
            message = gettext("Refunded %(amount)s")
        message %= {"amount": amount}
        return f"{message} ({reason})" if reason else message


# (action, label, message)
ACTIONS = [
    (ACTION_CONNECT, _("Connect client billing account"), _("Client billing account connected")),
    (ACTION_ONBOARDED, _("Complete Stripe onboarding"), _("Stripe onboarding completed")),
    (ACTION_UNLINK, _("Unlink account"), _("Client billing account unlinked")),
    (ACTION_SWITCH_MODE, _("Switch billing mode"), _("Billing mode switched")),
    (billing.ACTION_CREATE, _("Send billing request"), _("Billing request sent")),
    (billing.ACTION_PAID, _("Mark paid"), _("Paid")),
    (billing.ACTION_EXPIRED, _("Expire"), _("Expired")),
    (billing.ACTION_DELETED, _("Delete billing request"), _("Deleted")),
    (billing.ACTION_PAYMENT_FAILED, _("Payment failed"), _("The client's payment failed")),
    (outbox.ACTION_EMAIL_FAILED, _("Email failed"), _("The email could not be sent")),
    (tracking.ACTION_EMAIL_TRACKED, _("Email event"), _("The email service reported a problem")),
    (billing.ACTION_RENEW, _("Renew billing request"), _("Renewed as a new billing request")),
    (billing.ACTION_DISPUTED, _("Dispute"), _("The client disputed the payment with their bank")),
    (
        billing.ACTION_SUBSCRIPTION_CANCELED,
        _("Cancel subscription"),
        _("Subscription canceled"),
    ),
]


def register(actions: LogActionRegistry) -> None:
    """The ``register_log_actions`` hook: every action, with its label and message."""
    for action, label, message in ACTIONS:
        actions.register_action(action, label, message)
    actions.register_action(email_settings.ACTION_EDIT)(EmailSettingsEditFormatter)
    actions.register_action(email_settings.ACTION_TEST)(TestEmailFormatter)
    actions.register_action(billing.ACTION_RESEND)(ResendFormatter)
    actions.register_action(billing.ACTION_REFUND)(RefundFormatter)
