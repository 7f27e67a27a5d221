from .agency import AgencyBillingSettings, StripeConnection
from .events import WebhookEvent
from .notifications import Notification
from .requests import BillingRequest
from .site import SiteEmailSettings

__all__ = [
    "AgencyBillingSettings",
    "BillingRequest",
    "Notification",
    "SiteEmailSettings",
    "StripeConnection",
    "WebhookEvent",
]
