"""Webhook delivery: Stripe's signature, a background queue, retries with back-off, a log.

Events are POSTed as JSON with ``Stripe-Signature: t=<unix>,v1=<hex>``, the HMAC-SHA256
of ``"<t>.<body>"`` keyed with the endpoint's ``whsec_`` secret, exactly as Stripe
signs, so ``stripe.Webhook.construct_event`` accepts them. A non-2xx answer (redirects
included, as at Stripe) or a connection error is retried after ``retry_base * 2**n``
seconds, up to ``max_attempts`` attempts.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from .store import random_token

logger = logging.getLogger("wagtail_client_billing.stripe_simulator.webhooks")


def compute_signature(payload: bytes | str, secret: str, timestamp: int) -> str:
    """The hex ``v1`` signature of ``payload`` at ``timestamp``."""
    body = payload.decode("utf-8") if isinstance(payload, bytes) else payload
    message = f"{timestamp}.{body}".encode()
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signature_header(payload: bytes | str, secret: str, timestamp: int | None = None) -> str:
    """A complete ``Stripe-Signature`` header value for ``payload``."""
    # Receivers compare ``t`` with their own wall clock (300 s tolerance), so signing
    # uses real time even when the simulator's clock has been moved forward.
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},v1={compute_signature(payload, secret, timestamp)}"


def new_secret() -> str:
    """A fresh ``whsec_`` signing secret."""
    return f"whsec_{random_token(32)}"


@dataclass
class WebhookTarget:
    """Where events go: an API-created endpoint or one given to the simulator directly.

    ``livemode``/``connect`` of None match both values: the endpoint given on the
    command line receives every event, platform and Connect, test and live.
    """

    id: str
    url: str
    secret: str
    livemode: bool | None = None
    connect: bool | None = None
    enabled_events: tuple[str, ...] = ("*",)
    account: str | None = None
    disabled: bool = False

    def matches(self, event: dict[str, Any]) -> bool:
        """Whether Stripe would send ``event`` to this endpoint."""
        if self.disabled:
            return False
        if self.livemode is not None and self.livemode != event["livemode"]:
            return False
        event_account = event.get("account")
        if self.connect is True and (event_account is None or self.account is not None):
            return False
        if self.connect is False and event_account != self.account:
            return False
        return "*" in self.enabled_events or event["type"] in self.enabled_events


@dataclass
class Delivery:
    """One attempt to deliver one event to one endpoint (``status`` None: no answer)."""

    event_id: str
    event_type: str
    endpoint_id: str
    url: str
    attempt: int
    status: int | None
    ok: bool
    error: str | None = None
    fault: str | None = None
    account: str | None = None
    livemode: bool = False
    at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form for the control API."""
        return asdict(self)


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    generation: int = field(compare=False)
    event: dict[str, Any] = field(compare=False)
    body: bytes = field(compare=False)
    target: WebhookTarget = field(compare=False)
    attempt: int = field(compare=False, default=1)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # Stripe counts a redirect as a failed delivery.


