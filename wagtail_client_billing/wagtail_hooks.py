from django.templatetags.static import static
from django.urls import include, path, reverse
from django.utils.functional import Promise
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from wagtail import hooks
from wagtail.admin.menu import MenuItem

from . import admin_urls, log_actions
from .icons import ICON, SVG
from .permissions import (
    BillingSitePermissionForm,
    EmailSettingsSitePermissionForm,
    agency_permission,
    is_agency_admin,
)
from .views.dashboard import BillingDashboardPanel
from .views.events import webhook_event_viewset
from .views.listing import billable_sites
from .views.requests import billing_request_viewset

ADMIN_CSS = "wagtail_client_billing/css/admin.css"  # the status colours, unbroken emails


class AgencyMenuItem(MenuItem):
    def __init__(self, label: str | Promise, url_name: str, name: str, order: int) -> None:
        super().__init__(label, reverse(url_name), name=name, icon_name=ICON, order=order)

    def is_shown(self, request):
        return is_agency_admin(request.user)


hooks.register("register_log_actions", log_actions.register)
hooks.register("register_group_permission_panel", lambda: BillingSitePermissionForm)
hooks.register("register_group_permission_panel", lambda: EmailSettingsSitePermissionForm)
hooks.register("register_permissions", agency_permission)
hooks.register(
    "register_admin_urls", lambda: [path("client-billing/account/", include(admin_urls))]
)
hooks.register("register_admin_viewset", lambda: [webhook_event_viewset, billing_request_viewset])


@hooks.register("register_icons")
def register_icons(icons: list[str]) -> list[str]:
    return [*icons, SVG]


@hooks.register("insert_global_admin_js")
def copy_feedback_js() -> str:
    script = static("wagtail_client_billing/js/admin.js")
    return format_html('<script src="{}" defer></script>', script)


@hooks.register("insert_global_admin_css")
def status_colours_css() -> str:
    return format_html('<link rel="stylesheet" href="{}">', static(ADMIN_CSS))


@hooks.register("register_settings_menu_item")
def register_agency_menu_item():
    index = "wagtail_client_billing_agency:index"
    return AgencyMenuItem(_("Client billing account"), index, "client-billing-account", 610)


@hooks.register("register_reports_menu_item")
def register_overview_menu_item():
    overview = "wagtail_client_billing_requests:overview"
    return AgencyMenuItem(_("Client billing overview"), overview, "client-billing-overview", 900)


@hooks.register("construct_homepage_panels")
def add_billing_dashboard_panel(request, panels):
    if billable_sites(request.user).exists():
        panels.append(BillingDashboardPanel())
