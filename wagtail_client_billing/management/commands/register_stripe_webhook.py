"""``manage.py register_stripe_webhook``: create this install's webhook endpoint at Stripe."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from ... import stripe_api
from ...conf import billing_settings, setting_key
from ...events import endpoints


class Command(BaseCommand):
    help = (
        "Register this install's webhook endpoint at Stripe (a Connect endpoint unless "
        "STRIPE_CONNECT is False) and print the signing secret to configure."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--mode",
            choices=["test", "live"],
            default="test",
            help="The Stripe mode whose secret key is used (default: test).",
        )
        parser.add_argument(
            "--url",
            help="The public URL of the endpoint, https://.../billing/stripe/webhook/ "
            "(default: WAGTAILADMIN_BASE_URL followed by the endpoint's path).",
        )

    def handle(self, *args: Any, mode: str, url: str | None, **options: Any) -> None:
        try:
            conf = billing_settings()
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from error
        url = url or endpoints.default_webhook_url()
        if not url:
            raise CommandError(
                "No URL to register: pass --url https://your.site/billing/stripe/webhook/ "
                "or set WAGTAILADMIN_BASE_URL."
            )
        if problem := endpoints.url_problem(url, mode):
            raise CommandError(problem)
        path = reverse(endpoints.WEBHOOK_URL_NAME)
        if not urlsplit(url).path.endswith(path):
            self.stderr.write(
                self.style.WARNING(
                    f"{url} does not end with {path}: check that it reaches this app's "
                    "webhook view."
                )
            )
        try:
            endpoint = endpoints.register_webhook_endpoint(mode, url, connect=not conf.direct)
        except stripe_api.StripeNotConfigured as error:
            key = setting_key(f"STRIPE_{mode.upper()}_SECRET_KEY")
            raise CommandError(f"{error.user_message} Set {key} first.") from error
        except stripe_api.StripeFailure as error:
            raise CommandError(
                f"Stripe did not register the endpoint: {error.user_message}"
            ) from error
        secret_setting = setting_key(f"STRIPE_{mode.upper()}_WEBHOOK_SECRET")
        if endpoint.existing and endpoint.added:
            self.stdout.write(
                f"Stripe already sends {mode}-mode events to {url} (endpoint {endpoint.id}): "
                f"it now also sends {', '.join(endpoint.added)}. Its signing secret is unchanged."
            )
            return
        if endpoint.existing:
            self.stdout.write(
                f"Stripe already sends {mode}-mode events to {url} (endpoint {endpoint.id}): "
                "nothing was changed. Its signing secret is on the endpoint's page in the "
                f"Stripe Dashboard ({secret_setting})."
            )
            return
        kind = "endpoint" if conf.direct else "Connect endpoint"
        self.stdout.write(
            self.style.SUCCESS(f"Registered the {mode}-mode {kind} {endpoint.id} for {url}")
        )
        self.stdout.write(f"Events: {', '.join(endpoint.events)}")
        if not endpoint.secret:
            self.stderr.write(
                self.style.WARNING(
                    "Stripe returned no signing secret: copy it from the endpoint's page in "
                    f"the Stripe Dashboard into {secret_setting}."
                )
            )
            return
        # Stripe shows it once; it belongs in the environment, never in the database or a log.
        self.stdout.write(f"Signing secret: {endpoint.secret}")
        self.stdout.write(f"Put it in {secret_setting}.")
        if conf.webhook_secrets(mode):
            self.stdout.write(
                "A secret is already configured: keep it next to the new one until the old "
                f'endpoint is deleted, e.g. {secret_setting} = ["whsec_old...", "whsec_new..."].'
            )
