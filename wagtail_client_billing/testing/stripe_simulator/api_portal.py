"""The customer portal: ``POST /v1/billing_portal/sessions`` (the hosted page is in
:mod:`.pages_portal`)."""

from __future__ import annotations

from typing import Any

from . import objects_invoices
from .api_connect import _check_url
from .errors import StripeError, missing_param, no_such
from .forms import as_str
from .routes import ApiRequest, route
from .store import new_id, random_token


@route("POST", "/v1/billing_portal/sessions")
def create_portal_session(req: ApiRequest) -> tuple[int, dict[str, Any]]:
    """A portal session for a customer of the caller's scope: its ``url`` is the
    simulator's hosted portal (update the card, cancel at the period's end, go back)."""
    req.allow("customer", "flow_data", "locale", "return_url")
    params = req.params
    if "flow_data" in params:
        raise StripeError(
            "The Stripe simulator does not support flow_data: the portal opens on its home page.",
            param="flow_data",
        )
    if not params.get("customer"):
        raise missing_param("customer")
    customer = as_str(params["customer"], "customer")
    if req.engine.store.get(customer, "customer", req.scope) is None:
        raise no_such("customer", customer, "customer")
    return_url = (
        _check_url(params["return_url"], "return_url") if params.get("return_url") else None
    )
    locale = as_str(params["locale"], "locale") if params.get("locale") else None
    engine = req.engine
    configurations = engine.store.portal_configurations
    configuration = configurations.setdefault(req.scope, new_id("bpc"))
    token = random_token(40)
    data = objects_invoices.portal_session(
        session_id=new_id("bps"),
        livemode=req.livemode,
        created=engine.now(),
        customer=customer,
        return_url=return_url,
        locale=locale,
        url=f"{engine.base_url()}/p/session/{'live' if req.livemode else 'test'}_{token}",
        configuration=configuration,
    )
    engine.store.add("billing_portal.session", data, req.scope, token=token)
    return 200, data
