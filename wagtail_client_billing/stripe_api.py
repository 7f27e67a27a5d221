"""The only module that talks to Stripe; Stripe's errors become ours, in plain words."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import stripe
from django.db import connections
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from stripe.params import AccountCreateParams
from stripe.params.checkout import SessionCreateParams

from .conf import billing_settings

logger = logging.getLogger(__name__)


class StripeFailure(Exception):
    """Stripe could not do what was asked; ``user_message`` says why in plain words."""

    def __init__(self, user_message: str | Promise, *, param: str | None = None) -> None:
        self.user_message = str(user_message)
        super().__init__(self.user_message)
        self.param = param


class StripeNotConfigured(StripeFailure):
    """No secret key is configured for the mode."""


class StripeUnavailable(StripeFailure):
    """Stripe did not answer, or answered with a server error: worth retrying later."""


class StripeNoAnswer(StripeUnavailable):
    """No answer: the request may have been carried out; a retry with its key gets the result."""


class StripeCalledInTransaction(RuntimeError):
    """A Stripe call was made inside a database transaction: a bug in the caller."""


class StripeRefused(StripeFailure):
    """Stripe refused the request itself (a bad parameter, a country it does not serve...)."""


@dataclass(frozen=True)
class AccountState:
    """What Stripe says about an account's ability to take payments."""

    id: str
    details_submitted: bool
    charges_enabled: bool
    payouts_enabled: bool
    requirements_due: list[str] = field(default_factory=list)
    disabled_reason: str = ""
    country: str = ""


@functools.lru_cache(maxsize=8)
def _client(api_key: str, api_base: str, retries: int, timeout: float) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base, "connect": api_base, "files": api_base},
        max_network_retries=retries,
        http_client=stripe.RequestsClient(timeout=timeout),
    )


def get_client(mode: str) -> stripe.StripeClient:
    """The client for ``mode``, refused in a transaction (its locks would wait on Stripe)."""
    for connection in connections.all(initialized_only=True):
        if all(getattr(block, "_from_testcase", False) for block in connection.atomic_blocks):
            continue
        if connection.settings_dict.get("ATOMIC_REQUESTS"):
            logger.error(
                "Stripe was called inside a database transaction (ATOMIC_REQUESTS is on "
                "for %r): the database stays locked until Stripe answers.",
                connection.alias,
            )
            continue
        raise StripeCalledInTransaction(
            f"Stripe was called inside a transaction on database {connection.alias!r}; "
            "call it between transactions."
        )
    conf = billing_settings()
    api_key = conf.secret_key(mode)
    if not api_key:
        raise StripeNotConfigured(
            _("No Stripe secret key is configured for %(mode)s mode.") % {"mode": mode}
        )
    return _client(
        api_key, conf.stripe_api_base, conf.stripe_max_network_retries, conf.stripe_timeout
    )


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn the SDK's exceptions into ours, keeping the original as ``__cause__``."""
    unreachable = _("Stripe could not be reached. Nothing was changed; please try again.")
    try:
        yield
    except (stripe.AuthenticationError, stripe.PermissionError) as error:
        raise StripeFailure(  # the key is wrong, revoked, or lacks a permission
            _("Stripe rejected the secret key: %(reason)s") % {"reason": _reason(error)}
        ) from error
    except stripe.APIConnectionError as error:
        raise StripeNoAnswer(unreachable) from error
    except stripe.RateLimitError as error:
        raise StripeUnavailable(unreachable) from error
    except stripe.InvalidRequestError as error:
        raise StripeRefused(_reason(error), param=error.param) from error
    except stripe.StripeError as error:
        if error.http_status == 409:
            # Stripe is still on this idempotency key (an attempt that timed out here).
            raise StripeNoAnswer(
                _(
                    "Stripe is still working on an earlier attempt of this request. "
                    "Nothing was saved here; please try again in a moment."
                )
            ) from error
        if (error.http_status or 500) >= 500:
            raise StripeUnavailable(
                _("Stripe had a problem (%(reason)s). Nothing was changed; please try again.")
                % {"reason": _reason(error).rstrip(". ")}
            ) from error
        raise StripeRefused(_reason(error)) from error


def _reason(error: stripe.StripeError) -> str:
    return str(error.user_message or getattr(error, "_message", None) or error).strip()


