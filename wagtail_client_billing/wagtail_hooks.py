from django.contrib.auth.models import Permission
from django.urls import include, path, reverse
from django.utils.translation import gettext_lazy as _
from wagtail import hooks
from wagtail.admin.menu import MenuItem

from . import admin_urls, agency
from .permissions import AGENCY_PERMISSION, is_agency_admin
from .views.events import webhook_event_viewset


class AgencyMenuItem(MenuItem):
    def is_shown(self, request):
        return is_agency_admin(request.user)


@hooks.register("register_admin_urls")
def register_admin_urls():
    return [path("client-billing/account/", include(admin_urls))]


@hooks.register("register_admin_viewset")
def register_viewsets():
    return webhook_event_viewset


@hooks.register("register_settings_menu_item")
def register_agency_menu_item():
    return AgencyMenuItem(
        _("Client billing account"),
        reverse("wagtail_client_billing_agency:index"),
        name="client-billing-account",
        icon_name="credit-card",
        order=610,
    )


@hooks.register("register_permissions")
def register_permissions():
    app_label, codename = AGENCY_PERMISSION.split(".")
    return Permission.objects.filter(content_type__app_label=app_label, codename=codename)


@hooks.register("register_log_actions")
def register_log_actions(actions):
    actions.register_action(
        agency.ACTION_CONNECT,
        _("Connect client billing account"),
        _("Client billing account connected"),
    )
    actions.register_action(
        agency.ACTION_ONBOARDED, _("Complete Stripe onboarding"), _("Stripe onboarding completed")
    )
    actions.register_action(
        agency.ACTION_UNLINK, _("Unlink account"), _("Client billing account unlinked")
    )
    actions.register_action(
        agency.ACTION_SWITCH_MODE, _("Switch billing mode"), _("Billing mode switched")
    )
