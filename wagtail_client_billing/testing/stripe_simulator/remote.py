"""Drive a simulator in another process (the demo, end-to-end tests) over its control API.

:class:`RemoteSimulator` has one method per entry of :data:`.control.COMMANDS`, with the
same name, signature and docstring as the :class:`StripeSimulator` method; results come
back as JSON data (a ``Fault`` or ``Delivery`` as a dict).
"""

from __future__ import annotations

import inspect
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import simulator  # noqa: F401 - its methods fill the command table
from .control import COMMANDS, PREFIX, Command

if TYPE_CHECKING:
    from stripe._base_address import BaseAddresses  # the SDK does not export it


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
    def base_addresses(self) -> BaseAddresses:
        """``base_addresses`` for ``stripe.StripeClient``."""
        return {"api": self.url, "connect": self.url, "files": self.url}

    def call(self, name: str, **params: Any) -> Any:
        """Run the command ``name``; a refused one raises RuntimeError (408: TimeoutError)."""
        request = urllib.request.Request(  # noqa: S310 - a loopback URL the caller chose
            f"{self.url}{PREFIX}{name}",
            data=json.dumps(params).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        # A waiting command (wait_for_delivery) must not be cut short by the HTTP timeout.
        timeout = max(self.timeout, float(params.get("timeout") or 0) + 10)
        try:
            with self._opener.open(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            payload = json.loads(exc.read() or b"{}")
            message = (payload.get("error") or {}).get("message", str(exc))
            if exc.code == 408:
                raise TimeoutError(message) from None
            raise RuntimeError(f"Stripe simulator: {message}") from None

    if TYPE_CHECKING:

        def __getattr__(self, name: str) -> Callable[..., Any]: ...


def _remote(entry: Command) -> Callable[..., Any]:
    """A RemoteSimulator method sending ``entry``'s arguments, checked as the method would."""
    signature = entry.signature

    def method(self: RemoteSimulator, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        params = dict(bound.arguments)
        for name, parameter in signature.parameters.items():
            if parameter.kind is parameter.VAR_KEYWORD:
                params.update(params.pop(name, {}))
        return self.call(entry.name, **params)

    method.__name__ = method.__qualname__ = entry.name
    method.__doc__ = entry.doc
    # With ``self``, so that inspect strips it from the bound method as from the original.
    full = inspect.signature(entry.method).replace(return_annotation="JSON data")
    method.__signature__ = full  # type: ignore[attr-defined]
    return method


for _entry in COMMANDS.values():
    setattr(RemoteSimulator, _entry.name, _remote(_entry))
