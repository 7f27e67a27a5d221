"""The agency's overview: every site's billing requests, totals per currency, export."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy
from wagtail.models import Site

from .. import reports
from ..exports import InvoiceNumberExportMixin, SafeCSVExportMixin
from ..icons import ICON
from ..models import AgencyBillingSettings, BillingRequest
from ..models.agency import Mode
from ..permissions import AgencyAdminRequiredMixin
from .listing import URL_NAME, BillingRequestFilterSet, IndexView


class OverviewFilterSet(BillingRequestFilterSet):
    site = django_filters.ModelMultipleChoiceFilter(
        label=gettext_lazy("Site"),
        queryset=Site.objects.order_by("site_name", "hostname"),
        distinct=False,  # a foreign key on the request itself: no duplicates to remove
    )
    mode = django_filters.ChoiceFilter(label=gettext_lazy("Mode"), choices=Mode.choices)

    class Meta(BillingRequestFilterSet.Meta):
        fields = ["site", "mode", *BillingRequestFilterSet.Meta.fields]


class OverviewView(
    AgencyAdminRequiredMixin, SafeCSVExportMixin, InvoiceNumberExportMixin, IndexView
):
    template_name = "wagtail_client_billing/overview/index.html"
    results_template_name = "wagtail_client_billing/overview/index_results.html"
    page_title = gettext_lazy("Client billing overview")
    filterset_class = OverviewFilterSet
    export_filename = "client-billing"
    search_fields = ["email", "description"]
    list_export = [
        "site",
        "email",
        "description",
        "amount_major",
        "currency_code",
        "get_billing_type_display",
        "get_status_label",
        "refunded_major",
        "created_at",
        "expires_at",
        "paid_at",
        "get_mode_display",
        "invoice_number",
    ]
    # The other columns are headed by their model field's verbose name.
    export_headings = {
        "site": gettext_lazy("Site"),
        "amount_major": gettext_lazy("Amount"),
        "currency_code": gettext_lazy("Currency"),
        "get_billing_type_display": gettext_lazy("Billing type"),
        "get_status_label": gettext_lazy("Status"),
        "refunded_major": gettext_lazy("Refunded"),
        "get_mode_display": gettext_lazy("Mode"),
        "invoice_number": gettext_lazy("Invoice number"),
    }
    model = BillingRequest
    header_icon = ICON
    index_url_name = f"{URL_NAME}:overview"
    index_results_url_name = f"{URL_NAME}:overview_results"
    inspect_url_name = f"{URL_NAME}:inspect"
    site = None
    every_site = True

    def get_base_queryset(self) -> QuerySet:
        # Not the rows still waiting for Stripe's session (billing.create_request).
        return BillingRequest.objects.exclude(status=BillingRequest.CREATING).select_related("site")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        base = self.get_base_queryset()
        sites = self.request.GET.getlist("site")
        if sites and all(site.isdigit() for site in sites):
            base = base.filter(site__in=sites)
        # The totals count the active mode's requests only (the listing shows both).
        mode = AgencyBillingSettings.load(request_or_site=self.request).active_mode
        totals = reports.totals(base.filter(mode=mode))
        recurring = reports.recurring(base.filter(mode=mode))
        context = super().get_context_data(**kwargs)
        return {**context, "mode": mode, "totals": totals, "recurring": recurring}


overview = OverviewView.as_view()
overview_results = OverviewView.as_view(results_only=True)
