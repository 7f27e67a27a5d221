"""Users, groups, connections and billing request details for the tests."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission

from wagtail_client_billing import billing
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


def request_details(**changes) -> billing.RequestDetails:
    """What an editor types in "Add billing request": a one-time EUR 49.90 for Acme."""
    values = {
        "email": "client@example.com",
        "currency": "eur",
        "amount": 4990,
        "description": "Website maintenance",
        "success_url": "https://acme.test/thanks/",
        "cancel_url": "https://acme.test/cancel/",
        "billing_type": "one_time",
    }
    return billing.RequestDetails(**{**values, **changes})


def make_site(hostname: str, name: str, port: int = 80):
    """A Wagtail site with its own home page under the root."""
    from wagtail.models import Page, Site

    root = Page.get_first_root_node()
    home = root.add_child(instance=Page(title=name, slug=hostname.replace(".", "-")))
    return Site.objects.create(hostname=hostname, port=port, site_name=name, root_page=home)


def grant_billing(user, *sites) -> None:
    """Let ``user`` bill for ``sites`` only (GroupSitePermission, as the Groups editor does)."""
    from wagtail.models import GroupSitePermission

    permission = Permission.objects.get(
        content_type__app_label="wagtail_client_billing", codename="add_billingrequest"
    )
    group, _ = Group.objects.get_or_create(name=f"Billing {user.username}")
    for site in sites:
        GroupSitePermission.objects.get_or_create(group=group, site=site, permission=permission)
    user.groups.add(group)


def grant_email_settings(user, *sites) -> None:
    """Let ``user`` edit the email settings of ``sites`` only (the Groups editor's panel)."""
    from wagtail.models import GroupSitePermission

    permission = Permission.objects.get(
        content_type__app_label="wagtail_client_billing", codename="change_siteemailsettings"
    )
    group, _ = Group.objects.get_or_create(name=f"Email settings {user.username}")
    for site in sites:
        GroupSitePermission.objects.get_or_create(group=group, site=site, permission=permission)
    user.groups.add(group)


def connect_ready_account(simulator, mode: str = "test"):
    """A linked connection, onboarded at the simulator, ready to charge."""
    from wagtail_client_billing import connections

    connection = connections.connect(
        mode=mode,
        country="FR",
        privacy_policy_url="https://agency.example/privacy",
        terms_of_service_url="https://agency.example/terms",
        site_url="https://agency.example/",
        nonce=f"setup-{mode}",
    )
    simulator.complete_onboarding(connection.account_id)
    return connections.refresh(connection)


def outbox_emails(requests, kind: str = "request", **fields):
    """Outbox rows for requests made directly (not through ``billing``): their email of
    ``kind``, queued unless ``fields`` say otherwise."""
    from wagtail_client_billing.models import OutgoingEmail

    return OutgoingEmail.objects.bulk_create(
        OutgoingEmail(
            kind=kind,
            key=f"{kind}-{request.pk}",
            site_id=request.site_id,
            billing_request=request,
            recipient=request.email,
            **{"status": OutgoingEmail.Status.QUEUED, **fields},
        )  # fmt: skip
        for request in requests
    )
