"""The simulated Stripe: state transitions and the events they emit.

The HTTP API, the hosted pages, the control API and the Python API all change state
through :class:`Engine`, under the store's lock, so a session completes or expires
exactly once and emits exactly one event for it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import checkout_flow, objects, renewals
from .errors import StripeError
from .faults import FaultInjector
from .store import Record, Scope, Store
from .webhooks import WebhookDispatcher, WebhookTarget

# The API version events carry when no request names one (stripe-python 16's).
DEFAULT_API_VERSION = "2026-10-28.endive"


@dataclass(frozen=True)
class RequestInfo:
    """What an event records about the request that caused it."""

    id: str | None = None
    idempotency_key: str | None = None
    api_version: str = DEFAULT_API_VERSION


class Engine:
    """State, clock, events and webhooks of one simulator."""

    def __init__(
        self,
        *,
        dispatcher: WebhookDispatcher,
        base_url: Callable[[], str],
        async_settle_delay: float | None = 5.0,
        async_settle_succeeds: bool = True,
        account_link_ttl: int = 300,
    ) -> None:
        self.store = Store()
        self.faults = FaultInjector()
        self.dispatcher = dispatcher
        dispatcher.on_success = self._delivered
        self.base_url = base_url
        self.async_settle_delay = async_settle_delay
        self.async_settle_succeeds = async_settle_succeeds
        self.account_link_ttl = account_link_ttl
        self.permanent_targets: list[WebhookTarget] = []
        self.extra_targets: list[WebhookTarget] = []

    @property
    def lock(self):
        """The one lock guarding all state."""
        return self.store.lock

    def now(self) -> int:
        """Simulated time."""
        return self.store.clock.now()

    # Events and webhooks ---------------------------------------------------------

    def targets(self) -> list[WebhookTarget]:
        """Every webhook endpoint: API-created ones and those given to the simulator."""
        with self.lock:
            api = [record.extra["target"] for record in self.store.iter("webhook_endpoint")]
        return [*self.permanent_targets, *self.extra_targets, *reversed(api)]

    def emit(
        self,
        event_type: str,
        obj: dict[str, Any],
        scope: Scope,
        request: RequestInfo | None = None,
        previous_attributes: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Record an event about ``obj`` and queue it for every matching endpoint."""
        request = request or RequestInfo()
        with self.lock:
            event = objects.event(
                event_type=event_type,
                obj=obj,
                livemode=scope.livemode,
                created=self.now(),
                api_version=request.api_version,
                account=scope.account,
                request_id=request.id,
                idempotency_key=request.idempotency_key,
                previous_attributes=previous_attributes,
            )
            targets = [target for target in self.targets() if target.matches(event)]
            event["pending_webhooks"] = len(targets)
            self.store.add("event", event, scope)
            self.dispatcher.enqueue(copy.deepcopy(event), targets)
        return event

    def _delivered(self, event_id: str) -> None:
        with self.lock:
            record = self.store.find(event_id, "event")
            if record and record.data["pending_webhooks"] > 0:
                record.data["pending_webhooks"] -= 1

    # Checkout --------------------------------------------------------------------

    def session(self, session_id: str) -> Record:
        """A Checkout Session in any scope, or a 404 error."""
        record = self.store.find(session_id, "checkout.session")
        if record is None:
            raise StripeError(
                f"No such checkout.session: '{session_id}'",
                status=404,
                code="resource_missing",
                param="id",
            )
        return record

    def _info(self, record: Record) -> RequestInfo:
        return RequestInfo(api_version=record.extra.get("api_version", DEFAULT_API_VERSION))

    def expire_if_due(self, record: Record) -> bool:
        """Expire an open session whose ``expires_at`` has passed; True if it did."""
        with self.lock:
            data = record.data
            if data["status"] == "open" and data["expires_at"] <= self.store.clock.time():
                self._expire(record, self._info(record))
                return True
        return False

    def expire_session(self, record: Record, request: RequestInfo | None = None) -> dict[str, Any]:
        """The expire endpoint: only open sessions can be expired."""
        with self.lock:
            self.expire_if_due(record)
            status = record.data["status"]
            if status != "open":
                raise StripeError(
                    'Only Checkout Sessions with a status in ["open"] can be expired. '
                    f"This Checkout Session has a status of `{status}`."
                )
            self._expire(record, request or self._info(record))
            return record.data

    def _expire(self, record: Record, request: RequestInfo) -> None:
        record.data.update(status="expired", url=None)
        self.emit("checkout.session.expired", record.data, record.scope, request)

    def complete_checkout(
        self, session_id: str, *, delayed: bool = False, email: str | None = None,
        name: str | None = None, address: dict[str, Any] | None = None,
        tax_id: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Pay an open session as the hosted page's Pay button does (``address`` and
        ``tax_id`` as the page asks for them when the session collects them)."""
        with self.lock:
            record = self.session(session_id)
            self.expire_if_due(record)
            data = record.data
            if data["status"] != "open":
                raise StripeError(f"This Checkout Session is {data['status']}; it cannot be paid.")
            info = self._info(record)
            email = email or data["customer_email"] or "customer@example.com"
            data.update(
                status="complete",
                url=None,
                payment_status="unpaid" if delayed else "paid",
                customer_details=checkout_flow.payer_details(
                    email, name=name, address=address, tax_id=tax_id
                ),
            )
            checkout_flow.complete(self, record, delayed=delayed, info=info)
            if delayed:
                record.extra["awaiting_settlement"] = True
                if self.async_settle_delay is not None:
                    due = self.store.clock.time() + self.async_settle_delay
                    self.store.settlements[session_id] = (due, self.async_settle_succeeds)
            self.emit("checkout.session.completed", data, record.scope, info)
            return data

    def settle_async(self, session_id: str, succeed: bool = True) -> dict[str, Any]:
        """Finish a delayed payment: ``async_payment_succeeded`` or ``_failed``."""
        with self.lock:
            record = self.session(session_id)
            if not record.extra.pop("awaiting_settlement", False):
                raise StripeError(
                    f"Checkout Session {session_id} has no delayed payment waiting to settle."
                )
            self.store.settlements.pop(session_id, None)
            data = record.data
            if succeed:
                data["payment_status"] = "paid"
            checkout_flow.settle(self, record, succeed, self._info(record))
            event_type = f"checkout.session.async_payment_{'succeeded' if succeed else 'failed'}"
            self.emit(event_type, data, record.scope, self._info(record))
            return data

    def tick(self) -> None:
        """Apply what simulated time has made due: expiries, delayed settlements and
        subscription renewals (or ends)."""
        with self.lock:
            now = self.store.clock.time()
            for record in list(self.store.iter("checkout.session")):
                if record.data["status"] == "open" and record.data["expires_at"] <= now:
                    self._expire(record, self._info(record))
            due = [(sid, ok) for sid, (at, ok) in self.store.settlements.items() if at <= now]
            for session_id, succeed in due:
                self.settle_async(session_id, succeed)
            renewals.due(self)

    # Connect ---------------------------------------------------------------------

    def account(self, account_id: str) -> Record:
        """A connected account in any mode, or a 404 error."""
        record = self.store.find(account_id, "account")
        if record is None:
            raise StripeError(
                f"No such account: '{account_id}'",
                status=404,
                code="resource_missing",
                param="account",
            )
        return record

    def complete_onboarding(self, account_id: str) -> dict[str, Any]:
        """What submitting the hosted onboarding form does; emits ``account.updated``."""
        with self.lock:
            record = self.account(account_id)
            data = record.data
            if data["details_submitted"] and data["charges_enabled"]:
                return data
            previous = {
                "details_submitted": data["details_submitted"],
                "charges_enabled": data["charges_enabled"],
                "payouts_enabled": data["payouts_enabled"],
                "requirements": copy.deepcopy(data["requirements"]),
                "capabilities": copy.deepcopy(data["capabilities"]),
            }
            objects.onboarded(data, self.now())
            scope = Scope(record.scope.livemode, account_id)
            self.emit("account.updated", data, scope, self._info(record), previous)
            return data

    def deauthorize(self, account_id: str) -> dict[str, Any]:
        """The connected account disconnects the platform (``account.application.deauthorized``)."""
        with self.lock:
            record = self.account(account_id)
            record.extra["deauthorized"] = True
            scope = Scope(record.scope.livemode, account_id)
            return self.emit(
                "account.application.deauthorized",
                objects.application(account_id),
                scope,
                self._info(record),
            )

    # Subscriptions ---------------------------------------------------------------

    def cancel_subscription(
        self, record: Record, request: RequestInfo | None = None
    ) -> dict[str, Any]:
        """Cancel now; emits ``customer.subscription.deleted``."""
        with self.lock:
            data = record.data
            if data["status"] == "canceled":
                raise StripeError(
                    "A canceled subscription can only update its cancellation_details and metadata."
                )
            now = self.now()
            data.update(status="canceled", canceled_at=now, ended_at=now)
            data["cancellation_details"] = {
                "comment": None,
                "feedback": None,
                "reason": "cancellation_requested",
            }
            self.emit("customer.subscription.deleted", data, record.scope, request)
            return data

    # Whole-simulator operations --------------------------------------------------

    def reset(self) -> None:
        """Forget all state, faults, extra endpoints and deliveries."""
        with self.lock:
            self.store.clear()
            self.faults.clear()
            self.extra_targets.clear()
            self.dispatcher.clear()
