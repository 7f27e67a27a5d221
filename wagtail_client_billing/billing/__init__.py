"""The billing domain: what views, webhooks and tasks call, and never bypass.

- ``states``: the state machine (Pending -> Paid | Expired | Deleted), one conditional
  UPDATE per transition, the audit entry and the signal written by the winner only;
- ``creation``: making a request (and renewing one) around the Stripe call;
- ``actions``: delete, resend, and withdrawing an account's requests before unlinking;
- ``reconciliation``: asking Stripe about requests whose webhook never came;
- ``errors``: what the domain refuses, in words the user reads.
"""

from .actions import UnlinkOutcome, delete_request, resend, withdraw_and_unlink
from .creation import (
    RequestDetails,
    abandon_stalled_creations,
    checkout_params,
    create_request,
    pending_twin,
    ready_connection,
    renew_request,
    renewal_of,
    session_lifetime,
    stalled_creation_age,
)
from .errors import (
    AlreadyRenewed,
    AlreadySubmitted,
    BillingError,
    NotReadyToCharge,
    PendingTwin,
    RenewalInProgress,
)
from .reconciliation import reconcile, reconcile_one
from .states import (
    ACTION_CREATE,
    ACTION_DELETED,
    ACTION_EXPIRED,
    ACTION_PAID,
    ACTION_PAYMENT_FAILED,
    ACTION_RENEW,
    ACTION_RESEND,
    end_with_expired_session,
    expire_overdue,
    mark_deleted,
    mark_expired,
    mark_paid,
)

__all__ = [
    "ACTION_CREATE",
    "ACTION_DELETED",
    "ACTION_EXPIRED",
    "ACTION_PAID",
    "ACTION_PAYMENT_FAILED",
    "ACTION_RENEW",
    "ACTION_RESEND",
    "AlreadyRenewed",
    "AlreadySubmitted",
    "BillingError",
    "NotReadyToCharge",
    "PendingTwin",
    "RenewalInProgress",
    "RequestDetails",
    "UnlinkOutcome",
    "abandon_stalled_creations",
    "checkout_params",
    "create_request",
    "delete_request",
    "end_with_expired_session",
    "expire_overdue",
    "mark_deleted",
    "mark_expired",
    "mark_paid",
    "pending_twin",
    "ready_connection",
    "reconcile",
    "reconcile_one",
    "renew_request",
    "renewal_of",
    "resend",
    "session_lifetime",
    "stalled_creation_age",
    "withdraw_and_unlink",
]
