"""Delete a request, send it again, withdraw an account's requests before unlinking it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone
from django.utils.translation import gettext as _

from .. import connections, stripe_api
from ..mail.queue import queue_billing_email
from ..models import BillingRequest, StripeConnection
from .errors import BillingError
from .states import ACTION_RESEND, mark_deleted, mark_paid, record

logger = logging.getLogger("wagtail_client_billing.billing")

Status = BillingRequest.Status


def delete_request(request: BillingRequest, *, user: Any = None) -> BillingRequest:
    """Expire a Pending request's session (no transaction open), then Deleted, or Paid if Stripe
    says so. The wish commits first: the ``checkout.session.expired`` it causes means Deleted."""
    if request.status != Status.PENDING:
        raise BillingError(_("Only pending billing requests can be deleted."))
    asked = BillingRequest.objects.filter(pk=request.pk, status=Status.PENDING).update(
        delete_requested_at=timezone.now(),
        delete_requested_by=user if getattr(user, "pk", None) else None,
    )
    if not asked:  # something else ended it meanwhile
        return BillingRequest.objects.get(pk=request.pk)
    if request.checkout_session_id:
        session = stripe_api.expire_checkout_session(
            request.mode, account_id=request.account_id, session_id=request.checkout_session_id
        )
        if stripe_api.is_paid(session):
            mark_paid(request, session=session, source="delete", user=user)
            return BillingRequest.objects.get(pk=request.pk)
    return mark_deleted(request.pk, source="delete") or BillingRequest.objects.get(pk=request.pk)


def resend(request: BillingRequest, *, user: Any = None) -> None:
    if request.status != Status.PENDING:
        raise BillingError(_("Only pending billing requests can be sent again."))
    if not connections.account_is_linked(request):
        raise BillingError(
            _(
                "This billing request's Stripe account was unlinked, so its payment link no "
                "longer works: the email was not sent again."
            )
        )
    record(request, ACTION_RESEND, user=user)
    queue_billing_email(request)


WITHDRAW_ROUNDS = 3


@dataclass
class UnlinkOutcome:
    unlinked: bool = False
    withdrawn: int = 0
    paid: int = 0  # paid before the withdraw reached them: now marked Paid
    failures: list[tuple[BillingRequest, str]] = field(default_factory=list)
    pending: int = 0  # still pending when it gave up (requests kept arriving)


def withdraw_and_unlink(
    connection: StripeConnection, *, user: Any = None, reason: str = ""
) -> UnlinkOutcome:
    """Withdraw (``delete_request``) the connection's pending requests, then unlink it if none
    is left (nothing if Stripe fails for one). The unlink re-counts under the connection's lock
    (``creation._make_pending``): a request that arrived meanwhile waits another round."""
    outcome = UnlinkOutcome()
    for _round in range(WITHDRAW_ROUNDS):
        _withdraw(connection, user=user, outcome=outcome)
        if outcome.failures:
            return outcome
        outcome.pending = connections.unlink_unless_pending(connection, user=user, reason=reason)
        if not outcome.pending:
            outcome.unlinked = True
            _withdraw(connection, user=user, outcome=outcome)
            return outcome
    return outcome


def _withdraw(connection: StripeConnection, *, user: Any, outcome: UnlinkOutcome) -> None:
    for request in list(connections.pending_requests(connection).order_by("pk")):
        try:
            result = delete_request(request, user=user)
        except (BillingError, stripe_api.StripeFailure) as error:
            message = "Could not withdraw billing request %s before unlinking %s: %s"
            logger.warning(message, request.pk, connection.account_id, error)
            outcome.failures.append((request, error.user_message))
            continue
        if result.status == Status.PAID:
            outcome.paid += 1
        elif result.status == Status.DELETED:
            outcome.withdrawn += 1
