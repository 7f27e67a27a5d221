from django import forms
from django.contrib.auth.models import Permission
from django.template.loader import render_to_string
from django.urls import include, path, reverse
from django.utils.translation import gettext_lazy as _
from wagtail import hooks
from wagtail.admin.menu import MenuItem
from wagtail.contrib.settings.forms import SitePermissionForm
from wagtail.log_actions import LogFormatter

from . import admin_urls, agency, billing
from .mail import outbox, tracking
from .models import BillingRequest, SiteEmailSettings
from .permissions import AGENCY_PERMISSION, is_agency_admin
from .views.email_settings import ACTION_EDIT as ACTION_EMAIL_SETTINGS_EDIT
from .views.email_settings import ACTION_TEST as ACTION_EMAIL_SETTINGS_TEST
from .views.events import webhook_event_viewset
from .views.requests import billing_request_viewset


@hooks.register("insert_global_admin_js")
def copy_feedback_js() -> str:
    from django.templatetags.static import static
    from django.utils.html import format_html

    return format_html(
        '<script src="{}" defer></script>', static("wagtail_client_billing/js/admin.js")
    )


class AgencyMenuItem(MenuItem):
    def is_shown(self, request):
        return is_agency_admin(request.user)


@hooks.register("register_admin_urls")
def register_admin_urls():
    return [path("client-billing/account/", include(admin_urls))]


@hooks.register("register_admin_viewset")
def register_viewsets():
    return [webhook_event_viewset, billing_request_viewset]


class BillingSitePermissionForm(SitePermissionForm):
    """The Groups editor panel: which sites this group can bill for."""

    settings_model = BillingRequest

    def __init__(self, *args, instance, **kwargs):
        kwargs.setdefault("prefix", "wagtail_client_billing_site_permissions")
        # Not SitePermissionForm.__init__: it looks up the "change" permission.
        forms.Form.__init__(self, *args, **kwargs)
        self.permission = Permission.objects.get(
            content_type__app_label="wagtail_client_billing", codename="add_billingrequest"
        )
        self.instance = instance
        if instance and instance.pk is not None:
            self.initial = {"sites": [p.site for p in self.get_existing_permissions()]}

    def as_admin_panel(self):
        return render_to_string(
            self.template_name,
            {
                "heading": _("Client billing: sites this group can bill for"),
                "form": self,
                "panel_id": "wagtail-client-billing-site-permissions",
            },
        )


@hooks.register("register_group_permission_panel")
def register_billing_site_permission_panel():
    return BillingSitePermissionForm


class EmailSettingsSitePermissionForm(SitePermissionForm):
    """The Groups editor panel: which sites' email settings this group can edit.

    Its own permission ("Can change email settings", per site), not implied by billing:
    these settings choose the server that gets the SMTP password and the From address.
    """

    settings_model = SiteEmailSettings

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("prefix", "wagtail_client_billing_email_settings_permissions")
        super().__init__(*args, **kwargs)

    def as_admin_panel(self):
        return render_to_string(
            self.template_name,
            {
                "heading": _("Client billing: sites whose email settings this group can edit"),
                "form": self,
                "panel_id": "wagtail-client-billing-email-settings-permissions",
            },
        )


@hooks.register("register_group_permission_panel")
def register_email_settings_site_permission_panel():
    return EmailSettingsSitePermissionForm


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


class EmailSettingsEditFormatter(LogFormatter):
    """An email settings change, with the old and new server when it moved."""

    label = _("Edit email settings")

    def format_message(self, log_entry):
        data = log_entry.data or {}
        server, removed = data.get("server"), data.get("password_removed")
        if server and removed:
            return (
                _(
                    "Email settings changed: server %(old)s → %(new)s; "
                    "the stored password was removed"
                )
                % server
            )
        if server:
            return _("Email settings changed: server %(old)s → %(new)s") % server
        if removed:
            return _("Email settings changed; the stored password was removed")
        return _("Email settings changed")


class TestEmailFormatter(LogFormatter):
    """A test email: to whom, and why it failed if it did."""

    label = _("Send a test email")

    def format_message(self, log_entry):
        data = log_entry.data or {}
        if data.get("error"):
            return _("Test email to %(to)s failed: %(error)s") % data
        return _("Test email sent to %(to)s") % data


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
    for action, label, message in (
        (billing.ACTION_CREATE, _("Send billing request"), _("Billing request sent")),
        (billing.ACTION_PAID, _("Mark paid"), _("Paid")),
        (billing.ACTION_EXPIRED, _("Expire"), _("Expired")),
        (billing.ACTION_DELETED, _("Delete billing request"), _("Deleted")),
        (billing.ACTION_PAYMENT_FAILED, _("Payment failed"), _("The client's payment failed")),
        (outbox.ACTION_EMAIL_FAILED, _("Email failed"), _("The email could not be sent")),
        (
            tracking.ACTION_EMAIL_TRACKED,
            _("Email event"),
            _("The email service reported a problem"),
        ),
        (billing.ACTION_RENEW, _("Renew billing request"), _("Renewed as a new billing request")),
    ):
        actions.register_action(action, label, message)
    actions.register_action(ACTION_EMAIL_SETTINGS_EDIT)(EmailSettingsEditFormatter)
    actions.register_action(ACTION_EMAIL_SETTINGS_TEST)(TestEmailFormatter)


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
    from .views.dashboard import BillingDashboardPanel
    from .views.requests import billable_sites

    if billable_sites(request.user).exists():
        panels.append(BillingDashboardPanel(request.user))
