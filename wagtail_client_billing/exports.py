"""The overview's export: CSV cells a spreadsheet would read as formulas get a leading quote,
as OWASP advises (https://owasp.org/www-community/attacks/CSV_Injection; Wagtail's XLSX
writes them as text); each request's invoice number comes with the export's one query."""

from __future__ import annotations

from typing import Any

from django.db.models import OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from .models import Invoice

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class SafeCSVExportMixin:
    """For a view with Wagtail's ``SpreadsheetExportMixin``: no CSV cell reads as a formula."""

    def preprocess_field_value(self, field: str, value: Any, export_format: str) -> Any:
        value = super().preprocess_field_value(field, value, export_format)  # type: ignore[misc]
        if export_format == "csv" and isinstance(value, str) and value.startswith(FORMULA_STARTS):
            return "'" + value
        return value


def latest_invoice_number() -> Coalesce:
    """A request's latest numbered invoice's number ("" if none), for ``annotate``: a
    subscription's latest payment, a one-time payment's invoice; never a voided one."""
    invoices = Invoice.objects.filter(billing_request=OuterRef("pk")).exclude(status="void")
    latest = invoices.exclude(number="").order_by("-created", "-pk").values("number")[:1]
    return Coalesce(Subquery(latest), Value(""))


class InvoiceNumberExportMixin:
    """For a view with Wagtail's ``SpreadsheetExportMixin``: ``invoice_number`` on each
    exported request (the listing itself does not pay for it)."""

    is_export: bool

    def get_queryset(self) -> QuerySet:
        queryset = super().get_queryset()  # type: ignore[misc]
        return (
            queryset.annotate(invoice_number=latest_invoice_number())
            if self.is_export
            else queryset
        )
