"""In-memory state of the simulator: objects by id and scope, the clock, ids.

One re-entrant lock guards everything: the HTTP threads, the expiry ticker and the
Python API all go through :class:`Store`, and every state transition (open ->
complete, open -> expired) happens under that lock so it happens exactly once.
"""

from __future__ import annotations

import secrets
import string
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

_ALPHABET = string.ascii_letters + string.digits


# Prefixes whose ids are as long as Stripe's (``pi_3Pg...``: 24 characters after ``_``).
LONG_IDS = frozenset({"ch", "dp", "evt", "in", "pi", "re", "sub", "we"})


def random_token(length: int) -> str:
    """A random base62 string, as Stripe's ids use."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_id(prefix: str, livemode: bool = False) -> str:
    """A Stripe-looking id: ``acct_1Pg...``, ``cs_test_a1...``/``cs_live_a1...``, ``evt_1...``."""
    if prefix == "cs":
        return f"cs_{'live' if livemode else 'test'}_a1{random_token(56)}"
    if prefix in {"cus", "req", "si", "prod"}:
        return f"{prefix}_{random_token(14)}"
    return f"{prefix}_1{random_token(23 if prefix in LONG_IDS else 15)}"


@dataclass(frozen=True)
class Scope:
    """Where an object lives: test or live mode, platform (None) or a connected account."""

    livemode: bool
    account: str | None = None


@dataclass
class Record:
    """One stored Stripe object and the scope it is visible in."""

    kind: str
    data: dict[str, Any]
    scope: Scope
    seq: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """The object's Stripe id."""
        return self.data["id"]


class Clock:
    """Real time plus an offset that tests move forward (or set) to make time pass."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        """Simulated time as a float timestamp."""
        return time.time() + self.offset

    def now(self) -> int:
        """Simulated time as the integer timestamp Stripe puts in ``created`` etc."""
        return int(self.time())

    def advance(self, seconds: float) -> int:
        """Move simulated time forward by ``seconds``; return the new now."""
        if seconds < 0:
            raise ValueError("The simulator's clock only moves forward.")
        self.offset += seconds
        return self.now()

    def set(self, timestamp: float) -> int:
        """Jump to ``timestamp`` (not earlier than now); return the new now."""
        if timestamp < self.now():
            raise ValueError(
                "The simulator's clock only moves forward; reset the simulator to go back "
                "to real time."
            )
        return self.advance(max(0.0, timestamp - self.time()))

    def reset(self) -> None:
        """Back to real time."""
        self.offset = 0.0


class Store:
    """Every object the simulator knows, plus the bookkeeping the API needs."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.clock = Clock()
        self._seq = 0
        self.generation = 0
        self.records: dict[str, Record] = {}
        self.account_links: dict[str, dict[str, Any]] = {}
        self.idempotency: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.idempotency_in_flight: set[tuple[str, str, str]] = set()
        # session id -> simulated time at which a delayed payment settles, and how.
        self.settlements: dict[str, tuple[float, bool]] = {}
        # How many of the next refunds stay ``pending`` until settled.
        self.held_refunds = 0
        # Per account: the made-up invoice number prefix and the last number used.
        self.invoice_numbers: dict[Scope, tuple[str, int]] = {}
        # Customers and subscriptions whose card is declined at renewal (fail_renewals).
        self.failing_cards: set[str] = set()
        # Per account: the id of its (one, default) billing portal configuration.
        self.portal_configurations: dict[Scope, str] = {}
        self.platform_ids = {False: new_id("acct"), True: new_id("acct")}

    def clear(self) -> None:
        """Forget everything (a new generation: late results of old work are ignored)."""
        with self.lock:
            self.generation += 1
            self.records.clear()
            self.account_links.clear()
            self.idempotency.clear()
            self.idempotency_in_flight.clear()
            self.settlements.clear()
            self.held_refunds = 0
            self.invoice_numbers.clear()
            self.failing_cards.clear()
            self.portal_configurations.clear()
            self.clock.reset()

    def add(self, kind: str, data: dict[str, Any], scope: Scope, **extra: Any) -> Record:
        """Store a new object."""
        with self.lock:
            self._seq += 1
            record = Record(kind=kind, data=data, scope=scope, seq=self._seq, extra=extra)
            self.records[data["id"]] = record
            return record

    def get(self, object_id: str, kind: str, scope: Scope | None = None) -> Record | None:
        """The object of that kind and id, if visible in ``scope`` (None: any scope)."""
        with self.lock:
            record = self.records.get(object_id)
            if record is None or record.kind != kind:
                return None
            if scope is not None and record.scope != scope:
                return None
            return record

    def find(self, object_id: str, kind: str) -> Record | None:
        """The object whatever its scope (for hosted pages and the Python API)."""
        return self.get(object_id, kind, None)

    def iter(
        self, kind: str, scope: Scope | None = None, where: Callable[[Record], bool] | None = None
    ) -> Iterator[Record]:
        """Objects of a kind, newest first, optionally in one scope and filtered."""
        with self.lock:
            records = [
                record
                for record in self.records.values()
                if record.kind == kind
                and (scope is None or record.scope == scope)
                and (where is None or where(record))
            ]
        records.sort(key=lambda record: record.seq, reverse=True)
        return iter(records)

    def account_exists(self, account_id: str, livemode: bool) -> bool:
        """Whether a usable (not deleted, not deauthorized) connected account exists."""
        record = self.get(account_id, "account", Scope(livemode))
        return record is not None and not record.extra.get("deauthorized")
