"""The response value that the API, hosted pages and control API hand to the server."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Response:
    """Status, body and headers to write back."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON response, pretty-printed as Stripe's are."""
    body = json.dumps(payload, indent=2).encode("utf-8")
    return Response(status, body, headers=headers or {})


def html_response(status: int, document: str) -> Response:
    """An HTML page."""
    return Response(status, document.encode("utf-8"), "text/html; charset=utf-8")


def redirect(location: str) -> Response:
    """A 303 See Other, as Stripe's hosted pages answer a form."""
    return Response(303, b"", "text/plain", {"Location": location})
