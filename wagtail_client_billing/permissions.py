"""Who may do what: the agency (superusers and the agency permission) and site editors."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django import forms
from django.contrib.auth import get_permission_codename, get_user_model
from django.contrib.auth.models import Permission
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from wagtail.contrib.settings.forms import SitePermissionForm
from wagtail.models import Site
from wagtail.permission_policies.base import BasePermissionPolicy
from wagtail.permission_policies.sites import SitePermissionPolicy

from .models import BillingRequest, SiteEmailSettings, WebhookEvent

AGENCY_PERMISSION = "wagtail_client_billing.manage_agency_billing"


def is_agency_admin(user: Any) -> bool:
    """Superusers and holders of the agency permission manage the Stripe connection."""
    if not (user and user.is_authenticated and user.is_active):
        return False
    return user.is_superuser or user.has_perm(AGENCY_PERMISSION)


def agency_permission() -> QuerySet:
    app_label, codename = AGENCY_PERMISSION.split(".")
    return Permission.objects.filter(content_type__app_label=app_label, codename=codename)


def agency_admins() -> QuerySet:
    perm = agency_permission()
    holders = Q(is_superuser=True) | Q(user_permissions__in=perm) | Q(groups__permissions__in=perm)
    return get_user_model().objects.filter(holders, is_active=True).distinct()


def _no_users() -> QuerySet:
    return get_user_model().objects.none()


class AgencyPermissionPolicy(BasePermissionPolicy):
    """Only agency admins may act, and only with the actions given."""

    def __init__(self, model: type, actions: tuple[str, ...]) -> None:
        super().__init__(model)
        self.actions = set(actions)

    def user_has_permission(self, user: Any, action: str) -> bool:
        return action in self.actions and is_agency_admin(user)

    def users_with_any_permission(self, actions: Any) -> QuerySet:
        return agency_admins() if self.actions.intersection(actions) else _no_users()


def _covered_only(name: str, actions_at: int, refusal: Callable[[], Any]) -> Any:
    """Wagtail's ``SitePermissionPolicy.<name>``, refused for actions the policy does not cover."""
    wagtail_check = getattr(SitePermissionPolicy, name)

    def check(self: AgencyWideSitePermissionPolicy, *args: Any) -> Any:
        if not self.actions.intersection(args[actions_at]):
            return refusal()
        return wagtail_check(self, *args)

    return check


class AgencyWideSitePermissionPolicy(SitePermissionPolicy):
    """One per-site permission (``<permission_action>_<model>``, per site or global) that
    covers ``actions``; agency admins hold it everywhere; any other action is refused."""

    permission_action = "change"
    actions: frozenset[str] = frozenset()

    # Every covered action is the one permission (Wagtail 7.4 builds codenames in these two).
    def _get_permission_codenames(self, actions: Any) -> set[str]:
        return {get_permission_codename(self.permission_action, self.model._meta)}

    def _get_permission_name(self, action: str) -> str:
        return (
            f"{self.app_label}.{get_permission_codename(self.permission_action, self.model._meta)}"
        )

    def _get_permission_objects_for_actions(self, actions: Any) -> QuerySet:
        # Agency admins count among the users holding it.
        return super()._get_permission_objects_for_actions(actions) | agency_permission()

    def _user_has_global_permission(self, user: Any, actions: Any) -> bool:
        return is_agency_admin(user) or super()._user_has_global_permission(user, actions)

    user_has_any_permission = _covered_only("user_has_any_permission", 1, bool)
    user_has_any_permission_for_instance = _covered_only(
        "user_has_any_permission_for_instance", 1, bool
    )
    sites_user_has_any_permission_for = _covered_only(
        "sites_user_has_any_permission_for", 1, Site.objects.none
    )
    users_with_any_permission = _covered_only("users_with_any_permission", 0, _no_users)
    users_with_any_permission_for_instance = _covered_only(
        "users_with_any_permission_for_instance", 0, _no_users
    )


class BillingRequestPermissionPolicy(AgencyWideSitePermissionPolicy):
    """ "Can add billing request" means "can bill for this site": list, view, send, resend
    and delete its requests. Requests are never edited, so "change" is never allowed."""

    permission_action = "add"
    actions = frozenset({"add", "view", "delete", "inspect", "history", "export"})


class EmailSettingsPermissionPolicy(AgencyWideSitePermissionPolicy):
    """ "Can change email settings" of a site. Billing for it does not imply this: these
    settings choose the server that gets the SMTP password and the From address."""

    permission_action = "change"
    actions = frozenset({"add", "change", "view"})


def forbidden(
    request: HttpRequest, template_name: str = "wagtail_client_billing/forbidden.html"
) -> HttpResponse:
    """A real 403 page (Wagtail turns ``PermissionDenied`` into a redirect to the dashboard)."""
    title = _("Permission denied")
    context = {"page_title": title, "header_title": title}
    return TemplateResponse(request, template_name, context, status=403)


def agency_admins_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The 403 page for everyone but agency admins, before the view looks anything up."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not is_agency_admin(request.user):
            return forbidden(request)
        return view(request, *args, **kwargs)

    return wrapped


class AgencyAdminRequiredMixin:
    """``agency_admins_only`` around ``as_view()``."""

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Callable[..., HttpResponse]:
        return agency_admins_only(super().as_view(**initkwargs))  # type: ignore[misc]


billing_request_policy = BillingRequestPermissionPolicy(BillingRequest)
email_settings_policy = EmailSettingsPermissionPolicy(SiteEmailSettings)
# Nobody adds, edits or deletes events: they are Stripe's record of what happened.
webhook_event_policy = AgencyPermissionPolicy(WebhookEvent, actions=("view", "reprocess"))
POLICIES = (billing_request_policy, email_settings_policy, webhook_event_policy)


class GroupSitesPanel(SitePermissionForm):
    """A Groups editor panel: the sites on which this group holds ``permission``."""

    heading: str | Promise = ""
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
        context = {"heading": self.heading, "form": self, "panel_id": self.prefix.replace("_", "-")}
        return render_to_string(self.template_name, context)


class BillingSitePermissionForm(GroupSitesPanel):
    settings_model = BillingRequest
    codename = "add_billingrequest"
    panel_prefix = "wagtail_client_billing_site_permissions"
    heading = _("Client billing: sites this group can bill for")


class EmailSettingsSitePermissionForm(GroupSitesPanel):
    settings_model = SiteEmailSettings
    codename = "change_siteemailsettings"
    panel_prefix = "wagtail_client_billing_email_settings_permissions"
    heading = _("Client billing: sites whose email settings this group can edit")
