from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class WagtailClientBillingConfig(AppConfig):
    """Client billing for Wagtail: Stripe Connect, billing requests, webhooks, emails."""

    name = "wagtail_client_billing"
    label = "wagtail_client_billing"
    verbose_name = _("Client billing")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from . import billing_events, checks  # noqa: F401  (handlers, checks)
        from .compat import register_policy
        from .mail import tracking  # noqa: F401  (anymail's tracking signal)
        from .models import BillingRequest, SiteEmailSettings, WebhookEvent
        from .tasks import ensure_schedule
        from .views.email_settings import email_settings_policy
        from .views.events import webhook_event_policy
        from .views.requests import billing_request_policy

        post_migrate.connect(ensure_schedule, sender=self, dispatch_uid="wcb-schedule")

        # Before Wagtail creates fallback policies, which it does on first use.
        register_policy(WebhookEvent, webhook_event_policy)
        register_policy(BillingRequest, billing_request_policy)
        register_policy(SiteEmailSettings, email_settings_policy)
