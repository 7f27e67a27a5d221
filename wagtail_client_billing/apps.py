from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class WagtailClientBillingConfig(AppConfig):
    """Client billing for Wagtail: Stripe Connect, billing requests, webhooks, emails."""

    name = "wagtail_client_billing"
    verbose_name = _("Client billing")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (system checks)
        from .compat import register_policy
        from .mail import tracking  # noqa: F401  (anymail's tracking signal)
        from .permissions import POLICIES
        from .tasks import ensure_schedule

        post_migrate.connect(ensure_schedule, sender=self, dispatch_uid="wcb-schedule")
        # Before Wagtail creates fallback policies, which it does on first use.
        for policy in POLICIES:
            register_policy(policy.model, policy)
