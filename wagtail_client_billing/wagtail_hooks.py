from django.contrib.auth.models import Permission
from django.templatetags.static import static
from django.urls import include, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from wagtail import hooks
from wagtail.admin.menu import MenuItem

from . import admin_urls, log_actions
from .permissions import (
    AGENCY_PERMISSION,
    BillingSitePermissionForm,
    EmailSettingsSitePermissionForm,
    is_agency_admin,
)
from .views.dashboard import BillingDashboardPanel
from .views.events import webhook_event_viewset
from .views.listing import billable_sites
from .views.requests import billing_request_viewset


class AgencyMenuItem(MenuItem):
    def is_shown(self, request):
        return is_agency_admin(request.user)


hooks.register("register_log_actions", log_actions.register)
hooks.register("register_group_permission_panel", lambda: BillingSitePermissionForm)
hooks.register("register_group_permission_panel", lambda: EmailSettingsSitePermissionForm)


@hooks.register("insert_global_admin_js")
def copy_feedback_js() -> str:
    return format_html(
        '<script src="{}" defer></script>', static("wagtail_client_billing/js/admin.js")
    )


@hooks.register("register_admin_urls")
def register_admin_urls():
    return [path("client-billing/account/", include(admin_urls))]


@hooks.register("register_admin_viewset")
def register_viewsets():
    return [webhook_event_viewset, billing_request_viewset]


@hooks.register("register_permissions")
def register_permissions():
    app_label, codename = AGENCY_PERMISSION.split(".")
    return Permission.objects.filter(content_type__app_label=app_label, codename=codename)


@hooks.register("register_settings_menu_item")
def register_agency_menu_item():
    return AgencyMenuItem(
        _("Client billing account"),
        reverse("wagtail_client_billing_agency:index"),
        name="client-billing-account",
        icon_name="credit-card",
        order=610,
    )


@hooks.register("register_reports_menu_item")
def register_overview_menu_item():
    return AgencyMenuItem(
        _("Client billing overview"),
        reverse("wagtail_client_billing_requests:overview"),
        name="client-billing-overview",
        icon_name="credit-card",
        order=900,
    )


@hooks.register("construct_homepage_panels")
def add_billing_dashboard_panel(request, panels):
    if billable_sites(request.user).exists():
        panels.append(BillingDashboardPanel(request.user))
