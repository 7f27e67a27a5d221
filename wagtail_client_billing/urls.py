"""Public URLs: include with ``path("billing/", include("wagtail_client_billing.urls"))``."""

from django.urls import path

from . import webhooks
from .views.pay import pay

app_name = "wagtail_client_billing"

urlpatterns = [
    path("stripe/webhook/", webhooks.stripe_webhook, name="stripe_webhook"),
    path("pay/<str:token>/", pay, name="pay"),
]
