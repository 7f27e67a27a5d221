"""Fault injection for API calls: the next N matching requests fail or hang.

A rule matches a method (or ``*``) and a path glob (``/v1/checkout/sessions*``).
``error`` answers a Stripe-shaped ``api_error`` (500 by default, with
``Stripe-Should-Retry: true`` so an SDK with retries enabled tries again); ``hang``
holds the request for ``seconds`` (past the client's timeout) and then carries it out,
as a slow Stripe does: the client gave up, yet the object exists. Injected failures
happen before the idempotency layer and are never replayed.
Webhook faults (drop, duplicate) live in the webhook dispatcher.
"""

from __future__ import annotations

import fnmatch
import threading
from dataclasses import asdict, dataclass
from typing import Any

KINDS = ("error", "hang")


@dataclass
class Fault:
    """One injected fault and how many more requests it applies to."""

    kind: str
    method: str = "*"
    path: str = "*"
    times: int = 1
    status: int = 500
    seconds: float = 5.0
    message: str = "An unknown error occurred (injected by the Stripe simulator)."

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Unknown fault kind {self.kind!r}; expected one of {KINDS}.")
        if self.times < 1:
            raise ValueError("times must be at least 1.")
        self.method = self.method.upper()

    def matches(self, method: str, path: str) -> bool:
        """Whether this fault applies to a request."""
        return (self.method in ("*", method.upper())) and fnmatch.fnmatchcase(path, self.path)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form for the control API."""
        return asdict(self)


class FaultInjector:
    """The active faults; each request consumes at most one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        """Activate a fault (faults are consumed in the order they were added)."""
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        """The first fault matching the request, consumed once; None if none applies."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def active(self) -> list[Fault]:
        """Faults still waiting for requests."""
        with self._lock:
            return [Fault(**fault.as_dict()) for fault in self._faults]

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._faults.clear()
