"""A client site's email settings: its own SMTP server, or the default backend."""

from __future__ import annotations

import contextlib
from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import translation
from django.utils.translation import gettext_lazy as _
from wagtail.contrib.settings.models import BaseSiteSetting

from .. import crypto


def own_language(site: Any) -> str:
    """A site's own language: its root page's locale, else ``LANGUAGE_CODE``."""
    with contextlib.suppress(Exception):  # a site without locale data: never fails
        return site.root_page.locale.language_code
    return settings.LANGUAGE_CODE


def language_name(code: str) -> str:
    """A language in its own name ("français"), or its code if Django does not know it."""
    with contextlib.suppress(KeyError):
        return str(translation.get_language_info(code)["name_local"])
    return code


class SiteEmailSettings(BaseSiteSetting):
    """How one site's billing emails go out; the password is encrypted, for its server only."""

    # What the stored password was entered for: change any of them and it is dropped.
    SERVER_FIELDS = ("host", "port", "username", "security")

    class Security(models.TextChoices):
        STARTTLS = "starttls", _("STARTTLS")
        SSL = "ssl", _("SSL/TLS")
        NONE = "none", _("None")

    custom_smtp = models.BooleanField(
        _("Custom SMTP"),
        default=False,
        help_text=_("Send this site's emails through its own SMTP server."),
    )
    host = models.CharField(_("Host"), max_length=255, blank=True)
    port = models.PositiveIntegerField(
        _("Port"), default=587, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    username = models.CharField(_("Username"), max_length=255, blank=True)
    password_encrypted = models.TextField(blank=True, editable=False)
    security = models.CharField(
        _("Security"), max_length=8, choices=Security.choices, default=Security.STARTTLS
    )
    from_email = models.EmailField(
        _("From"),
        blank=True,
        help_text=_("The address your client receives the billing emails from."),
    )
    reply_to = models.EmailField(
        _("Reply-to"), blank=True, help_text=_("Where you receive your clients' replies.")
    )
    client_language = models.CharField(
        _("Language of client emails and pages"),
        max_length=15,
        blank=True,
        help_text=_(
            "The language of the billing emails and payment pages this site's clients get. "
            "Blank: the site's own language (its root page's locale, else the project's)."
        ),
    )
    updated_at = models.DateTimeField(auto_now=True)

    _password_typed = False  # ``set_password`` was called since the last save
    password_removed = False  # the last save dropped the password (the server changed)

    class Meta:
        verbose_name = _("email settings")
        verbose_name_plural = _("email settings")
        # One permission, granted per site: nothing to add or delete.
        default_permissions = ("change",)

    def __str__(self) -> str:
        return f"{self._meta.verbose_name} · {self.site}"

    def __repr__(self) -> str:
        # Never the password, not even encrypted.
        return f"<SiteEmailSettings site={self.site_id} custom_smtp={self.custom_smtp}>"

    @property
    def has_password(self) -> bool:
        return bool(self.password_encrypted)

    def set_password(self, password: str) -> None:
        """Store ``password`` encrypted ("" removes it)."""
        self.password_encrypted = crypto.encrypt(password)
        self._password_typed = True

    @property
    def server_address(self) -> str:
        return f"{self.host}:{self.port}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Drop the stored password if it was entered for another server (else an editor
        could point the settings at their own server and read it in the AUTH exchange of a
        test email); checked here so every path keeps the rule."""
        self.password_removed = False
        if self.password_encrypted and self.pk is not None and not self._password_typed:
            rows = type(self)._default_manager.filter(pk=self.pk)
            saved = rows.values_list(*self.SERVER_FIELDS).first()
            current = tuple(getattr(self, name) for name in self.SERVER_FIELDS)
            self.password_removed = saved is not None and saved != current
        if self.password_removed:
            self.password_encrypted = ""
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "password_encrypted"}
        super().save(*args, **kwargs)
        self._password_typed = False

    def get_password(self) -> str:
        """The password in clear, or ``crypto.UndecryptableSecret``."""
        return crypto.decrypt(self.password_encrypted)

    @property
    def contact_address(self) -> str:
        """Where a client can write: Reply-to, else From, else ``DEFAULT_FROM_EMAIL``."""
        return self.reply_to or self.from_email or settings.DEFAULT_FROM_EMAIL

    def language(self, site: Any = None) -> str:
        """The language of the site's client emails and pages: chosen here, else the site's
        own (``site``: this site, if already read)."""
        return self.client_language or own_language(site or self.site)

    @classmethod
    def for_site_or_default(cls, site_id: int) -> SiteEmailSettings:
        """The site's saved settings, or unsaved defaults (reading never writes a row)."""
        return cls.objects.filter(site_id=site_id).first() or cls(site_id=site_id)
