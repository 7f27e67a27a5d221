"""``manage.py rotate_billing_encryption_keys``: re-encrypt stored secrets with the first key."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ... import crypto
from ...models import SiteEmailSettings


class Command(BaseCommand):
    help = (
        "Re-encrypt every site's stored SMTP password with the first key of "
        "WAGTAIL_CLIENT_BILLING['ENCRYPTION_KEYS'] (or the SECRET_KEY-derived key). "
        "Run it after putting a new key first; then the old keys can be removed."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        rotated, unreadable = 0, []
        stored = SiteEmailSettings.objects.exclude(password_encrypted="").select_related("site")
        for email_settings in stored.iterator():
            old = email_settings.password_encrypted
            try:
                new = crypto.decrypt(old, rotate=True)
            except crypto.UndecryptableSecret:
                unreadable.append(str(email_settings.site))
                continue
            # Conditional: a password saved meanwhile in the admin is not overwritten.
            rotated += SiteEmailSettings.objects.filter(
                pk=email_settings.pk, password_encrypted=old
            ).update(password_encrypted=new)
        self.stdout.write(f"Re-encrypted {rotated} stored SMTP password(s) with the first key.")
        if unreadable:
            # Site names only: never a token or a password.
            raise CommandError(
                f"{len(unreadable)} stored password(s) could not be decrypted with any "
                f"configured key and were left unchanged: {', '.join(unreadable)}. "
                "Add the old key back to ENCRYPTION_KEYS, or enter those passwords again."
            )
