"""Checkout Session options about what follows the payment: ``invoice_creation``,
``tax_id_collection`` and ``billing_address_collection``, validated as Stripe does."""

from __future__ import annotations

from typing import Any

from .errors import StripeError
from .forms import as_bool, as_dict, as_enum, as_list, as_str, metadata

MAX_CUSTOM_FIELDS = 4


def invoicing_options(params: dict[str, Any], mode: str) -> dict[str, Any]:
    """The clean options of a new session (empty if none was given)."""
    clean: dict[str, Any] = {}
    if "invoice_creation" in params:
        section = as_dict(params["invoice_creation"], "invoice_creation")
        if "enabled" not in section:
            raise StripeError(
                "Missing required param: invoice_creation[enabled].",
                code="parameter_missing",
                param="invoice_creation[enabled]",
            )
        enabled = as_bool(section["enabled"], "invoice_creation[enabled]")
        if enabled and mode != "payment":
            raise StripeError(
                "`invoice_creation` can only be used in `payment` mode. Subscriptions "
                "already create invoices.",
                param="invoice_creation",
            )
        data = as_dict(section.get("invoice_data", {}), "invoice_creation[invoice_data]")
        clean["invoice_creation"] = {"enabled": enabled, "invoice_data": _invoice_data(data)}
    if "tax_id_collection" in params:
        section = as_dict(params["tax_id_collection"], "tax_id_collection")
        enabled = as_bool(section.get("enabled", "false"), "tax_id_collection[enabled]")
        clean["tax_id_collection"] = {"enabled": enabled}
    if "billing_address_collection" in params:
        clean["billing_address_collection"] = as_enum(
            params["billing_address_collection"], "billing_address_collection", ("auto", "required")
        )
    return clean


def _invoice_data(data: dict[str, Any]) -> dict[str, Any]:
    prefix = "invoice_creation[invoice_data]"
    for unsupported in ("account_tax_ids", "issuer", "rendering_options"):
        if unsupported in data:
            raise StripeError(
                f"The Stripe simulator does not support {prefix}[{unsupported}].",
                param=f"{prefix}[{unsupported}]",
            )
    fields = None
    if "custom_fields" in data:
        raw = as_list(data["custom_fields"], f"{prefix}[custom_fields]")
        if len(raw) > MAX_CUSTOM_FIELDS:
            raise StripeError(
                f"You can have at most {MAX_CUSTOM_FIELDS} custom fields.",
                param=f"{prefix}[custom_fields]",
            )
        fields = []
        for index, entry in enumerate(raw):
            param = f"{prefix}[custom_fields][{index}]"
            entry = as_dict(entry, param)
            for key, limit in (("name", 40), ("value", 140)):
                if not entry.get(key):
                    raise StripeError(
                        f"Missing required param: {param}[{key}].",
                        code="parameter_missing",
                        param=f"{param}[{key}]",
                    )
                as_str(entry[key], f"{param}[{key}]", max_length=limit)
            fields.append({"name": entry["name"], "value": entry["value"]})
    footer = data.get("footer")
    description = data.get("description")
    return {
        "custom_fields": fields or None,
        "description": as_str(description, f"{prefix}[description]", max_length=1500) or None
        if description is not None
        else None,
        "footer": as_str(footer, f"{prefix}[footer]", max_length=5000) or None
        if footer is not None
        else None,
        "metadata": metadata(data.get("metadata", {}), f"{prefix}[metadata]"),
    }


def session_invoice_creation(clean: dict[str, Any], mode: str) -> dict[str, Any] | None:
    """The session's ``invoice_creation`` object (null in subscription mode)."""
    if mode != "payment":
        return None
    given = clean.get("invoice_creation") or {"enabled": False, "invoice_data": {}}
    data = given["invoice_data"]
    return {
        "enabled": given["enabled"],
        "invoice_data": {
            "account_tax_ids": None,
            "custom_fields": data.get("custom_fields"),
            "description": data.get("description"),
            "footer": data.get("footer"),
            "issuer": {"type": "self"} if given["enabled"] else None,
            "metadata": data.get("metadata") or {},
            "rendering_options": None,
        },
    }
