"""Routing of ``/v1/...`` requests to handlers, plus helpers shared by the handlers."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .engine import Engine, RequestInfo
from .errors import StripeError, no_such, unknown_param, unrecognized_url
from .forms import as_int, as_list
from .store import Record, Scope


@dataclass
class ApiRequest:
    """One authenticated API call, decoded."""

    method: str
    path: str
    params: dict[str, Any]
    scope: Scope
    api_key: str
    info: RequestInfo
    engine: Engine
    args: dict[str, str]
    route: str = ""

    @property
    def livemode(self) -> bool:
        """Whether the key is a live key."""
        return self.scope.livemode

    @property
    def platform(self) -> Scope:
        """The platform's scope in the same mode (where accounts and links live)."""
        return Scope(self.scope.livemode)

    def allow(self, *names: str) -> None:
        """Reject any parameter not in ``names`` (``expand`` is always allowed), and any
        nested one Stripe's tree for this route does not have."""
        tree = PARAMS.get(self.route, {})
        for key, value in self.params.items():
            if key not in names and key != "expand":
                raise unknown_param(key)
            check_tree(value, tree.get(key), key)

    def expand(self) -> list[str]:
        """The ``expand[]`` paths requested."""
        return [str(item) for item in as_list(self.params.get("expand", []), "expand")]


Handler = Callable[[ApiRequest], tuple[int, dict[str, Any]]]
# (``"POST /v1/accounts/{id}"``, its regex, its handler)
ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []
_ID = r"(?P<{}>[A-Za-z0-9_]+)"
# Stripe's accepted parameters of each route, read from the stripe SDK's typed params
# (see tests/test_simulator_params.py): a dict is a hash of known keys, ``[x]`` an array
# of x, ``"*"`` a hash of free keys (metadata), null a value.
PARAMS_FILE = Path(__file__).resolve().parent.parent / "stripe_objects" / "params.json"
PARAMS: dict[str, dict[str, Any]] = json.loads(PARAMS_FILE.read_text(encoding="utf-8"))


def check_tree(value: Any, tree: Any, param: str) -> None:
    """Refuse, as Stripe does, the first nested key of ``value`` not in ``tree``.

    Only the tree's shape is checked here: a value of the wrong kind (a string for a
    hash...) is left to the handler, whose coercion names the parameter.
    """
    if not isinstance(value, dict | list) or not isinstance(tree, dict | list):
        return
    entries = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in entries:
        if isinstance(tree, list):
            check_tree(item, tree[0], f"{param}[{key}]")
        elif str(key) in tree:
            check_tree(item, tree[str(key)], f"{param}[{key}]")
        else:
            # Keys 0..n of a hash decoded as an array are unknown keys all the same.
            raise unknown_param(f"{param}[{key}]")


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    """Register a handler for ``method`` and a path such as ``/v1/accounts/{id}``."""
    regex = re.compile("^" + re.sub(r"\{(\w+)\}", lambda m: _ID.format(m.group(1)), pattern) + "$")

    def register(handler: Handler) -> Handler:
        ROUTES.append((f"{method} {pattern}", regex, handler))
        return handler

    return register


def resolve(method: str, path: str) -> tuple[Handler, dict[str, str], str]:
    """The handler for a request, its arguments and its route, or Stripe's 404
    "Unrecognized request URL"."""
    for key, regex, handler in ROUTES:
        match = regex.match(path)
        if match and key.startswith(f"{method} "):
            return handler, match.groupdict(), key
    raise unrecognized_url(method, path)


def get_or_404(req: ApiRequest, kind: str, object_id: str, scope: Scope | None = None) -> Record:
    """The object in the caller's scope; ``resource_missing`` (param ``id``) otherwise."""
    record = req.engine.store.get(object_id, kind, scope or req.scope)
    if record is None:
        raise no_such(kind, object_id)
    return record


def paginate(req: ApiRequest, records: Iterable[Record], url: str) -> dict[str, Any]:
    """Stripe's list envelope with ``limit``, ``starting_after`` and ``ending_before``."""
    params = req.params
    limit = as_int(params.get("limit", "10"), "limit", minimum=1)
    if limit > 100:
        raise StripeError("This value must be less than or equal to 100.", param="limit")
    items = [record.data for record in records]
    ids = [item["id"] for item in items]
    if params.get("starting_after"):
        cursor = params["starting_after"]
        if cursor not in ids:
            raise no_such("object", cursor, "starting_after")
        items = items[ids.index(cursor) + 1 :]
        page, has_more = items[:limit], len(items) > limit
    elif params.get("ending_before"):
        cursor = params["ending_before"]
        if cursor not in ids:
            raise no_such("object", cursor, "ending_before")
        items = items[: ids.index(cursor)]
        page, has_more = items[-limit:], len(items) > limit
    else:
        page, has_more = items[:limit], len(items) > limit
    return {"object": "list", "data": page, "has_more": has_more, "url": url}


def created_filter(params: dict[str, Any]) -> Callable[[Record], bool]:
    """Stripe's ``created`` filter: an exact timestamp or ``created[gt|gte|lt|lte]``."""
    value = params.get("created")
    if value is None:
        return lambda record: True
    if not isinstance(value, dict):
        exact = as_int(value, "created")
        return lambda record: record.data["created"] == exact
    bounds = {op: as_int(v, f"created[{op}]") for op, v in value.items()}
    ops = {"gt": int.__gt__, "gte": int.__ge__, "lt": int.__lt__, "lte": int.__le__}
    for op in bounds:
        if op not in ops:
            raise StripeError(f"Received unknown parameter: created[{op}]", param=f"created[{op}]")
    return lambda record: all(ops[op](record.data["created"], v) for op, v in bounds.items())
