"""What a user does to a request once it exists: delete it, send it again, and
withdraw every pending one of an account before unlinking it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from wagtail.log_actions import log

from .. import agency, stripe_api
from ..agency import pending_requests, unlink_unless_pending
from ..mail.queue import queue_billing_email
from ..models import BillingRequest, StripeConnection
from .errors import BillingError
from .states import ACTION_RESEND, log_data, mark_deleted, mark_paid

logger = logging.getLogger("wagtail_client_billing.billing")

Status = BillingRequest.Status


def delete_request(request: BillingRequest, *, user: Any = None) -> BillingRequest:
    """Withdraw a Pending request: expire its session at Stripe (so the link dies), then
    mark it Deleted; no transaction is open while Stripe is called.

    The wish to delete is committed on the row first (``delete_requested_at``), so the
    ``checkout.session.expired`` event our expire call causes (which can arrive before
    this returns) makes the request Deleted, not Expired: whichever of the two comes
    first wins and the other finds nothing to do. If Stripe says the session was paid,
    the request becomes Paid instead. Stripe unreachable: ``stripe_api.StripeFailure``,
    and the request stays Pending (the wish stays recorded: if Stripe did expire the
    session after all, its event makes the request Deleted).
    """
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
            paid = mark_paid(
                Q(pk=request.pk), subscription_id=session.subscription, source="delete", user=user
            )
            return paid or BillingRequest.objects.get(pk=request.pk)
    deleted = mark_deleted(Q(pk=request.pk), source="delete")
    return deleted or BillingRequest.objects.get(pk=request.pk)


def resend(request: BillingRequest, *, user: Any = None) -> None:
    """Queue a Pending request's email again ("Resend email"), with an audit entry."""
    if request.status != Status.PENDING:
        raise BillingError(_("Only pending billing requests can be sent again."))
    if not agency.account_is_linked(request):
        raise BillingError(
            _(
                "This billing request's Stripe account was unlinked, so its payment link no "
                "longer works: the email was not sent again."
            )
        )
    log(request, ACTION_RESEND, user=user, data=log_data(request))
    queue_billing_email(request)


# Each round withdraws what is pending, then unlinks if nothing new arrived meanwhile.
WITHDRAW_ROUNDS = 3


@dataclass
class UnlinkOutcome:
    """What ``withdraw_and_unlink`` did: counts for the page, and what Stripe refused."""

    unlinked: bool = False
    withdrawn: int = 0
    paid: int = 0  # paid before the withdraw reached them: now marked Paid
    failures: list[tuple[BillingRequest, str]] = field(default_factory=list)
    pending: int = 0  # still pending when it gave up (requests kept arriving)


def withdraw_and_unlink(
    connection: StripeConnection, *, user: Any = None, reason: str = ""
) -> UnlinkOutcome:
    """Withdraw each pending request of the connection, then unlink it if none is left.

    Each request goes through ``delete_request`` (its Checkout Session is expired
    at Stripe, so the link dies; Paid if Stripe says it was paid meanwhile), one at a
    time and outside any transaction of ours. If Stripe fails for one, nothing is
    unlinked: the outcome says what was withdrawn and what was not, and calling this
    again continues with what is left.

    Concurrency: a colleague may send a request while this runs. The unlink re-counts
    under a row lock and, if a request arrived, withdraws it in another round. A create
    still waiting for Stripe when the unlink commits takes the same lock before it makes
    its request Pending, finds the account unlinked, withdraws its session and sends
    nothing (``creation._finish_creation``). Should a request of an unlinked account exist
    all the same (a deauthorization at Stripe), its link says it no longer works, Resend
    is refused, and a payment Stripe reports for it is applied and flagged (never lost).
    """
    outcome = UnlinkOutcome()
    for _round in range(WITHDRAW_ROUNDS):
        _withdraw(connection, user=user, outcome=outcome)
        if outcome.failures:
            return outcome
        outcome.pending = unlink_unless_pending(connection, user=user, reason=reason)
        if not outcome.pending:
            break
    if outcome.pending:
        return outcome
    outcome.unlinked = True
    _withdraw(connection, user=user, outcome=outcome)
    return outcome


def _withdraw(connection: StripeConnection, *, user: Any, outcome: UnlinkOutcome) -> None:
    for request in list(pending_requests(connection).order_by("pk")):
        try:
            result = delete_request(request, user=user)
        except (BillingError, stripe_api.StripeFailure) as error:
            logger.warning(
                "Could not withdraw billing request %s before unlinking %s: %s",
                request.pk,
                connection.account_id,
                error,
            )
            outcome.failures.append((request, error.user_message))
            continue
        if result.status == BillingRequest.Status.PAID:
            outcome.paid += 1
        elif result.status == BillingRequest.Status.DELETED:
            outcome.withdrawn += 1
