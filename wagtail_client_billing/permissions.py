"""Who may do what: the agency (superusers and the agency permission) and site editors."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _
from wagtail.contrib.settings.forms import SitePermissionForm
from wagtail.models import Site
from wagtail.permission_policies.base import BasePermissionPolicy
from wagtail.permission_policies.sites import SitePermissionPolicy

from .models import BillingRequest, SiteEmailSettings, WebhookEvent

AGENCY_PERMISSION = "wagtail_client_billing.manage_agency_billing"


def is_agency_admin(user: Any) -> bool:
    """Superusers and holders of the agency permission manage the Stripe connection."""
    return bool(
        user
        and user.is_authenticated
        and user.is_active
        and (user.is_superuser or user.has_perm(AGENCY_PERMISSION))
    )


def agency_admins() -> QuerySet:
    """Every active user who is an agency admin."""
    app_label, codename = AGENCY_PERMISSION.split(".")
    permission = Permission.objects.filter(content_type__app_label=app_label, codename=codename)
    return (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(
            Q(is_superuser=True)
            | Q(user_permissions__in=permission)
            | Q(groups__permissions__in=permission)
        )
        .distinct()
    )


class AgencyPermissionPolicy(BasePermissionPolicy):
    """Only agency admins may act, and only with the actions given (read-only by default)."""

    def __init__(self, model: type, actions: tuple[str, ...] = ("view",)) -> None:
        super().__init__(model)
        self.actions = set(actions)

    def user_has_permission(self, user: Any, action: str) -> bool:
        return action in self.actions and is_agency_admin(user)

    def users_with_any_permission(self, actions: Any) -> QuerySet:
        if not self.actions.intersection(actions):
            return get_user_model().objects.none()
        return agency_admins()


class AgencyWideSitePermissionPolicy(SitePermissionPolicy):
    """One per-site permission that covers several actions; agency admins hold it everywhere.

    Subclasses name the one ``permission_action`` checked (``<action>_<model>``, granted
    per site through ``GroupSitePermission`` or globally) and the ``actions`` it covers;
    any other action is never allowed.
    """

    permission_action = "change"
    actions: frozenset[str] = frozenset()

    def _granted(self, actions: Any) -> list[str]:
        return [self.permission_action] if self.actions.intersection(actions) else []

    def _user_has_global_permission(self, user: Any, actions: Any) -> bool:
        actions = self._granted(actions)
        return bool(actions) and (
            is_agency_admin(user) or super()._user_has_global_permission(user, actions)
        )

    def user_has_any_permission(self, user: Any, actions: Any) -> bool:
        return bool(self._granted(actions)) and super().user_has_any_permission(
            user, self._granted(actions)
        )

    def user_has_any_permission_for_instance(self, user: Any, actions: Any, instance: Any) -> bool:
        return bool(self._granted(actions)) and super().user_has_any_permission_for_instance(
            user, self._granted(actions), instance
        )

    def sites_user_has_any_permission_for(self, user: Any, actions: Any) -> QuerySet:
        if not self._granted(actions):
            return Site.objects.none()
        if is_agency_admin(user):
            return Site.objects.all()
        return super().sites_user_has_any_permission_for(user, self._granted(actions))

    def users_with_any_permission(self, actions: Any) -> QuerySet:
        if not self._granted(actions):
            return get_user_model().objects.none()
        return (
            super().users_with_any_permission(self._granted(actions)) | agency_admins()
        ).distinct()

    def users_with_any_permission_for_instance(self, actions: Any, instance: Any) -> QuerySet:
        if not self._granted(actions):
            return get_user_model().objects.none()
        return (
            super().users_with_any_permission_for_instance(self._granted(actions), instance)
            | agency_admins()
        ).distinct()


class BillingRequestPermissionPolicy(AgencyWideSitePermissionPolicy):
    """Per-site billing with Wagtail's own machinery.

    One permission, "Can add billing request", granted per site through
    ``GroupSitePermission`` (the Groups editor's "Client billing" panel), means "can bill
    for this site": list, view, send, resend and delete that site's requests. Granted
    globally, or held by an agency admin, it covers every site. Requests are never
    edited, so "change" is never allowed.
    """

    permission_action = "add"
    actions = frozenset({"add", "view", "delete", "inspect", "history", "export"})


class EmailSettingsPermissionPolicy(AgencyWideSitePermissionPolicy):
    """Who may edit a site's email settings: its own per-site permission.

    "Can change email settings", granted per site through ``GroupSitePermission`` (the
    Groups editor's "Client billing: sites whose email settings this group can edit"
    panel). Billing for a site does not imply it: these settings decide which server
    gets the stored SMTP password and which address the emails come from. Agency admins
    have it for every site. Seeing the page is editing it, so every action means "change".
    """

    permission_action = "change"
    actions = frozenset({"add", "change", "view"})


FORBIDDEN_TEMPLATE = "wagtail_client_billing/forbidden.html"


def forbidden(request: HttpRequest, template_name: str = FORBIDDEN_TEMPLATE) -> HttpResponse:
    """A real 403 page (Wagtail turns ``PermissionDenied`` into a redirect to the dashboard)."""
    title = _("Permission denied")
    context = {"page_title": title, "header_title": title}
    return TemplateResponse(request, template_name, context, status=403)


def agency_admins_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Everyone but agency admins gets the 403 page on every URL, GET and POST, before the
    view looks anything up (for URL patterns built by Wagtail, such as a viewset's)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not is_agency_admin(request.user):
            return forbidden(request)
        return view(request, *args, **kwargs)

    return wrapped


class AgencyAdminRequiredMixin:
    """A view for agency admins only: ``agency_admins_only`` around ``as_view()``."""

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Callable[..., HttpResponse]:
        return agency_admins_only(super().as_view(**initkwargs))  # type: ignore[misc]


billing_request_policy = BillingRequestPermissionPolicy(BillingRequest)
email_settings_policy = EmailSettingsPermissionPolicy(SiteEmailSettings)
# Agency admins may look at events and reprocess failed ones; nobody adds, edits or
# deletes them (they are Stripe's record of what happened).
webhook_event_policy = AgencyPermissionPolicy(WebhookEvent, actions=("view", "reprocess"))
POLICIES = (billing_request_policy, email_settings_policy, webhook_event_policy)


def may_edit_email_settings(user: Any, site: Site) -> bool:
    """Whether ``user`` may edit (and test) the email settings of ``site``."""
    return email_settings_policy.user_has_permission_for_instance(user, "change", site)


class GroupSitesPanel(SitePermissionForm):
    """A Groups editor panel: the sites on which this group holds ``permission``."""

    heading = ""
    codename = ""
    panel_prefix = ""

    def __init__(self, *args: Any, instance: Any, **kwargs: Any) -> None:
        kwargs.setdefault("prefix", self.panel_prefix)
        # Not SitePermissionForm.__init__: it looks up the "change" permission.
        forms.Form.__init__(self, *args, **kwargs)
        self.permission = Permission.objects.get(
            content_type__app_label="wagtail_client_billing", codename=self.codename
        )
        self.instance = instance
        if instance and instance.pk is not None:
            self.initial = {"sites": [p.site for p in self.get_existing_permissions()]}

    def as_admin_panel(self) -> str:
        return render_to_string(
            self.template_name,
            {"heading": self.heading, "form": self, "panel_id": self.prefix.replace("_", "-")},
        )


class BillingSitePermissionForm(GroupSitesPanel):
    """Which sites this group can bill for."""

    settings_model = BillingRequest
    codename = "add_billingrequest"
    panel_prefix = "wagtail_client_billing_site_permissions"
    heading = _("Client billing: sites this group can bill for")


class EmailSettingsSitePermissionForm(GroupSitesPanel):
    """Which sites' email settings this group can edit.

    Its own permission ("Can change email settings", per site), not implied by billing:
    these settings choose the server that gets the SMTP password and the From address.
    """

    settings_model = SiteEmailSettings
    codename = "change_siteemailsettings"
    panel_prefix = "wagtail_client_billing_email_settings_permissions"
    heading = _("Client billing: sites whose email settings this group can edit")
