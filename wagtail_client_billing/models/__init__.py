from .agency import AgencyBillingSettings, StripeConnection
from .events import WebhookEvent

__all__ = ["AgencyBillingSettings", "StripeConnection", "WebhookEvent"]
