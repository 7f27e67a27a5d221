from .agency import AgencyBillingSettings as AgencyBillingSettings
from .agency import StripeConnection as StripeConnection
from .events import WebhookEvent as WebhookEvent
from .outbox import OutgoingEmail as OutgoingEmail
from .payments import Invoice as Invoice
from .payments import Refund as Refund
from .requests import BillingRequest as BillingRequest
from .site import SiteEmailSettings as SiteEmailSettings
