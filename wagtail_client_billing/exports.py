"""CSV cells a spreadsheet would read as formulas get a leading quote, as OWASP advises
(https://owasp.org/www-community/attacks/CSV_Injection); Wagtail's XLSX writes them as text."""

from __future__ import annotations

from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class SafeCSVExportMixin:
    """For a view with Wagtail's ``SpreadsheetExportMixin``: no CSV cell reads as a formula."""

    def preprocess_field_value(self, field: str, value: Any, export_format: str) -> Any:
        value = super().preprocess_field_value(field, value, export_format)  # type: ignore[misc]
        if export_format == "csv" and isinstance(value, str) and value.startswith(FORMULA_STARTS):
            return "'" + value
        return value
