"""The agency's listing of received Stripe events."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from wagtail.admin.viewsets.model import ModelViewSet

from ..compat import PolicyViewSetMixin
from ..models import WebhookEvent
from ..permissions import AgencyPermissionPolicy

webhook_event_policy = AgencyPermissionPolicy(WebhookEvent)


class WebhookEventViewSet(PolicyViewSetMixin, ModelViewSet):
    """Received events: type, account, mode, received, processed, error."""

    model = WebhookEvent
    policy = webhook_event_policy
    icon = "resubmit"
    menu_label = _("Stripe events")
    add_to_admin_menu = False
    inspect_view_enabled = True
    # Events are never added or edited by hand: the policy allows "view" only.
    exclude_form_fields: list[str] = []
    list_display = ["type", "account", "mode", "status", "received_at", "processed_at"]
    list_filter = ["status", "type", "livemode"]
    search_fields = ["stripe_id", "type", "account"]
    url_prefix = "client-billing/events"
    name = "wagtail_client_billing_events"


webhook_event_viewset = WebhookEventViewSet()
