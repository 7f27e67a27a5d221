"""Decode Stripe's form encoding (``a[b][0][c]=x``, ``expand[]=y``) and coerce values.

The SDK sends every v1 parameter as ``application/x-www-form-urlencoded`` with nested
keys in brackets; arrays are indexed (``line_items[0][quantity]=1``) or, from other
clients, appended (``enabled_events[]=*``). Values stay strings here: handlers coerce
them (``as_int``, ``as_bool``) so that errors can name the exact parameter.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from .errors import StripeError, invalid_param

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")


class _Appendable(list):
    """A list being built from ``key[]`` entries."""


def parse_form(body: str) -> dict[str, Any]:
    """Decode a form-encoded body or query string into nested dicts and lists."""
    root: dict[str, Any] = {}
    for raw_key, value in parse_qsl(body, keep_blank_values=True):
        match = _KEY.match(raw_key)
        if not match:
            raise StripeError(f"Invalid parameter name: {raw_key}", param=raw_key)
        parts = [match.group(1), *_PART.findall(match.group(2))]
        _assign(root, parts, value, raw_key)
    return _finish(root)


def _assign(node: dict[str, Any], parts: list[str], value: str, raw_key: str) -> None:
    head, rest = parts[0], parts[1:]
    if not rest:
        if isinstance(node.get(head), dict):
            raise StripeError(f"Invalid value for {raw_key}: expected a hash", param=raw_key)
        node[head] = value
        return
    if rest == [""]:
        # ``key[]=v`` appends to an array.
        target = node.setdefault(head, _Appendable())
        if not isinstance(target, list):
            raise StripeError(f"Invalid array: {raw_key}", param=raw_key)
        target.append(value)
        return
    child = node.setdefault(head, {})
    if not isinstance(child, dict):
        raise StripeError(f"Invalid hash: {raw_key}", param=raw_key)
    _assign(child, rest, value, raw_key)


def _finish(value: Any) -> Any:
    """Turn dicts keyed exactly 0..n-1 into lists, recursively."""
    if isinstance(value, list):
        return [_finish(item) for item in value]
    if not isinstance(value, dict):
        return value
    finished = {key: _finish(item) for key, item in value.items()}
    if finished and set(finished) == {str(index) for index in range(len(finished))}:
        return [finished[str(index)] for index in range(len(finished))]
    return finished


def flatten(params: Any, prefix: str = "") -> list[tuple[str, str]]:
    """The canonical ``(key, value)`` pairs of decoded params, for idempotency checks."""
    pairs: list[tuple[str, str]] = []
    if isinstance(params, dict):
        for key in sorted(params):
            name = f"{prefix}[{key}]" if prefix else key
            pairs.extend(flatten(params[key], name))
    elif isinstance(params, list):
        for index, item in enumerate(params):
            pairs.extend(flatten(item, f"{prefix}[{index}]"))
    else:
        pairs.append((prefix, str(params)))
    return pairs


def as_int(value: Any, param: str, *, minimum: int | None = None) -> int:
    """Coerce a form value to int or raise Stripe's ``parameter_invalid_integer``."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise invalid_param(param, f"Invalid integer: {value}", "parameter_invalid_integer")
    try:
        number = int(value)
    except ValueError:
        raise invalid_param(
            param, f"Invalid integer: {value}", "parameter_invalid_integer"
        ) from None
    if minimum is not None and number < minimum:
        raise invalid_param(
            param,
            f"This value must be greater than or equal to {minimum}.",
            "parameter_invalid_integer",
        )
    return number


def as_bool(value: Any, param: str) -> bool:
    """Coerce ``true``/``false`` to bool as Stripe does."""
    if value in ("true", True):
        return True
    if value in ("false", False):
        return False
    raise invalid_param(param, f"Invalid boolean: {value}")


def as_str(value: Any, param: str, *, max_length: int | None = None) -> str:
    """A string parameter (not a hash or array), optionally length-checked."""
    if not isinstance(value, str):
        raise invalid_param(param, f"Invalid string: {param} must be a string")
    if max_length is not None and len(value) > max_length:
        raise invalid_param(
            param,
            f"Invalid string: {value[:20]}...; must be at most {max_length} characters",
        )
    return value


def as_dict(value: Any, param: str) -> dict[str, Any]:
    """A hash parameter; Stripe's empty string ``key=`` means an empty hash."""
    if value == "":
        return {}
    if not isinstance(value, dict):
        raise invalid_param(param, f"Invalid hash: {param} must be a hash")
    return value


def as_list(value: Any, param: str) -> list[Any]:
    """An array parameter; a single value counts as a one-item array."""
    if value == "":
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        raise invalid_param(param, f"Invalid array: {param} must be an array")
    return [value]


def as_enum(value: Any, param: str, choices: tuple[str, ...]) -> str:
    """One of ``choices``, with Stripe's "must be one of" message otherwise."""
    if value not in choices:
        listed = ", ".join(choices[:-1]) + f", or {choices[-1]}" if len(choices) > 1 else choices[0]
        raise invalid_param(param, f"Invalid {param}: must be one of {listed}")
    return value


def metadata(value: Any, param: str = "metadata") -> dict[str, str]:
    """Validate a metadata hash with Stripe's limits (50 keys, 40-char keys, 500-char values)."""
    if isinstance(value, list):
        # Keys "0", "1"... decoded as an array: they are still metadata keys.
        value = {str(index): item for index, item in enumerate(value)}
    data = as_dict(value, param)
    if len(data) > 50:
        raise invalid_param(param, "You can have up to 50 metadata keys.")
    result: dict[str, str] = {}
    for key, item in data.items():
        if len(key) > 40:
            raise invalid_param(f"{param}[{key}]", "Metadata keys can have up to 40 characters.")
        if not isinstance(item, str):
            raise invalid_param(f"{param}[{key}]", "Metadata values must be strings.")
        if len(item) > 500:
            raise invalid_param(
                f"{param}[{key}]",
                "Metadata values can have up to 500 characters, but you passed in a value "
                f"that is {len(item)} characters.",
            )
        result[key] = item
    return result
