"""What the billing domain refuses, in words the user reads."""

from __future__ import annotations

from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from ..models import BillingRequest


class BillingError(Exception):
    """A billing operation could not be done; ``user_message`` says why in plain words."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


class NotReadyToCharge(BillingError):
    """No linked Stripe account in the active mode can take payments yet."""


class AlreadySubmitted(BillingError):
    """The same form was submitted twice; ``billing_request`` is the first one."""

    message = gettext_lazy("This billing request was already sent.")

    def __init__(self, billing_request: BillingRequest) -> None:
        super().__init__(str(self.message))
        self.billing_request = billing_request


class AlreadyRenewed(AlreadySubmitted):
    """The request was renewed before; ``billing_request`` is its renewal."""

    message = gettext_lazy("This billing request was already renewed: here is its renewal.")


class PendingTwin(BillingError):
    """The very same request is already pending for the site; ``billing_request`` is it."""

    def __init__(self, billing_request: BillingRequest) -> None:
        when = date_format(timezone.localtime(billing_request.created_at), "SHORT_DATETIME_FORMAT")
        super().__init__(
            _(
                "The same billing request to %(email)s is already pending (sent %(when)s). "
                "To email it again, use Resend email on it. To bill the client a second "
                "time, tick “Send another one” and send again."
            )
            % {"email": billing_request.email, "when": when}
        )
        self.billing_request = billing_request


class RenewalInProgress(BillingError):
    """Someone else's renewal of the request is waiting for Stripe's session right now."""

    def __init__(self) -> None:
        super().__init__(
            _("This billing request is being renewed at this moment; try again in a minute.")
        )
