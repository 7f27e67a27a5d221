"""Public URLs: include with ``path("billing/", include("wagtail_client_billing.urls"))``."""

from django.urls import path

from .events.view import stripe_webhook
from .views.manage import manage
from .views.pay import ask_for_new_link, pay

app_name = "wagtail_client_billing"

urlpatterns = [
    path("stripe/webhook/", stripe_webhook, name="stripe_webhook"),
    path("pay/<str:token>/", pay, name="pay"),
    path("pay/<str:token>/new-link/", ask_for_new_link, name="ask_for_new_link"),
    path("manage/<str:token>/<str:key>/", manage, name="manage"),
]
