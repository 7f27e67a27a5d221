"""Load the demo's data: an admin user, the agency's site and three client sites."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from wagtail.models import Page, Site

from example_project.home.models import HomePage

CLIENT_SITES = [
    ("acme.localhost", "Acme Plumbing", "acme"),
    ("bakery.localhost", "Rue Haute Bakery", "bakery"),
    ("studio.localhost", "Studio Nord", "studio"),
]


class Command(BaseCommand):
    help = "Create the demo's admin user and sites (safe to run again)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--password", required=True, help="the admin user's password")
        parser.add_argument("--port", type=int, default=8000, help="the dev server's port")

    @transaction.atomic
    def handle(self, *args: Any, password: str, port: int, **options: Any) -> None:
        user_model = get_user_model()
        admin, _ = user_model.objects.get_or_create(
            username="admin", defaults={"email": "admin@agency.localhost"}
        )
        admin.is_staff = admin.is_superuser = True
        admin.set_password(password)
        admin.save()

        root = Page.get_first_root_node()
        agency_home = self._home(root, "Agency", "agency")
        Site.objects.exclude(root_page=agency_home).filter(is_default_site=True).update(
            is_default_site=False
        )
        Site.objects.update_or_create(
            hostname="localhost",
            port=port,
            defaults={"site_name": "Agency", "root_page": agency_home, "is_default_site": True},
        )
        # Wagtail's first migration made a site on localhost:80 with a placeholder page.
        Site.objects.filter(hostname="localhost", port=80).delete()
        Page.objects.filter(depth=2, slug="home", content_type__model="page").delete()

        for hostname, name, slug in CLIENT_SITES:
            home = self._home(root, name, slug)
            Site.objects.update_or_create(
                hostname=hostname,
                port=port,
                defaults={"site_name": name, "root_page": home, "is_default_site": False},
            )
        self.stdout.write(
            f"Demo data ready: user 'admin' and {len(CLIENT_SITES)} client sites on port {port}."
        )

    def _home(self, root: Page, title: str, slug: str) -> HomePage:
        existing = HomePage.objects.child_of(root).filter(slug=slug).first()
        if existing:
            return existing
        home = HomePage(
            title=title, slug=slug, body=f"<p>Welcome to {title}, a client of the agency.</p>"
        )
        root.add_child(instance=home)
        return home
