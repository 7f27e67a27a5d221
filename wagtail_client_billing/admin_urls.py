"""Admin URLs of the agency settings page, mounted under /admin/client-billing/account/."""

from django.urls import path

from .views import agency

app_name = "wagtail_client_billing_agency"

urlpatterns = [
    path("", agency.index, name="index"),
    path("connect/", agency.connect, name="connect"),
    path("mode/", agency.switch_mode, name="switch_mode"),
    path("notifications/", agency.notifications, name="notifications"),
    path(
        "notifications/<int:pk>/send-again/",
        agency.send_notification_again,
        name="send_notification_again",
    ),
    path("<str:mode>/onboard/", agency.onboard, name="onboard"),
    path("<str:mode>/refresh/", agency.onboard, name="refresh"),
    path("<str:mode>/return/", agency.return_view, name="return"),
    path("<str:mode>/status/", agency.refresh_status, name="refresh_status"),
    path("<str:mode>/unlink/", agency.unlink, name="unlink"),
    path("<str:mode>/webhook/", agency.register_webhook, name="register_webhook"),
]
