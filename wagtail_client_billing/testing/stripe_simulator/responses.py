"""The response value that the API, hosted pages and control API hand to the server."""

from __future__ import annotations

import html
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


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 32rem; margin: 3rem auto; color: #1a1f36; }
.mode { background: #ffde92; padding: .25rem .5rem; border-radius: 4px; font-size: .8rem; }
.amount { font-size: 2rem; font-weight: 600; margin: .5rem 0 1.5rem; }
label, input, button { display: block; width: 100%; box-sizing: border-box; margin: .4rem 0; }
input { padding: .5rem; } button { padding: .7rem; font-size: 1rem; cursor: pointer; }
button.primary { background: #635bff; color: white; border: 0; border-radius: 6px; }
.notice { padding: 1rem; background: #f6f8fa; border-radius: 6px; }
"""


def page(title: str, body: str, status: int = 200, lang: str = "en") -> Response:
    """A hosted page: ``body`` in the simulator's plain HTML frame."""
    document = (
        f"<!doctype html><html lang='{html.escape(lang)}'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )
    return html_response(status, document)
