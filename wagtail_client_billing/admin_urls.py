"""Admin URLs of the agency settings page, mounted under /admin/client-billing/account/."""

from django.urls import path

from .views import account

app_name = "wagtail_client_billing_agency"

urlpatterns = [
    path("", account.index, name="index"),
    path("connect/", account.connect, name="connect"),
    path("mode/", account.switch_mode, name="switch_mode"),
    path("notifications/", account.notifications, name="notifications"),
    path("invoices/", account.invoice_settings, name="invoice_settings"),
    path(
        "notifications/<int:pk>/send-again/",
        account.send_notification_again,
        name="send_notification_again",
    ),
    path("<str:mode>/onboard/", account.onboard, name="onboard"),
    path("<str:mode>/refresh/", account.onboard, name="refresh"),
    path("<str:mode>/return/", account.return_view, name="return"),
    path("<str:mode>/status/", account.refresh_status, name="refresh_status"),
    path("<str:mode>/unlink/", account.unlink, name="unlink"),
    path("<str:mode>/webhook/", account.register_webhook, name="register_webhook"),
]
