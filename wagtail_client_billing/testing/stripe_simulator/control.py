"""The control API, written once: one table of commands serves three callers.

A command is a :class:`StripeSimulator` method marked ``@command``; that one entry is

* the in-process method (``sim.advance_clock(600)``),
* the HTTP route ``POST /_simulator/advance_clock`` with the keyword arguments as a JSON
  body (``{"seconds": 600}``); ``read`` commands also answer ``GET`` with a query string,
* the :class:`~.remote.RemoteSimulator` method of the same name and signature.

JSON in, JSON out, no authentication (it only listens on loopback). Arguments are checked
against the method's signature (an unknown or missing one is a 400); results are made
JSON-friendly by :func:`jsonable` (dataclasses become objects).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, is_dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs

from .errors import StripeError
from .responses import Response, json_response

if TYPE_CHECKING:
    from .simulator import StripeSimulator

F = TypeVar("F", bound=Callable[..., Any])
PREFIX = "/_simulator/"


@dataclass(frozen=True)
class Command:
    """One control operation: the simulator method and whether GET may call it."""

    name: str
    method: Callable[..., Any]
    read: bool

    @property
    def signature(self) -> inspect.Signature:
        """The method's parameters, without ``self``."""
        signature = inspect.signature(self.method)
        return signature.replace(parameters=list(signature.parameters.values())[1:])

    @property
    def doc(self) -> str:
        """The method's docstring."""
        return inspect.getdoc(self.method) or ""


COMMANDS: dict[str, Command] = {}


def command(read: bool = False) -> Callable[[F], F]:
    """Register a simulator method as a control command (``read``: GET may call it too)."""

    def register(method: F) -> F:
        COMMANDS[method.__name__] = Command(method.__name__, method, read)
        return method

    return register


def jsonable(value: Any) -> Any:
    """A command's result as JSON-friendly data."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value


def _query_value(text: str) -> Any:
    """``600`` -> 600, ``true`` -> True, ``null`` -> None; anything else stays text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def handle(sim: StripeSimulator, method: str, path: str, query: str, body: bytes) -> Response:
    """Run one control request: ``POST /_simulator/<command>`` (or GET for reads)."""
    entry = COMMANDS.get(path.removeprefix(PREFIX))
    if entry is None or method not in (("GET", "POST") if entry.read else ("POST",)):
        return json_response(404, {"error": {"message": f"No control route {method} {path}."}})
    if method == "GET":
        params = {key: _query_value(values[-1]) for key, values in parse_qs(query).items()}
    else:
        try:
            params = json.loads(body or b"{}")
            if not isinstance(params, dict):
                raise ValueError("The body must be a JSON object.")
        except ValueError as exc:
            return json_response(400, {"error": {"message": f"Invalid JSON body: {exc}"}})
    try:
        entry.signature.bind(**params)
    except TypeError as exc:
        return json_response(400, {"error": {"message": f"{entry.name}: {exc}"}})
    try:
        return json_response(200, jsonable(entry.method(sim, **params)))
    except StripeError as exc:
        return json_response(exc.status, exc.body())
    except TimeoutError as exc:
        return json_response(408, {"error": {"message": str(exc)}})
    except (TypeError, ValueError, KeyError) as exc:
        return json_response(400, {"error": {"message": str(exc)}})
