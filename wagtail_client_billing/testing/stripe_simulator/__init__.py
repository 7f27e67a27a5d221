"""A local Stripe simulator for tests and demos: the real ``stripe`` SDK talks to it.

It speaks the part of Stripe's REST API this app uses (Connect accounts and account
links, Checkout Sessions, events, webhook endpoints, subscriptions that renew on the
moved clock, charges, refunds, disputes, invoices, billing portal sessions), hosts
clickable onboarding, checkout, invoice, receipt and customer portal pages, delivers
signed webhooks with retries, and injects faults. Standard library only; no Django.
See ``docs/simulator.md``.

    from wagtail_client_billing.testing.stripe_simulator import StripeSimulator
"""

from .errors import StripeError
from .faults import Fault
from .remote import RemoteSimulator
from .simulator import StripeSimulator
from .webhooks import Delivery, WebhookTarget, compute_signature, signature_header

__all__ = [
    "Delivery",
    "Fault",
    "RemoteSimulator",
    "StripeError",
    "StripeSimulator",
    "WebhookTarget",
    "compute_signature",
    "signature_header",
]
