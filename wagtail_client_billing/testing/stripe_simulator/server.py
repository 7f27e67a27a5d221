"""The HTTP side: routing to the API, hosted pages and control API; auth, headers, idempotency.

API requests go through, in order: injected error faults, authentication
(``Authorization: Bearer sk_test_...``/``sk_live_...``; the prefix decides
``livemode``), the ``Stripe-Account`` check, routing, the idempotency layer (scoped
per key and account; a replay carries ``Idempotent-Replayed: true``), injected hangs,
and the handler.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from . import (  # noqa: F401 - they register routes
    api_checkout,
    api_connect,
    api_invoices,
    api_other,
    api_payments,
    api_portal,
    control,
    pages,
)
from .engine import DEFAULT_API_VERSION, RequestInfo
from .errors import StripeError, api_error
from .forms import flatten, parse_form
from .responses import Response, json_response
from .routes import ApiRequest, resolve
from .store import Scope, new_id

if TYPE_CHECKING:
    from .simulator import StripeSimulator

logger = logging.getLogger("wagtail_client_billing.stripe_simulator")

KEY_FORMAT = re.compile(r"^(sk|rk)_(test|live)_[A-Za-z0-9_]+$")
IDEMPOTENCY_TTL = 24 * 60 * 60
NO_KEY = (
    "You did not provide an API key. You need to provide your API key in the Authorization "
    "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
    "https://stripe.com/docs/api#authentication for details, or we can help at "
    "https://support.stripe.com/."
)


def redact(key: str) -> str:
    """``sk_test_********abcd``: how Stripe echoes a key in error messages."""
    prefix = key[: key.find("_", 3) + 1] if key.count("_") >= 2 else ""
    return f"{prefix}{'*' * 8}{key[-4:]}"


class SimulatorServer(ThreadingHTTPServer):
    """A threading HTTP server that knows its simulator."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], simulator: StripeSimulator) -> None:
        self.simulator = simulator
        super().__init__(address, Handler)


