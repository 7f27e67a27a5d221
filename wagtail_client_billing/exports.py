"""Spreadsheet exports that a spreadsheet program opens as text, never as formulas.

Descriptions and emails are typed by site editors and clients: a cell starting with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return is run as a formula by Excel,
LibreOffice and Google Sheets when a CSV is opened (CSV injection). As OWASP advises,
such a cell is prefixed with a single quote, which the program shows as text. XLSX needs
nothing of ours: Wagtail writes formula-looking cells as strings.
https://owasp.org/www-community/attacks/CSV_Injection
"""

from __future__ import annotations

from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """``value`` as a CSV cell that cannot be read as a formula (strings only)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class SafeCSVExportMixin:
    """For a view with Wagtail's ``SpreadsheetExportMixin``: every CSV cell via ``csv_safe``."""

    def preprocess_field_value(self, field: str, value: Any, export_format: str) -> Any:
        value = super().preprocess_field_value(field, value, export_format)  # type: ignore[misc]
        if export_format == "csv":
            return csv_safe(value)
        return value
