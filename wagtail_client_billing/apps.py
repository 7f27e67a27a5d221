from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class WagtailClientBillingConfig(AppConfig):
    """Client billing for Wagtail: Stripe Connect, billing requests, webhooks, emails."""

    name = "wagtail_client_billing"
    label = "wagtail_client_billing"
    verbose_name = _("Client billing")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
        from .compat import register_policy
        from .models import WebhookEvent
        from .views.events import webhook_event_policy

        # Before Wagtail creates fallback policies, which it does on first use.
        register_policy(WebhookEvent, webhook_event_policy)
