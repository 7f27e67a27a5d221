"""The public Python API: :class:`StripeSimulator`.

Start it, point the real ``stripe`` SDK at ``sim.url``, and drive time, faults,
payments and webhooks from the test::

    with StripeSimulator(webhook_url=url, webhook_secret="whsec_test") as sim:
        client = stripe.StripeClient(
            "sk_test_x", base_addresses={"api": sim.url, "connect": sim.url, "files": sim.url},
            max_network_retries=0,
        )
        session = client.v1.checkout.sessions.create(params={...})
        sim.complete_checkout(session.id)
        sim.wait_for_delivery("checkout.session.completed")
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .commands_billing import BillingCommands
from .control import command
from .engine import Engine
from .faults import Fault
from .server import SimulatorServer
from .store import random_token
from .webhooks import Delivery, WebhookDispatcher, WebhookTarget, new_secret

if TYPE_CHECKING:
    from stripe._base_address import BaseAddresses  # the SDK does not export it

logger = logging.getLogger("wagtail_client_billing.stripe_simulator")


class StripeSimulator(BillingCommands):
    """A local stand-in for api.stripe.com, its hosted pages and its webhooks."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        *,
        api_keys: Iterable[str] | None = None,
        webhook_retry_base: float = 1.0,
        webhook_retry_max_delay: float = 60.0,
        webhook_max_attempts: int = 6,
        webhook_timeout: float = 10.0,
        async_settle_delay: float | None = 5.0,
        async_settle_succeeds: bool = True,
        account_link_ttl: int = 300,
        tick_interval: float = 0.2,
    ) -> None:
        self.host = host
        self.port = port
        self.api_keys = frozenset(api_keys) if api_keys is not None else None
        self._api_keys = self.api_keys
        self.tick_interval = tick_interval
        self.stopping = threading.Event()
        self.api_calls = threading.Condition()  # notified as each API call ends
        self.api_calls_running = 0
        self.dispatcher = WebhookDispatcher(
            retry_base=webhook_retry_base,
            retry_max_delay=webhook_retry_max_delay,
            max_attempts=webhook_max_attempts,
            timeout=webhook_timeout,
        )
        self.engine = Engine(
            dispatcher=self.dispatcher,
            base_url=lambda: self.url,
            async_settle_delay=async_settle_delay,
            async_settle_succeeds=async_settle_succeeds,
            account_link_ttl=account_link_ttl,
        )
        self._defaults = self._settings()
        self.webhook_secret = webhook_secret
        if webhook_url:
            self.webhook_secret = webhook_secret or new_secret()
            target = WebhookTarget(id="we_cli", url=webhook_url, secret=self.webhook_secret)
            self.engine.permanent_targets.append(target)
        self._server: SimulatorServer | None = None
        self._threads: list[threading.Thread] = []

    # Lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL (``http://127.0.0.1:PORT``) for the SDK's ``base_addresses``."""
        if self._server is None:
            raise RuntimeError("The Stripe simulator is not started.")
        return f"http://{self.host}:{self._server.server_address[1]}"

    @property
    def base_addresses(self) -> BaseAddresses:
        """``base_addresses`` for ``stripe.StripeClient``."""
        return {"api": self.url, "connect": self.url, "files": self.url}

    def start(self) -> StripeSimulator:
        """Listen (port 0 picks a free port) and start the background threads."""
        if self._server is not None:
            return self
        self.stopping.clear()
        self._server = SimulatorServer((self.host, self.port), self)
        self.dispatcher.start()
        for name, target in (("http", self._serve), ("ticker", self._tick_loop)):
            thread = threading.Thread(target=target, name=f"stripe-sim-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop serving and delivering."""
        if self._server is None:
            return
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self.dispatcher.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        self._server = None

    def __enter__(self) -> StripeSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _serve(self) -> None:
        if self._server is not None:
            self._server.serve_forever(poll_interval=0.1)

    def _tick_loop(self) -> None:
        while not self.stopping.wait(self.tick_interval):
            try:
                self.engine.tick()
            except Exception:
                # Keep ticking: one bad transition must not stop expiry for the whole run.
                logger.exception("Stripe simulator: the expiry ticker failed")

    @command(read=True)
    def health(self) -> dict[str, Any]:
        """Liveness, URL and simulated time."""
        return {"status": "ok", "url": self.url, "now": self.now()}

    # Settings ----------------------------------------------------------------------------

    def _settings(self) -> dict[str, Any]:
        dispatcher, engine = self.dispatcher, self.engine
        return {
            "webhook_retry_base": dispatcher.retry_base,
            "webhook_retry_max_delay": dispatcher.retry_max_delay,
            "webhook_max_attempts": dispatcher.max_attempts,
            "webhook_timeout": dispatcher.timeout,
            "async_settle_delay": engine.async_settle_delay,
            "async_settle_succeeds": engine.async_settle_succeeds,
            "account_link_ttl": engine.account_link_ttl,
        }

    @command()
    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change settings for this run (``reset()`` restores the constructor's)."""
        for name, value in settings.items():
            if name not in self._defaults:
                raise TypeError(f"Unknown simulator setting {name!r}.")
            target = self.dispatcher if name.startswith("webhook_") else self.engine
            setattr(
                target, name.removeprefix("webhook_") if target is self.dispatcher else name, value
            )
        return self._settings()

    @command()
    def reset(self) -> None:
        """Forget all objects, events, deliveries, faults and extra endpoints; back to real
        time and to the constructor's settings and accepted keys."""
        self.engine.reset()
        self.configure(**self._defaults)
        self.api_keys = self._api_keys

    # Time --------------------------------------------------------------------------------

    @command(read=True)
    def now(self) -> int:
        """The simulator's clock (real time plus the offset tests moved it by)."""
        return self.engine.now()

    @command()
    def advance_clock(self, seconds: float) -> int:
        """Move time forward and apply what became due (expiries) before returning."""
        self.engine.store.clock.advance(seconds)
        self.engine.tick()
        return self.now()

    @command()
    def set_clock(self, timestamp: float) -> int:
        """Jump forward to ``timestamp`` and apply what became due."""
        self.engine.store.clock.set(timestamp)
        self.engine.tick()
        return self.now()

    # Faults ------------------------------------------------------------------------------

    @command(read=True)
    def faults(self) -> dict[str, Any]:
        """Pending API faults, and the webhook faults (``{"drop": n, "duplicate": n}``)."""
        active = [fault.as_dict() for fault in self.engine.faults.active()]
        return {"faults": active, "webhooks": self.dispatcher.pending_faults()}

    @command()
    def fail_next(
        self, method: str = "*", path: str = "*", times: int = 1, status: int = 500
    ) -> Fault:
        """The next ``times`` matching API calls answer ``status`` (a Stripe ``api_error``)."""
        return self.engine.faults.add(Fault("error", method, path, times, status=status))

    @command()
    def hang_next(
        self, method: str = "*", path: str = "*", times: int = 1, seconds: float = 5.0
    ) -> Fault:
        """The next ``times`` matching API calls wait ``seconds``, then are carried out."""
        return self.engine.faults.add(Fault("hang", method, path, times, seconds=seconds))

    @command(read=True)
    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no API call is running (a hung one has been carried out)."""
        with self.api_calls:
            if not self.api_calls.wait_for(lambda: not self.api_calls_running, timeout):
                raise TimeoutError(f"API calls still running after {timeout}s.")

    @command()
    def drop_next_webhooks(self, count: int = 1) -> None:
        """Lose the next ``count`` webhook deliveries (never sent, never retried)."""
        self.dispatcher.drop_next(count)

    @command()
    def duplicate_next_webhooks(self, count: int = 1) -> None:
        """Send each of the next ``count`` webhook deliveries twice."""
        self.dispatcher.duplicate_next(count)

    @command()
    def clear_faults(self) -> None:
        """Remove all pending API and webhook faults."""
        self.engine.faults.clear()
        self.dispatcher.clear_faults()

    # Webhooks and events -----------------------------------------------------------------

    @command()
    def add_webhook(
        self,
        url: str,
        secret: str | None = None,
        *,
        connect: bool | None = None,
        livemode: bool | None = None,
        enabled_events: Iterable[str] = ("*",),
    ) -> WebhookTarget:
        """Deliver events to ``url`` until ``reset()`` (None: both platform and Connect,
        both modes); returns the endpoint, whose ``secret`` signs the deliveries."""
        target = WebhookTarget(
            id=f"we_sim_{random_token(10)}",
            url=url,
            secret=secret or new_secret(),
            livemode=livemode,
            connect=connect,
            enabled_events=tuple(enabled_events),
        )
        self.engine.extra_targets.append(target)
        return target

    @command(read=True)
    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        """Every event so far (all modes and accounts), oldest first."""
        with self.engine.lock:
            records = reversed(list(self.engine.store.iter("event")))
            return [
                copy.deepcopy(record.data)
                for record in records
                if event_type is None or record.data["type"] == event_type
            ]

    @command(read=True)
    def deliveries(self, event_type: str | None = None) -> list[Delivery]:
        """The webhook delivery log (event id, url, attempt, status...), oldest first."""
        log = self.dispatcher.deliveries()
        return [d for d in log if event_type is None or d.event_type == event_type]

    @command(read=True)
    def wait_for_delivery(
        self,
        event_type: str | None = None,
        *,
        event_id: str | None = None,
        url: str | None = None,
        ok: bool | None = True,
        count: int = 1,
        timeout: float = 5.0,
    ) -> list[Delivery]:
        """Wait until ``count`` deliveries match (by default successful ones); return them.

        Raises ``TimeoutError`` listing the latest deliveries if they do not come.
        """

        def match(delivery: Delivery) -> bool:
            return (
                (event_type is None or delivery.event_type == event_type)
                and (event_id is None or delivery.event_id == event_id)
                and (url is None or delivery.url == url)
                and (ok is None or delivery.ok == ok)
            )

        return self.dispatcher.wait_for(match, count=count, timeout=timeout)

    # Acting as the customer or the connected account ------------------------------------

    @command()
    def complete_checkout(
        self, session_id: str, *, delayed: bool = False, email: str | None = None,
        name: str | None = None, address: dict[str, Any] | None = None,
        tax_id: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Pay a session as its hosted page's Pay (or delayed) button does; ``name``,
        ``address`` (``line1``, ``postal_code``, ``city``, ``country``...) and ``tax_id``
        (an EU VAT number) as typed where the session collects them."""
        with self.engine.lock:
            data = self.engine.complete_checkout(
                session_id, delayed=delayed, email=email, name=name, address=address,
                tax_id=tax_id,
            )  # fmt: skip
            return copy.deepcopy(data)

    @command()
    def settle_async(self, session_id: str, succeed: bool = True) -> dict[str, Any]:
        """Settle a delayed payment now: ``async_payment_succeeded`` or ``_failed``."""
        with self.engine.lock:
            return copy.deepcopy(self.engine.settle_async(session_id, succeed))

    @command()
    def expire_session(self, session_id: str) -> dict[str, Any]:
        """Expire an open session as the API's expire endpoint does."""
        with self.engine.lock:
            return copy.deepcopy(self.engine.expire_session(self.engine.session(session_id)))

    @command()
    def complete_onboarding(self, account_id: str) -> dict[str, Any]:
        """Submit the onboarding form for an account (charges and payouts enabled)."""
        with self.engine.lock:
            return copy.deepcopy(self.engine.complete_onboarding(account_id))

    @command()
    def deauthorize(self, account_id: str) -> dict[str, Any]:
        """The account disconnects the platform; returns the deauthorization event."""
        with self.engine.lock:
            return copy.deepcopy(self.engine.deauthorize(account_id))

    @command(read=True)
    def get_object(self, object_id: str, kind: str) -> dict[str, Any] | None:
        """Any stored object by id and kind ("checkout.session", "account"...), any scope."""
        with self.engine.lock:
            record = self.engine.store.find(object_id, kind)
            return copy.deepcopy(record.data) if record else None
