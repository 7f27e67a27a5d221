"""What Checkout puts on invoices and asks the client for: the agency's invoice settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..models import AgencyBillingSettings

#: The settings' columns, in ``Invoicing``'s order (read by ``creation._looked_up``).
COLUMNS = (
    "create_invoices",
    "invoice_footer",
    "invoice_custom_fields",
    "collect_tax_id",
    "collect_billing_address",
)
MAX_FIELDS, MAX_NAME, MAX_VALUE, MAX_FOOTER = 4, 40, 140, 5000  # Stripe's limits


@dataclass(frozen=True)
class Invoicing:
    """The agency's invoice settings, as Checkout needs them."""

    create_invoices: bool = True
    footer: str = ""
    custom_fields: str = ""  # "Name: value" per line (forms.InvoiceSettingsForm)
    collect_tax_id: bool = False
    collect_billing_address: bool = False

    @classmethod
    def of_row(cls, row: list[Any] | tuple[Any, ...]) -> Invoicing:
        """From the ``COLUMNS`` of a query; no settings row (NULLs): the defaults."""
        if row[0] is None:
            return cls()
        return cls(bool(row[0]), row[1] or "", row[2] or "", bool(row[3]), bool(row[4]))

    @classmethod
    def current(cls) -> Invoicing:
        row = AgencyBillingSettings.load()
        return cls.of_row([getattr(row, name) for name in COLUMNS])

    def fields(self) -> list[dict[str, str]]:
        """Stripe's ``custom_fields``: at most 4, each a name and a value within Stripe's limits
        (the form checks them; a row changed another way must not stop every payment)."""
        pairs = (line.partition(":") for line in self.custom_fields.splitlines())
        named = [(name.strip(), value.strip()) for name, _colon, value in pairs]
        fields = [{"name": n[:MAX_NAME], "value": v[:MAX_VALUE]} for n, v in named if n and v]
        return fields[:MAX_FIELDS]

    def checkout_params(self, *, recurring: bool, metadata: dict[str, str]) -> dict[str, Any]:
        """Checkout's invoice and collection parameters. A one-time payment's invoice carries
        the request's ``metadata`` (how ``events.invoices`` finds its request); subscriptions
        always have invoices, with the account's own footer."""
        params: dict[str, Any] = {}
        if self.create_invoices and not recurring:
            data: dict[str, Any] = {"metadata": metadata, "custom_fields": self.fields()}
            if footer := self.footer.strip()[:MAX_FOOTER]:
                data["footer"] = footer
            params["invoice_creation"] = {"enabled": True, "invoice_data": data}
        if self.collect_tax_id:
            params["tax_id_collection"] = {"enabled": True}
        if self.collect_billing_address:
            params["billing_address_collection"] = "required"
        return params
