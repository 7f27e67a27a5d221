"""The Wagtail home page panel: money of the user's sites at a glance."""

from __future__ import annotations

from typing import Any

from wagtail.admin.ui.components import Component

from .. import connections, reports
from .listing import requests_for


class BillingDashboardPanel(Component):
    """Pending and paid this month per currency, the latest payments, 12 months of paid."""

    name = "wagtail_client_billing"
    template_name = "wagtail_client_billing/dashboard/panel.html"
    order = 150

    def get_context_data(self, parent_context: Any) -> dict[str, Any]:
        # Only the active mode's money: test payments never swell the live totals.
        mode = connections.active_mode()
        requests = requests_for(parent_context["request"].user).filter(mode=mode)
        return {
            **super().get_context_data(parent_context),
            **reports.totals(requests),
            "latest": reports.latest_payments(requests),
            "recurring": reports.recurring(requests),
            "chart": reports.chart(reports.paid_per_month(requests)),
            "mode": mode,
        }
