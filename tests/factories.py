"""Users, groups and connections for the tests."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission

from wagtail_client_billing.permissions import AGENCY_PERMISSION

PASSWORD = "correct horse battery"


def make_user(username: str, *, superuser: bool = False, agency: bool = False, language: str = ""):
    """A Wagtail admin user; ``agency`` grants the agency permission through a group."""
    user = get_user_model().objects.create_user(
        username, f"{username}@example.com", PASSWORD, is_superuser=superuser
    )
    admin_access = Permission.objects.get(
        content_type__app_label="wagtailadmin", codename="access_admin"
    )
    editors, _ = Group.objects.get_or_create(name="Site editors")
    editors.permissions.add(admin_access)
    user.groups.add(editors)
    if agency:
        app_label, codename = AGENCY_PERMISSION.split(".")
        agency_group, _ = Group.objects.get_or_create(name="Agency")
        agency_group.permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
        user.groups.add(agency_group)
    if language:
        from wagtail.users.models import UserProfile

        profile = UserProfile.get_for_user(user)
        profile.preferred_language = language
        profile.save()
    return user
