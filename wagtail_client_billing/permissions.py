"""Who may do what: the agency (superusers and the agency permission) and site editors."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db.models import Q, QuerySet
from wagtail.permission_policies.base import BasePermissionPolicy

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