def account_state(account: Any) -> AccountState:
    """An account object (from the API or a webhook body, which may lack any field)."""
    account = account.to_dict() if hasattr(account, "to_dict") else dict(account)
    requirements = account.get("requirements")
    requirements = requirements if isinstance(requirements, dict) else {}

    def codes(name: str) -> list[str]:  # a signed body may hold anything here
        listed = requirements.get(name)
        return (
            [code for code in listed if isinstance(code, str)] if isinstance(listed, list) else []
        )

    currently_due = codes("currently_due")
    past_due = [item for item in codes("past_due") if item not in currently_due]
    return AccountState(
        id=account["id"],
        details_submitted=bool(account.get("details_submitted")),
        charges_enabled=bool(account.get("charges_enabled")),
        payouts_enabled=bool(account.get("payouts_enabled")),
        requirements_due=currently_due + past_due,
        disabled_reason=requirements.get("disabled_reason") or "",
        country=account.get("country") or "",
    )


def create_connected_account(
    mode: str, *, country: str, site_url: str, metadata: dict[str, str], idempotency_key: str
) -> AccountState:
    """Create the agency's connected account: its own full Stripe dashboard and duties."""
    params: AccountCreateParams = {
        "country": country,
        # Controller properties replace the deprecated ``type=standard``.
        "controller": {
            "stripe_dashboard": {"type": "full"},
            "fees": {"payer": "account"},
            "losses": {"payments": "stripe"},
            "requirement_collection": "stripe",
        },
        "business_profile": {"url": site_url},
        "metadata": metadata,
    }
    with translate_errors():
        account = get_client(mode).v1.accounts.create(
            params, options={"idempotency_key": idempotency_key}
        )
    return account_state(account)


def create_onboarding_link(mode: str, account_id: str, *, refresh_url: str, return_url: str) -> str:
    """A fresh Account Link (``account_onboarding``) for the account; links are single-use."""
    with translate_errors():
        link = get_client(mode).v1.account_links.create(
            {
                "account": account_id,
                "type": "account_onboarding",
                "refresh_url": refresh_url,
                "return_url": return_url,
            }
        )
    return link.url


def retrieve_account(mode: str, account_id: str | None = None) -> AccountState:
    """Read a connected account, or with no id the platform's own account (direct mode)."""
    with translate_errors():
        accounts = get_client(mode).v1.accounts
        account = accounts.retrieve(account_id) if account_id else accounts.retrieve_current()
    return account_state(account)


def create_webhook_endpoint(
    mode: str, *, url: str, events: Iterable[str], connect: bool
) -> tuple[str, str]:
    """Register this install's webhook URL at Stripe; return (endpoint id, signing secret)."""
    with translate_errors():
        endpoint = get_client(mode).v1.webhook_endpoints.create(
            {
                "url": url,
                # The SDK types event names as Literals; ours come from the handler table.
                "enabled_events": cast(Any, sorted(events)),
                "connect": connect,
                "description": "wagtail-client-billing",
            }
        )
    return endpoint.id, endpoint.secret or ""


def update_webhook_endpoint_events(mode: str, endpoint_id: str, *, events: Iterable[str]) -> None:
    """Set the event types an endpoint sends (its URL and secret stay)."""
    with translate_errors():
        get_client(mode).v1.webhook_endpoints.update(
            endpoint_id, {"enabled_events": cast(Any, sorted(events))}
        )


def list_webhook_endpoints(mode: str) -> list[dict[str, Any]]:
    """The webhook endpoints registered on the platform account."""
    with translate_errors():
        endpoints = get_client(mode).v1.webhook_endpoints.list({"limit": 100})
    return [endpoint.to_dict() for endpoint in endpoints.data]


def verify_signature(payload: bytes, header: str, secrets: Iterable[str]) -> bool:
    """True if ``header`` signs ``payload`` with any of ``secrets`` within 5 minutes."""
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=300)
        # TypeError: hmac.compare_digest refuses a non-ASCII v1 (a forged header).
        except (stripe.SignatureVerificationError, UnicodeDecodeError, TypeError):
            continue
        return True
    return False


# Stripe's typed objects, from API calls and ``construct_event`` alike.
CheckoutSession = stripe.checkout.Session
Subscription = stripe.Subscription


def construct_event(payload: dict[str, Any]) -> stripe.Event:
    """A webhook event's payload as the SDK's typed objects, by each ``object`` field."""
    return stripe.Event.construct_from(payload, None)


def field_of(obj: Any, name: str) -> Any:
    """``obj.name``, or None if absent: a signed webhook body may lack any field."""
    return getattr(obj, name, None)


def id_of(value: Any) -> str:
    """The id of a reference that may be expanded (``"sub_..."`` or a ``Subscription``)."""
    value = getattr(value, "id", value)
    return value if isinstance(value, str) else ""


EVENT_COMPLETED = "checkout.session.completed"
EVENT_ASYNC_SUCCEEDED = "checkout.session.async_payment_succeeded"


