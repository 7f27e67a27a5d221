"""Drive a simulator in another process (the demo, end-to-end tests) over its control API."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode


class RemoteSimulator:
    """The control-API counterpart of :class:`StripeSimulator`'s helpers.

    ``RemoteSimulator("http://127.0.0.1:12111").advance_clock(3600)``
    """

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        # Loopback only: never route through a proxy from the environment.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def base_addresses(self) -> dict[str, str]:
        """``base_addresses`` for ``stripe.StripeClient``."""
        return {"api": self.url, "connect": self.url, "files": self.url}

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        query: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        url = f"{self.url}/_simulator{path}"
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - a loopback URL the caller chose
            url, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with self._opener.open(request, timeout=timeout or self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            payload = json.loads(exc.read() or b"{}")
            message = (payload.get("error") or {}).get("message", str(exc))
            if exc.code == 408:
                raise TimeoutError(message) from None
            raise RuntimeError(f"Stripe simulator: {message}") from None

    def health(self) -> dict[str, Any]:
        """Status, URL and simulated time."""
        return self._call("GET", "/health")

    def reset(self) -> None:
        """Forget all state."""
        self._call("POST", "/reset")

    def now(self) -> int:
        """Simulated time."""
        return self._call("GET", "/clock")["now"]

    def advance_clock(self, seconds: float) -> int:
        """Move time forward; due expiries are applied before this returns."""
        return self._call("POST", "/clock", {"advance": seconds})["now"]

    def fail_next(
        self, method: str = "*", path: str = "*", times: int = 1, status: int = 500
    ) -> dict[str, Any]:
        """The next matching API calls answer a Stripe ``api_error``."""
        return self._call(
            "POST",
            "/faults",
            {"kind": "error", "method": method, "path": path, "times": times, "status": status},
        )

    def hang_next(
        self, method: str = "*", path: str = "*", times: int = 1, seconds: float = 5.0
    ) -> dict[str, Any]:
        """The next matching API calls wait ``seconds`` before being carried out."""
        return self._call(
            "POST",
            "/faults",
            {"kind": "hang", "method": method, "path": path, "times": times, "seconds": seconds},
        )

    def drop_next_webhooks(self, count: int = 1) -> None:
        """Lose the next webhook deliveries."""
        self._call("POST", "/faults", {"kind": "drop_webhooks", "times": count})

    def duplicate_next_webhooks(self, count: int = 1) -> None:
        """Send the next webhook deliveries twice."""
        self._call("POST", "/faults", {"kind": "duplicate_webhooks", "times": count})

    def clear_faults(self) -> None:
        """Remove pending faults."""
        self._call("DELETE", "/faults")

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change settings until the next reset."""
        return self._call("POST", "/config", settings)

    def add_webhook(self, url: str, secret: str | None = None, **options: Any) -> dict[str, Any]:
        """Deliver events to ``url`` too; returns ``{"id", "url", "secret"}``."""
        return self._call("POST", "/webhooks", {"url": url, "secret": secret, **options})

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        """Every event so far, oldest first."""
        return self._call("GET", "/events", query={"type": event_type})["events"]

    def deliveries(self, event_type: str | None = None) -> list[dict[str, Any]]:
        """The webhook delivery log."""
        return self._call("GET", "/deliveries", query={"event_type": event_type})["deliveries"]

    def wait_for_delivery(
        self,
        event_type: str | None = None,
        *,
        event_id: str | None = None,
        ok: bool | None = True,
        count: int = 1,
        timeout: float = 5.0,
    ) -> list[dict[str, Any]]:
        """Block until deliveries match; raise TimeoutError otherwise."""
        query = {
            "event_type": event_type,
            "event_id": event_id,
            "count": count,
            "timeout": timeout,
            "ok": "any" if ok is None else str(ok).lower(),
        }
        result = self._call("GET", "/deliveries/wait", query=query, timeout=timeout + 10)
        return result["deliveries"]

    def complete_checkout(
        self, session_id: str, *, delayed: bool = False, email: str | None = None
    ) -> dict[str, Any]:
        """Pay a session as its hosted page does."""
        body = {"delayed": delayed, "email": email}
        return self._call("POST", f"/checkout/sessions/{session_id}/complete", body)

    def settle_async(self, session_id: str, succeed: bool = True) -> dict[str, Any]:
        """Settle a delayed payment."""
        return self._call("POST", f"/checkout/sessions/{session_id}/settle", {"succeed": succeed})

    def expire_session(self, session_id: str) -> dict[str, Any]:
        """Expire an open session now."""
        return self._call("POST", f"/checkout/sessions/{session_id}/expire", {})

    def complete_onboarding(self, account_id: str) -> dict[str, Any]:
        """Complete a connected account's onboarding."""
        return self._call("POST", f"/accounts/{account_id}/onboard", {})

    def deauthorize(self, account_id: str) -> dict[str, Any]:
        """The account disconnects the platform."""
        return self._call("POST", f"/accounts/{account_id}/deauthorize", {})
