"""Public URLs: include with ``path("billing/", include("wagtail_client_billing.urls"))``."""

from django.urls import path  # noqa: F401

app_name = "wagtail_client_billing"

urlpatterns: list = []