class Handler(BaseHTTPRequestHandler):
    """One connection; keep-alive as the SDK's HTTP client expects."""

    protocol_version = "HTTP/1.1"
    server_version = "StripeSimulator/1.0"
    server: SimulatorServer

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)

    # Headers and body go out in separate writes: without TCP_NODELAY every response
    # waits some 40 ms for the client's delayed ACK (Nagle's algorithm).
    disable_nagle_algorithm = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Nothing: ``_handle`` logs each request once, with its account and timing."""

    def _handle(self, method: str) -> None:
        started = time.monotonic()
        sim = self.server.simulator
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            if url.path.startswith("/v1/"):
                with sim.api_calls:
                    sim.api_calls_running += 1
                try:
                    response = self._api(method, url.path, url.query, body)
                finally:
                    with sim.api_calls:
                        sim.api_calls_running -= 1
                        sim.api_calls.notify_all()
            elif url.path.startswith("/_simulator/"):
                response = control.handle(sim, method, url.path, url.query, body)
            else:
                with sim.engine.lock:
                    response = pages.handle(sim, method, url.path, url.query, body)
        except Exception:
            logger.exception("Stripe simulator failed on %s %s", method, self.path)
            response = json_response(500, api_error("The Stripe simulator crashed.").body())
        elapsed = (time.monotonic() - started) * 1000
        account = self.headers.get("Stripe-Account")
        # Logged before the response goes out, so that whoever reads the log once the
        # client has its answer finds the line there. DEBUG so that a host project's
        # logging stays quiet in tests; the CLI shows it.
        logger.debug(
            "%s %s -> %d%s (%.0f ms)",
            method,
            url.path,
            response.status,
            f" [{account}]" if account else "",
            elapsed,
        )
        self._send(response)

    def _send(self, response: Response) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (a hang fault past its timeout): nothing to answer.
            self.close_connection = True

    # The Stripe API ----------------------------------------------------------------------

    def _api(self, method: str, path: str, query: str, body: bytes) -> Response:
        sim = self.server.simulator
        engine = sim.engine
        request_id = new_id("req")
        version = self.headers.get("Stripe-Version") or DEFAULT_API_VERSION
        headers = {
            "Request-Id": request_id,
            "Stripe-Version": version,
            "Cache-Control": "no-cache, no-store",
        }
        idem_key = self.headers.get("Idempotency-Key") if method == "POST" else None
        if idem_key:
            headers["Idempotency-Key"] = idem_key
        reserved = None
        try:
            fault = engine.faults.take(method, path)
            if fault and fault.kind == "error":
                error = api_error(fault.message, fault.status)
                return json_response(
                    error.status, error.body(), {**headers, "Stripe-Should-Retry": "true"}
                )
            api_key = self._authenticate()
            livemode = "_live_" in api_key
            account = self.headers.get("Stripe-Account") or None
            if account and not engine.store.account_exists(account, livemode):
                raise StripeError(
                    f"The provided key '{redact(api_key)}' does not have access to account "
                    f"'{account}' (or that account does not exist). Application access may "
                    "have been revoked.",
                    status=403,
                    code="account_invalid",
                )
            handler, args, route = resolve(method, path)
            text = (body.decode("utf-8") if method == "POST" else query) or ""
            params = parse_form(text)
            if idem_key:
                reservation = (api_key, account or "", idem_key)
                replay = self._idempotency(reservation, (method, path, flatten(params)))
                if replay is not None:
                    return Response(
                        replay.status,
                        replay.body,
                        headers={**headers, "Idempotent-Replayed": "true"},
                    )
                reserved = reservation
            generation = engine.store.generation
            if fault and fault.kind == "hang":
                sim.stopping.wait(fault.seconds)
                if generation != engine.store.generation or sim.stopping.is_set():
                    error = api_error("The Stripe simulator was reset during this request.")
                    return json_response(error.status, error.body(), headers)
            info = RequestInfo(id=request_id, idempotency_key=idem_key, api_version=version)
            request = ApiRequest(
                method=method,
                path=path,
                params=params,
                scope=Scope(livemode, account),
                api_key=api_key,
                info=info,
                engine=engine,
                args=args,
                route=route,
            )
            with engine.lock:
                # Serialize under the lock: the ticker may be changing the same object.
                status, payload = handler(request)
                response = json_response(status, payload, headers)
            if reserved is not None and 200 <= status < 300:
                with engine.lock:
                    # Only requests that executed are saved, as at Stripe (not validation
                    # errors, not injected faults).
                    engine.store.idempotency[reserved] = {
                        "fingerprint": (method, path, flatten(params)),
                        "response": response,
                        "created": engine.now(),
                    }
            return response
        except StripeError as error:
            return json_response(error.status, error.body(), {**headers, **error.headers})
        finally:
            if reserved is not None:
                with engine.lock:
                    engine.store.idempotency_in_flight.discard(reserved)

    def _authenticate(self) -> str:
        """The API key of the request, or a 401 Stripe would give."""
        header = self.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        key = ""
        if scheme.lower() == "bearer":
            key = credentials.strip()
        elif scheme.lower() == "basic":
            try:
                key = base64.b64decode(credentials).decode("utf-8").partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                key = ""
        if not key:
            raise StripeError(NO_KEY, status=401)
        allowed = self.server.simulator.api_keys
        if not KEY_FORMAT.match(key) or (allowed is not None and key not in allowed):
            raise StripeError(f"Invalid API Key provided: {redact(key)}", status=401)
        return key

    def _idempotency(
        self, reservation: tuple[str, str, str], fingerprint: tuple[Any, ...]
    ) -> Response | None:
        """A saved response to replay, None to go ahead, or an idempotency error."""
        engine = self.server.simulator.engine
        with engine.lock:
            saved = engine.store.idempotency.get(reservation)
            if saved and saved["created"] + IDEMPOTENCY_TTL < engine.now():
                del engine.store.idempotency[reservation]  # keys expire after 24 hours
                saved = None
            if saved:
                if saved["fingerprint"] != fingerprint:
                    raise StripeError(
                        "Keys for idempotent requests can only be used with the same "
                        "parameters they were first used with. Try using a key other than "
                        f"'{reservation[2]}' if you meant to execute a different request.",
                        type="idempotency_error",
                    )
                return saved["response"]
            if reservation in engine.store.idempotency_in_flight:
                raise StripeError(
                    "There is currently another in-progress request using this Stripe API "
                    "Key and Idempotency Key. Please try again later.",
                    status=409,
                    code="idempotency_key_in_use",
                )
            engine.store.idempotency_in_flight.add(reservation)
            return None
