"""Load the demo's data: an admin user, the agency's site, three client sites and, with
``--stripe-url``, a connected Stripe account (on the simulator) and billing history made
through the app's real code paths."""

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
        parser.add_argument(
            "--stripe-url",
            default="",
            help="the running Stripe simulator's URL: also connect an account and bill",
        )

    def handle(
        self, *args: Any, password: str, port: int, stripe_url: str = "", **options: Any
    ) -> None:
        self._people_and_sites(password, port)
        if stripe_url:
            self._billing_history(stripe_url)

    @transaction.atomic
    def _people_and_sites(self, password: str, port: int) -> None:
        user_model = get_user_model()
        admin, _ = user_model.objects.get_or_create(
            username="admin", defaults={"email": "admin@agency.localhost"}
        )
        admin.is_staff = admin.is_superuser = True
        # Wagtail's account settings ask for a name before saving anything else.
        admin.first_name = admin.first_name or "Agency"
        admin.last_name = admin.last_name or "Admin"
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

    def _billing_history(self, stripe_url: str) -> None:
        """Connect a test-mode account, then send, pay, expire and delete some requests."""
        from wagtail_client_billing import billing, connections
        from wagtail_client_billing.models import BillingRequest
        from wagtail_client_billing.testing.stripe_simulator import RemoteSimulator

        simulator = RemoteSimulator(stripe_url)
        admin = get_user_model().objects.get(username="admin")
        connection = connections.linked_connection("test")
        if connection is None:
            connection = connections.connect(
                mode="test",
                country="FR",
                privacy_policy_url="https://agency.example/privacy",
                terms_of_service_url="https://agency.example/terms",
                site_url="http://localhost/",
                nonce="demo-data",
                user=admin,
            )
        simulator.complete_onboarding(connection.account_id)
        connections.refresh(connection, user=admin)
        if BillingRequest.objects.exists():
            return
        plans = [
            ("acme", "hello@acme.example", "eur", 49000, "Website redesign", "one_time", "paid"),
            ("acme", "hello@acme.example", "eur", 2900, "Care plan", "monthly", "paid"),
            ("bakery", "pay@bakery.example", "eur", 12000, "Menu update", "one_time", "pending"),
            ("bakery", "pay@bakery.example", "gbp", 3000, "Photo shoot", "one_time", "expired"),
            ("studio", "hi@nord.example", "usd", 150000, "Brand book", "one_time", "deleted"),
            ("studio", "hi@nord.example", "usd", 19900, "Yearly support", "yearly", "pending"),
        ]
        sites = {site.hostname.split(".")[0]: site for site in Site.objects.all()}
        for site_key, email, currency, amount, description, billing_type, outcome in plans:
            site = sites[site_key]
            request = billing.create_request(
                site=site,
                details=billing.RequestDetails(
                    email=email,
                    currency=currency,
                    amount=amount,
                    description=description,
                    success_url=site.root_url + "/",
                    cancel_url=site.root_url + "/",
                    billing_type=billing_type,
                ),
                user=admin,
            )
            # Stripe (the simulator) sends the webhooks to the dev server, as it would.
            if outcome == "paid":
                simulator.complete_checkout(request.checkout_session_id)
            elif outcome == "expired":
                simulator.expire_session(request.checkout_session_id)
            elif outcome == "deleted":
                billing.delete_request(request, user=admin)
        self.stdout.write(f"Billing history: {len(plans)} requests on the simulator.")

    def _home(self, root: Page, title: str, slug: str) -> HomePage:
        existing = HomePage.objects.child_of(root).filter(slug=slug).first()
        if existing:
            return existing
        home = HomePage(
            title=title, slug=slug, body=f"<p>Welcome to {title}, a client of the connections.</p>"
        )
        root.add_child(instance=home)
        return home
