from .agency import AgencyBillingSettings, StripeConnection
from .events import WebhookEvent
from .requests import BillingRequest
from .site import SiteEmailSettings

__all__ = [
    "AgencyBillingSettings",
    "BillingRequest",
    "SiteEmailSettings",
    "StripeConnection",
    "WebhookEvent",
]
