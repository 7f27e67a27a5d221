"""Stripe-shaped API errors: ``{"error": {"type", "code", "message", "param", "doc_url"}}``.

The HTTP status decides which exception the stripe SDK raises (400/404 ->
InvalidRequestError or IdempotencyError, 401 -> AuthenticationError, 403 ->
PermissionError, anything else -> APIError), so each error carries the status Stripe
uses for it.
"""

from __future__ import annotations

from typing import Any

DOC_URL = "https://stripe.com/docs/error-codes/{}"


class StripeError(Exception):
    """An error answered to the client as Stripe would answer it."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body Stripe sends for this error."""
        error: dict[str, Any] = {"message": self.message, "type": self.type}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = DOC_URL.format(self.code.replace("_", "-"))
        if self.param:
            error["param"] = self.param
        return {"error": error}


def missing_param(param: str) -> StripeError:
    """Stripe's error for a required parameter that was not sent."""
    return StripeError(f"Missing required param: {param}.", code="parameter_missing", param=param)


def invalid_param(param: str, message: str, code: str | None = None) -> StripeError:
    """A 400 naming the parameter at fault."""
    return StripeError(message, code=code, param=param)


def unknown_param(param: str) -> StripeError:
    """Stripe rejects parameters it does not know, which catches typos early."""
    return StripeError(
        f"Received unknown parameter: {param}", code="parameter_unknown", param=param
    )


def no_such(kind: str, object_id: str, param: str = "id") -> StripeError:
    """``resource_missing`` for an id not in the caller's scope: 404 for the URL's object,
    400 for an id given in a parameter (as Stripe answers)."""
    status = 404 if param == "id" else 400
    return StripeError(
        f"No such {kind}: '{object_id}'", status=status, code="resource_missing", param=param
    )


def unrecognized_url(method: str, path: str) -> StripeError:
    """404 for a route the simulator (and so, here, Stripe) does not have."""
    return StripeError(
        f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs "
        "or we can help at https://support.stripe.com/.",
        status=404,
    )


def api_error(message: str = "An unknown error occurred", status: int = 500) -> StripeError:
    """A server-side failure (``api_error``), as injected by faults."""
    return StripeError(message, status=status, type="api_error")