def is_paid(session: CheckoutSession, *, event_type: str = "") -> bool:
    """True if Stripe says the session (with its webhook ``event_type``, if any) is paid. A
    complete ``unpaid`` one is a delayed payment; one that needed none (100 % off) is paid."""
    if event_type == EVENT_ASYNC_SUCCEEDED:
        return True
    complete = field_of(session, "status") == "complete" or event_type == EVENT_COMPLETED
    # A tuple, not a set: a webhook body may hold a list here (unhashable).
    return complete and field_of(session, "payment_status") in ("paid", "no_payment_required")


def _options(account_id: str, idempotency_key: str | None = None) -> stripe.RequestOptions:
    return {"stripe_account": account_id or None, "idempotency_key": idempotency_key}


def create_checkout_session(
    mode: str, *, account_id: str, params: dict[str, Any], idempotency_key: str
) -> CheckoutSession:
    """Create a Checkout Session; the key makes a retry return the same session."""
    with translate_errors():
        return get_client(mode).v1.checkout.sessions.create(
            cast(SessionCreateParams, params),  # as built by ``billing.checkout_params``
            options=_options(account_id, idempotency_key),
        )


def retrieve_checkout_session(mode: str, *, account_id: str, session_id: str) -> CheckoutSession:
    """Read a Checkout Session as Stripe has it now."""
    with translate_errors():
        return get_client(mode).v1.checkout.sessions.retrieve(
            session_id, options=_options(account_id)
        )


def expire_checkout_session(mode: str, *, account_id: str, session_id: str) -> CheckoutSession:
    """Expire an open session so its link dies; one not open is returned as it is."""
    try:
        with translate_errors():
            return get_client(mode).v1.checkout.sessions.expire(
                session_id, options=_options(account_id, f"wcb-expire-{session_id}")
            )
    except StripeRefused:
        current = retrieve_checkout_session(mode, account_id=account_id, session_id=session_id)
        if current.status == "open":
            raise
        return current


def create_refund(
    mode: str,
    *,
    account_id: str,
    payment_intent: str,
    amount: int,
    reason: str,
    metadata: dict[str, str],
    idempotency_key: str,
) -> stripe.Refund:
    """Give ``amount`` of a payment back; the key makes a retry return the same refund."""
    params: dict[str, Any] = {"payment_intent": payment_intent, "amount": amount}
    params |= {"metadata": metadata} | ({"reason": reason} if reason else {})
    with translate_errors():
        return get_client(mode).v1.refunds.create(
            cast(Any, params), options=_options(account_id, idempotency_key)
        )


def invoice_payment_intent(mode: str, *, account_id: str, invoice_id: str) -> str:
    """The payment intent that paid an invoice (a subscription's payment), or ""."""
    with translate_errors():
        payments = get_client(mode).v1.invoice_payments.list(
            {"invoice": invoice_id, "status": "paid"}, options=_options(account_id)
        )
    for invoice_payment in payments.data:
        intent = id_of(field_of(field_of(invoice_payment, "payment"), "payment_intent"))
        if intent:
            return intent
    return ""


def cancel_subscription(
    mode: str, *, account_id: str, subscription_id: str, at_period_end: bool
) -> Subscription:
    """Cancel a subscription now, or at the end of its period (it renews no more)."""
    subscriptions = get_client(mode).v1.subscriptions
    key = f"wcb-cancel-{subscription_id}-{'end' if at_period_end else 'now'}"
    with translate_errors():
        if at_period_end:
            return subscriptions.update(
                subscription_id, {"cancel_at_period_end": True}, options=_options(account_id, key)
            )
        return subscriptions.cancel(subscription_id, options=_options(account_id))


def create_portal_session(
    mode: str, *, account_id: str, customer: str, return_url: str, locale: str
) -> str:
    """A customer portal session for the client (update the card, see invoices): its URL."""
    params: dict[str, Any] = {"customer": customer, "return_url": return_url, "locale": locale}
    with translate_errors():
        session = get_client(mode).v1.billing_portal.sessions.create(
            cast(Any, params), options=_options(account_id)
        )
    return session.url


def list_refunds(mode: str, *, account_id: str, payment_intent: str) -> list[Any]:
    """The refunds of a payment, as Stripe has them (at most 100: far more than any has)."""
    with translate_errors():
        refunds = get_client(mode).v1.refunds.list(
            {"payment_intent": payment_intent, "limit": 100}, options=_options(account_id)
        )
    return list(refunds.data)


def retrieve_subscription(mode: str, *, account_id: str, subscription_id: str) -> Subscription:
    """A subscription as Stripe has it now."""
    with translate_errors():
        return get_client(mode).v1.subscriptions.retrieve(
            subscription_id, options=_options(account_id)
        )
