"""Connect endpoints: ``/v1/accounts``, ``/v1/account`` and ``/v1/account_links``."""

from __future__ import annotations

import copy
import re
from typing import Any

from . import objects
from .errors import StripeError, missing_param, no_such
from .forms import as_dict, as_enum, as_str, metadata
from .routes import ApiRequest, get_or_404, paginate, route
from .store import Scope, new_id, random_token

ACCOUNT_CREATE_PARAMS = (
    "account_token",
    "bank_account",
    "business_profile",
    "business_type",
    "capabilities",
    "company",
    "controller",
    "country",
    "default_currency",
    "documents",
    "email",
    "external_account",
    "groups",
    "individual",
    "metadata",
    "settings",
    "tos_acceptance",
    "type",
)
ACCOUNT_UPDATE_PARAMS = tuple(p for p in ACCOUNT_CREATE_PARAMS if p not in {"type", "country"})
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def check_email(value: Any, param: str) -> str:
    """A syntactically valid email address, as Stripe requires."""
    email = as_str(value, param)
    if not EMAIL.match(email):
        raise StripeError(f"Invalid email address: {email}", param=param, code="email_invalid")
    return email


def _validate_account_params(params: dict[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    if "type" in params:
        clean["type"] = as_enum(params["type"], "type", ("custom", "express", "standard"))
    if "country" in params:
        country = as_str(params["country"], "country")
        if not re.fullmatch(r"[A-Za-z]{2}", country):
            raise StripeError(f"Country '{country}' is unknown.", param="country")
        clean["country"] = country
    if "email" in params:
        clean["email"] = check_email(params["email"], "email")
    if "metadata" in params:
        clean["metadata"] = metadata(params["metadata"])
    for key in ("controller", "business_profile", "capabilities", "settings"):
        if key in params:
            clean[key] = as_dict(params[key], key)
    for key in ("business_type", "default_currency"):
        if key in params:
            clean[key] = as_str(params[key], key)
    if "controller" in clean and "type" in clean:
        raise StripeError(
            "You cannot specify both `type` and `controller`; use controller properties.",
            param="type",
        )
    return clean


@route("POST", "/v1/accounts")
def create_account(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """Create a connected account (test or live by key), not yet onboarded."""
    req.allow(*ACCOUNT_CREATE_PARAMS)
    if req.scope.account:
        raise StripeError("Connected accounts cannot create other connected accounts.", status=403)
    clean = _validate_account_params(req.params)
    data = objects.account(
        account_id=new_id("acct"), livemode=req.livemode, created=req.engine.now(), params=clean
    )
    req.engine.store.add("account", data, req.platform, api_version=req.info.api_version)
    return 200, data


@route("GET", "/v1/accounts/{id}")
def retrieve_account(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """Retrieve a connected account of this platform."""
    req.allow()
    return 200, get_or_404(req, "account", req.args["id"], req.platform).data


@route("GET", "/v1/account")
def retrieve_own_account(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """The account of the ``Stripe-Account`` header, else the platform itself."""
    req.allow()
    if req.scope.account:
        return 200, get_or_404(req, "account", req.scope.account, req.platform).data
    platform_id = req.engine.store.platform_ids[req.livemode]
    data = objects.account(
        account_id=platform_id, livemode=req.livemode, created=0, params={"type": "standard"}
    )
    return 200, objects.onboarded(data, 0)


@route("GET", "/v1/accounts")
def list_accounts(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """List this platform's connected accounts, newest first."""
    req.allow("created", "ending_before", "limit", "starting_after")
    records = req.engine.store.iter("account", req.platform)
    return 200, paginate(req, records, "/v1/accounts")


@route("POST", "/v1/accounts/{id}")
def update_account(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """Update email, metadata or business profile; emits ``account.updated``."""
    req.allow(*ACCOUNT_UPDATE_PARAMS)
    clean = _validate_account_params(req.params)
    with req.engine.lock:
        record = get_or_404(req, "account", req.args["id"], req.platform)
        data = record.data
        previous: dict[str, Any] = {}
        if "email" in clean:
            previous["email"] = data["email"]
            data["email"] = clean["email"]
        if "metadata" in clean:
            previous["metadata"] = copy.deepcopy(data["metadata"])
            for key, value in clean["metadata"].items():
                if value == "":
                    data["metadata"].pop(key, None)  # Stripe: an empty value unsets a key
                else:
                    data["metadata"][key] = value
        if "business_profile" in clean:
            previous["business_profile"] = copy.deepcopy(data["business_profile"])
            for key, value in clean["business_profile"].items():
                if isinstance(value, str) and key in data["business_profile"]:
                    data["business_profile"][key] = value or None
        if previous:
            scope = Scope(req.livemode, data["id"])
            req.engine.emit("account.updated", data, scope, req.info, previous)
        return 200, data


@route("DELETE", "/v1/accounts/{id}")
def delete_account(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """Delete a connected account (live accounts with a full Dashboard cannot be)."""
    req.allow()
    with req.engine.lock:
        record = get_or_404(req, "account", req.args["id"], req.platform)
        controller = record.data["controller"]
        if (
            req.livemode
            and (controller.get("stripe_dashboard") or {}).get("type") == "full"
            and (controller.get("losses") or {}).get("payments") == "stripe"
        ):
            raise StripeError(
                "Live-mode accounts that have access to the Stripe Dashboard and for which "
                "Stripe is responsible for negative balances cannot be deleted.",
                param="account",
            )
        del req.engine.store.records[record.id]
        return 200, objects.deleted("account", record.id)


@route("POST", "/v1/account_links")
def create_account_link(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """A single-use link to the hosted onboarding page, valid a few minutes."""
    req.allow("account", "collect", "collection_options", "refresh_url", "return_url", "type")
    params = req.params
    for name in ("account", "type"):
        if not params.get(name):
            raise missing_param(name)
    link_type = as_enum(params["type"], "type", ("account_onboarding", "account_update"))
    account_id = as_str(params["account"], "account")
    urls = {}
    for name in ("refresh_url", "return_url"):
        if name in params:
            urls[name] = _check_url(params[name], name)
    engine = req.engine
    with engine.lock:
        if not engine.store.account_exists(account_id, req.livemode):
            raise no_such("account", account_id, "account")
        now = engine.now()
        token = random_token(12)
        expires_at = now + engine.account_link_ttl
        engine.store.account_links[token] = {
            "account": account_id,
            "type": link_type,
            "expires_at": expires_at,
            "state": "new",
            "refresh_url": urls.get("refresh_url"),
            "return_url": urls.get("return_url"),
        }
    url = f"{engine.base_url()}/setup/s/{account_id}/{token}"
    return 200, objects.account_link(url=url, created=now, expires_at=expires_at)


def _check_url(value: Any, param: str) -> str:
    url = as_str(value, param, max_length=5000)
    if not re.match(r"^https?://[^\s/]+", url):
        raise StripeError("Not a valid URL", param=param, code="url_invalid")
    return url