class WebhookDispatcher:
    """Delivers events in background threads and records every attempt."""

    def __init__(
        self,
        *,
        retry_base: float = 1.0,
        retry_max_delay: float = 60.0,
        max_attempts: int = 6,
        timeout: float = 10.0,
        workers: int = 8,
        on_success: Callable[[str], None] | None = None,
    ) -> None:
        self.retry_base = retry_base
        self.retry_max_delay = retry_max_delay
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.workers = workers
        self.on_success = on_success
        self.log: list[Delivery] = []
        self._cond = threading.Condition()
        self._queue: list[_Job] = []
        self._seq = itertools.count()
        self._generation = 0
        self._drop_next = 0
        self._duplicate_next = 0
        self._running = False
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        # An opener that ignores proxy environment variables: receivers are local.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)

    def start(self) -> None:
        """Start the scheduler thread and the worker pool."""
        with self._cond:
            if self._running:
                return
            self._running = True
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="stripe-sim-webhook")
        self._thread = threading.Thread(target=self._run, name="stripe-sim-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop delivering; queued deliveries are abandoned."""
        with self._cond:
            self._running = False
            self._generation += 1
            self._queue.clear()
            self._cond.notify_all()
        if self._thread:
            self._thread.join(timeout=5)
        if self._pool:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def clear(self) -> None:
        """Forget queued deliveries, the log and pending faults (attempts in flight are
        finished but not recorded)."""
        with self._cond:
            self._generation += 1
            self._queue.clear()
            self.log.clear()
            self._drop_next = self._duplicate_next = 0
            self._cond.notify_all()

    def drop_next(self, count: int = 1) -> None:
        """Lose the next ``count`` deliveries (no attempt, no retry) as a network might."""
        with self._cond:
            self._drop_next += count

    def duplicate_next(self, count: int = 1) -> None:
        """Send each of the next ``count`` deliveries twice."""
        with self._cond:
            self._duplicate_next += count

    def clear_faults(self) -> None:
        """Cancel pending drop/duplicate faults."""
        with self._cond:
            self._drop_next = self._duplicate_next = 0

    def pending_faults(self) -> dict[str, int]:
        """Webhook faults not yet used up."""
        with self._cond:
            return {"drop": self._drop_next, "duplicate": self._duplicate_next}

    def enqueue(self, event: dict[str, Any], targets: list[WebhookTarget]) -> None:
        """Queue ``event`` for every target; Stripe sends pretty-printed JSON."""
        body = json.dumps(event, indent=2).encode("utf-8")
        with self._cond:
            for target in targets:
                job = _Job(time.monotonic(), next(self._seq), self._generation, event, body, target)
                heapq.heappush(self._queue, job)
            self._cond.notify_all()

    def deliveries(self) -> list[Delivery]:
        """A copy of the delivery log, oldest first."""
        with self._cond:
            return list(self.log)

    def wait_for(
        self, match: Callable[[Delivery], bool], count: int = 1, timeout: float = 5.0
    ) -> list[Delivery]:
        """Block until ``count`` logged deliveries satisfy ``match``; return them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [delivery for delivery in self.log if match(delivery)]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = ", ".join(
                        f"{d.event_type}->{d.url} #{d.attempt}:{d.status or d.error or d.fault}"
                        for d in self.log[-10:]
                    )
                    raise TimeoutError(
                        f"Expected {count} matching webhook deliveries within {timeout}s, "
                        f"got {len(found)}. Last deliveries: {seen or 'none'}."
                    )
                self._cond.wait(remaining)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._running and (not self._queue or self._queue[0].due > time.monotonic()):
                    wait = self._queue[0].due - time.monotonic() if self._queue else None
                    self._cond.wait(wait)
                if not self._running:
                    return
                job = heapq.heappop(self._queue)
                if job.generation != self._generation:
                    continue
                fault = None
                if job.attempt == 1 and self._drop_next:
                    self._drop_next -= 1
                    fault = "dropped"
                elif job.attempt == 1 and self._duplicate_next:
                    self._duplicate_next -= 1
                    fault = "duplicate"
            if fault == "dropped":
                self._record(job, None, "dropped by fault injection", fault)
                continue
            if self._pool is not None:
                self._pool.submit(self._attempt, job, fault == "duplicate")

    def _attempt(self, job: _Job, duplicate: bool) -> None:
        ok = self._post(job, None)
        if duplicate:
            # The same event, same body, sent again: receivers must be idempotent.
            self._post(job, "duplicate")
        if not ok and job.attempt < self.max_attempts:
            delay = min(self.retry_max_delay, self.retry_base * 2 ** (job.attempt - 1))
            with self._cond:
                if job.generation == self._generation and self._running:
                    retry = _Job(
                        time.monotonic() + delay,
                        next(self._seq),
                        job.generation,
                        job.event,
                        job.body,
                        job.target,
                        job.attempt + 1,
                    )
                    heapq.heappush(self._queue, retry)
                    self._cond.notify_all()

    def _post(self, job: _Job, fault: str | None) -> bool:
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": signature_header(job.body, job.target.secret),
        }
        request = urllib.request.Request(  # noqa: S310 - the URL is the test's own endpoint
            job.target.url, data=job.body, headers=headers, method="POST"
        )
        status: int | None = None
        error: str | None = None
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status = response.status
                response.read(65536)
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
        except (OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        ok = status is not None and 200 <= status < 300
        self._record(job, status, error, fault, ok=ok)
        return ok

    def _record(
        self,
        job: _Job,
        status: int | None,
        error: str | None,
        fault: str | None,
        ok: bool = False,
    ) -> None:
        delivery = Delivery(
            event_id=job.event["id"],
            event_type=job.event["type"],
            endpoint_id=job.target.id,
            url=job.target.url,
            attempt=job.attempt,
            status=status,
            ok=ok,
            error=error,
            fault=fault,
            account=job.event.get("account"),
            livemode=job.event["livemode"],
        )
        with self._cond:
            if job.generation != self._generation:
                return
            self.log.append(delivery)
            self._cond.notify_all()
        logger.debug(
            "webhook %s %s -> %s attempt %d: %s",
            delivery.event_type,
            delivery.event_id,
            delivery.url,
            delivery.attempt,
            status or error,
        )
        if ok and fault is None and self.on_success:
            self.on_success(delivery.event_id)
