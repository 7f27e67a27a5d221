from .agency import AgencyBillingSettings, StripeConnection
from .events import WebhookEvent
from .requests import BillingRequest

__all__ = ["AgencyBillingSettings", "BillingRequest", "StripeConnection", "WebhookEvent"]
