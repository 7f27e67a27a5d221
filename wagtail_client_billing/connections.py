"""The agency's Stripe connection: connect, refresh, unlink (each in the audit log).

Unlinking never loses money: a person's unlink withdraws the pending requests first and
refuses while any is left; a payment Stripe still reports for a request is applied."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from wagtail.log_actions import log

from . import stripe_api
from .models import AgencyBillingSettings, BillingRequest, StripeConnection

if TYPE_CHECKING:
    from django.db.models import QuerySet

logger = logging.getLogger(__name__)

ACTION_CONNECT = "wagtail_client_billing.connect"
ACTION_ONBOARDED = "wagtail_client_billing.onboarding_completed"
ACTION_UNLINK = "wagtail_client_billing.unlink"
ACTION_SWITCH_MODE = "wagtail_client_billing.switch_mode"


def active_mode() -> str:
    """The mode ("test" or "live") that new billing requests use."""
    return AgencyBillingSettings.load().active_mode


def _already_linked() -> stripe_api.StripeRefused:
    return stripe_api.StripeRefused(
        _("A client billing account is already linked for this mode; unlink it first.")
    )


def linked_connection(mode: str | None = None) -> StripeConnection | None:
    """The linked connection for ``mode`` (default: the active mode), if any."""
    mode = mode or active_mode()
    return StripeConnection.objects.filter(mode=mode, unlinked_at__isnull=True).first()


def new_idempotency_nonce() -> str:
    """A nonce for a form, so that a double-submitted Connect makes one account only."""
    return uuid.uuid4().hex


def connect(
    *,
    mode: str,
    privacy_policy_url: str,
    terms_of_service_url: str,
    user: Any = None,
    direct: bool = False,
    country: str = "",
    site_url: str = "",
    nonce: str = "",
) -> StripeConnection:
    """Store the mode's connection and make the mode active: the platform's own account if
    ``direct`` (read first: it checks the key), else one created at Stripe (keyed by the
    form's nonce: a resubmitted form gets the same one)."""
    if linked_connection(mode):
        raise _already_linked()
    if direct:
        state = stripe_api.retrieve_account(mode)
        country = state.country
    else:
        install = getattr(settings, "WAGTAIL_SITE_NAME", "") or "wagtail"
        state = stripe_api.create_connected_account(
            mode,
            country=country,
            site_url=site_url,
            metadata={"wagtail_client_billing": "agency", "install": install, "site_url": site_url},
            idempotency_key=f"wcb-connect-{mode}-{nonce}",
        )
    with transaction.atomic():
        try:
            with transaction.atomic():
                connection = StripeConnection.objects.create(
                    mode=mode,
                    account_id=state.id,
                    direct=direct,
                    country=country,
                    privacy_policy_url=privacy_policy_url,
                    terms_of_service_url=terms_of_service_url,
                )
        except IntegrityError:  # another Connect for this mode won the race
            if not direct:
                logger.warning(
                    "Stripe account %s was created while another Connect linked this mode; "
                    "it is not used (delete it in the Stripe Dashboard).",
                    state.id,
                )
            raise _already_linked() from None
        _store_state(connection, state)
        settings_row = AgencyBillingSettings.load()
        settings_row.active_mode = mode
        settings_row.save(update_fields=["active_mode"])
        data: dict[str, Any] = {"mode": mode, "account": state.id}
        if direct:
            data["direct"] = True
        log(connection, ACTION_CONNECT, user=user, data=data)
    return connection


def refresh(connection: StripeConnection, *, user: Any = None) -> StripeConnection:
    """Re-read the account at Stripe and store what it says."""
    state = stripe_api.retrieve_account(
        connection.mode, None if connection.direct else connection.account_id
    )
    return apply_account_state(connection, state, user=user)


def apply_account_state(
    connection: StripeConnection, state: stripe_api.AccountState, *, user: Any = None
) -> StripeConnection:
    """Store an account's state (from the API or an ``account.updated`` event)."""
    with transaction.atomic():
        # Lock the row so that a webhook and the return URL cannot both log onboarding.
        connection = StripeConnection.objects.select_for_update().get(pk=connection.pk)
        became_ready = state.charges_enabled and connection.onboarded_at is None
        _store_state(connection, state)
        if became_ready:
            connection.onboarded_at = timezone.now()
            connection.save(update_fields=["onboarded_at"])
            log(connection, ACTION_ONBOARDED, user=user, data={"account": connection.account_id})
    return connection


STATE_FIELDS = (
    "details_submitted",
    "charges_enabled",
    "payouts_enabled",
    "requirements_due",
    "disabled_reason",
)


def _store_state(connection: StripeConnection, state: stripe_api.AccountState) -> None:
    for name in STATE_FIELDS:
        setattr(connection, name, getattr(state, name))
    connection.refreshed_at = timezone.now()
    connection.save(update_fields=[*STATE_FIELDS, "refreshed_at"])


@transaction.atomic
def unlink(connection: StripeConnection, *, user: Any = None, reason: str = "") -> bool:
    """Detach the connection, pending requests or not: for an account already gone at
    Stripe (a person uses ``withdraw_and_unlink``). False if it was unlinked already."""
    updated = StripeConnection.objects.filter(pk=connection.pk, unlinked_at__isnull=True).update(
        unlinked_at=timezone.now()
    )
    if updated:
        connection.refresh_from_db()
        data = {"mode": connection.mode, "account": connection.account_id, "reason": reason}
        log(connection, ACTION_UNLINK, user=user, data=data)
    return bool(updated)


def request_account(connection: StripeConnection) -> str:
    """The ``account_id`` that requests made with ``connection`` store ("" in direct mode)."""
    return "" if connection.direct else connection.account_id


def pending_requests(connection: StripeConnection) -> QuerySet[BillingRequest]:
    """The connection's Pending requests: their links still open Checkout on its account."""
    return BillingRequest.objects.filter(
        status=BillingRequest.Status.PENDING,
        mode=connection.mode,
        account_id=request_account(connection),
    )


def linked_accounts(linked: Iterable[StripeConnection] | None = None) -> set[tuple[str, str]]:
    """(mode, account) of every linked connection (``linked``, if read), as requests store them."""
    linked = StripeConnection.objects.filter(unlinked_at__isnull=True) if linked is None else linked
    return {(connection.mode, request_account(connection)) for connection in linked}


def account_is_linked(
    request: BillingRequest, accounts: set[tuple[str, str]] | None = None
) -> bool:
    """Whether ``request``'s account is still linked in its mode (else its link must not
    open Checkout nor its email go again); ``accounts`` saves a query per listing row."""
    accounts = linked_accounts() if accounts is None else accounts
    return (request.mode, request.account_id) in accounts


def unlink_unless_pending(
    connection: StripeConnection, *, user: Any = None, reason: str = ""
) -> int:
    """Unlink if no request is pending, else return how many are (counted under a lock on
    the connection's row: two admins cannot both count zero)."""
    with transaction.atomic():
        rows = StripeConnection.objects.select_for_update()
        locked = rows.filter(pk=connection.pk, unlinked_at__isnull=True).first()
        if locked is None:
            return 0
        pending = pending_requests(locked).count()
        if pending:
            return pending
        unlink(locked, user=user, reason=reason)
    connection.refresh_from_db()
    return 0


def switch_mode(mode: str, *, user: Any = None) -> None:
    """Make ``mode`` the one new billing requests use."""
    with transaction.atomic():
        settings_row = AgencyBillingSettings.load()
        if settings_row.active_mode != mode:
            settings_row.active_mode = mode
            settings_row.save(update_fields=["active_mode"])
            log(settings_row, ACTION_SWITCH_MODE, user=user, data={"mode": mode})
