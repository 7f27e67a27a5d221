"""A tiny loopback HTTP server that records webhooks and serves landing pages.

Tests point the simulator's webhooks at ``receiver.webhook_url`` and Checkout's
``success_url``/``cancel_url`` (or onboarding's ``return_url``) at
``receiver.page_url("/success")``. Every POST is recorded with its raw body and
headers, so tests can check signatures with ``stripe.Webhook.construct_event``;
``fail_next`` makes it answer errors to exercise the simulator's retries.
"""

from __future__ import annotations

import html
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast


@dataclass
class ReceivedRequest:
    """One request the receiver got: raw body and headers as sent."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float = field(default_factory=time.time)

    @property
    def signature(self) -> str | None:
        """The ``Stripe-Signature`` header."""
        return self.headers.get("Stripe-Signature")

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)

    @property
    def event_type(self) -> str | None:
        """The event type, if the body is a Stripe event."""
        try:
            return self.json().get("type")
        except (ValueError, AttributeError):
            return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read ``requests`` instead

    def do_GET(self) -> None:
        receiver = self.server.receiver
        with receiver._cond:
            receiver.visits.append(self.path)
            receiver._cond.notify_all()
        page = (
            "<!doctype html><html><head><title>Receiver page</title></head><body>"
            f"<h1>Landed on {html.escape(self.path)}</h1></body></html>"
        ).encode()
        self._answer(200, page, "text/html; charset=utf-8")

    def do_POST(self) -> None:
        receiver = self.server.receiver
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with receiver._cond:
            status = 200
            if receiver._failures:
                status = receiver._failures.pop(0)
            receiver.requests.append(
                ReceivedRequest("POST", self.path, dict(self.headers.items()), body, status)
            )
            receiver._cond.notify_all()
        self._answer(status, b'{"received": true}' if status < 300 else b"{}", "application/json")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], receiver: WebhookReceiver) -> None:
        self.receiver = receiver
        super().__init__(address, _Handler)


class WebhookReceiver:
    """Records POSTed webhooks; answers GETs with a small page."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.requests: list[ReceivedRequest] = []
        self.visits: list[str] = []
        self._failures: list[int] = []
        self._cond = threading.Condition()
        self._server = _Server((host, port), self)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT``."""
        host, port = cast("tuple[str, int]", self._server.server_address[:2])  # AF_INET
        return f"http://{host}:{port}"

    @property
    def webhook_url(self) -> str:
        """Where to send webhooks."""
        return f"{self.url}/webhook"

    def page_url(self, path: str) -> str:
        """A landing page URL on this server (``/success?session={CHECKOUT_SESSION_ID}``)."""
        return f"{self.url}/{path.lstrip('/')}"

    def start(self) -> WebhookReceiver:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def fail_next(self, count: int = 1, status: int = 500) -> None:
        """Answer the next ``count`` POSTs with ``status``."""
        with self._cond:
            self._failures.extend([status] * count)

    def clear(self) -> None:
        """Forget recorded requests, visits and pending failures."""
        with self._cond:
            self.requests.clear()
            self.visits.clear()
            self._failures.clear()

    def received(self, event_type: str | None = None, *, ok: bool = True) -> list[ReceivedRequest]:
        """Recorded POSTs (by default those answered 2xx), optionally of one event type."""
        with self._cond:
            return [
                request
                for request in self.requests
                if (event_type is None or request.event_type == event_type)
                and (not ok or 200 <= request.status < 300)
            ]

    def wait_for(
        self, event_type: str | None = None, *, count: int = 1, timeout: float = 5.0,
        ok: bool = True,
    ) -> list[ReceivedRequest]:  # fmt: skip
        """Block until ``count`` matching webhooks arrived; return them all."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(found := self.received(event_type, ok=ok)) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    got = [request.event_type for request in self.requests]
                    raise TimeoutError(
                        f"Expected {count} {event_type or 'webhook'}(s) within {timeout}s; "
                        f"received {got}."
                    )
                self._cond.wait(remaining)
            return found

    def wait_for_visit(self, path_prefix: str, timeout: float = 5.0) -> str:
        """Block until a GET whose path starts with ``path_prefix``; return its path."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for visit in self.visits:
                    if visit.startswith(path_prefix):
                        return visit
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"No visit to {path_prefix} within {timeout}s.")
                self._cond.wait(remaining)
