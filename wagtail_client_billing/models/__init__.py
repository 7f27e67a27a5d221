from .agency import AgencyBillingSettings, StripeConnection
from .events import WebhookEvent
from .outbox import OutgoingEmail
from .requests import BillingRequest
from .site import SiteEmailSettings

__all__ = [
    "AgencyBillingSettings",
    "BillingRequest",
    "OutgoingEmail",
    "SiteEmailSettings",
    "StripeConnection",
    "WebhookEvent",
]
