"""A site's "Email settings" (custom SMTP, From, Reply-to), under its own per-site permission.

The password is write-only: never rendered back, kept when left blank."""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.debug import sensitive_post_parameters
from django.views.generic import UpdateView, View
from wagtail.admin.views.generic.base import WagtailAdminTemplateMixin
from wagtail.log_actions import log
from wagtail.models import ModelLogEntry, Site

from .. import crypto
from ..conf import billing_settings
from ..mail import failures, outbox, smtp
from ..mail import messages as email_messages
from ..models import SiteEmailSettings
from ..models.site import language_name, own_language
from ..permissions import email_settings_policy, forbidden
from . import listing
from .listing import URL_NAME, billable_sites, url

ACTION_EDIT = "wagtail_client_billing.email_settings.edit"
ACTION_TEST = "wagtail_client_billing.email_settings.test"
TEST_EMAIL_WINDOW = timedelta(minutes=1)
LOCALE = Path(__file__).resolve().parent.parent / "locale"
HOST_PATTERN = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)$")


def client_languages() -> list[str]:
    """The project's languages (``LANGUAGES``) this app has words for: English and those of
    its catalogues (others would get English with their own dates and numbers)."""
    spoken = {"en", *(path.name for path in LOCALE.iterdir() if path.is_dir())}
    return [code for code, _name in settings.LANGUAGES if code.split("-")[0] in spoken]


class SiteEmailSettingsForm(forms.ModelForm):
    password = forms.CharField(
        label=gettext_lazy("Password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    clear_password = forms.BooleanField(
        label=gettext_lazy("Remove the stored password"), required=False
    )

    class Meta:
        model = SiteEmailSettings
        fields = [
            "custom_smtp",
            "host",
            "port",
            "username",
            "password",
            "clear_password",
            "security",
            "from_email",
            "reply_to",
            "client_language",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.saved_server = self.instance.server_address if self.instance.pk else ""
        # Needed with Custom SMTP only (clean): not marked required when it is off.
        self.fields["port"].required = False
        default = language_name(own_language(self.instance.site))
        self.fields["client_language"] = forms.ChoiceField(
            label=self.fields["client_language"].label,
            help_text=self.fields["client_language"].help_text,
            required=False,
            choices=[
                (
                    "",
                    _("The site's own language: %(language)s")
                    % {"language": language_name(default)},
                ),
                *((code, language_name(code)) for code in client_languages()),
            ],
        )
        if self.instance.has_password:
            self.fields["password"].help_text = _(
                "A password is stored for this server. Leave this blank to keep it; "
                "changing the host, port, username or security removes it, so type it "
                "again then."
            )
        else:
            self.fields["password"].help_text = _(
                "Stored encrypted, for this server only: changing the host, port, username "
                "or security removes it."
            )
            del self.fields["clear_password"]
        domains = ", ".join(billing_settings().sender_domains)
        if domains:
            text = _(
                "The address your client receives the billing emails from. Without Custom SMTP, "
                "only an address at %(domains)s is used as the From; with any other, the emails "
                "come from %(default)s and this address is their Reply-to."
            )
        else:
            text = _(
                "The address your client receives the billing emails from, with Custom SMTP. "
                "Without it, the emails come from %(default)s under the site's name, with this "
                "address as their Reply-to."
            )
        default = email_messages.default_sender_address()
        self.fields["from_email"].help_text = text % {"domains": domains, "default": default}

    def clean_host(self) -> str:
        host = self.cleaned_data["host"].strip()
        if host and not HOST_PATTERN.match(host):
            raise forms.ValidationError(_("Enter a host name such as smtp.example.com."))
        if host and not billing_settings().smtp_allow_private_hosts and _obviously_private(host):
            # A typed address is refused now; a name is checked when sending (DNS can change).
            raise forms.ValidationError(
                _(
                    "This is a private or local address; this install only sends to "
                    "public mail servers."
                )
            )
        return host

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if data.get("custom_smtp"):
            if not data.get("host") and "host" not in self.errors:
                self.add_error("host", _("Custom SMTP needs a host."))
            if not data.get("from_email") and "from_email" not in self.errors:
                self.add_error("from_email", _("Custom SMTP needs a From address."))
            if data.get("port") is None and "port" not in self.errors:
                self.add_error("port", _("Custom SMTP needs a port."))
        elif data.get("port") is None:  # hidden and left blank: the saved one stays
            data["port"] = self.instance.port or SiteEmailSettings._meta.get_field("port").default
        return data

    def save(self, commit: bool = True) -> SiteEmailSettings:
        instance = super().save(commit=False)
        password = self.cleaned_data.get("password")
        if password or self.cleaned_data.get("clear_password"):
            instance.set_password(password or "")
        if commit:
            instance.save()
        return instance

    def changed_names(self) -> list[str]:
        """The fields this save changes (the password by name only); after ``save``."""
        data = self.cleaned_data
        names = [name for name in self.changed_data if name not in ("password", "clear_password")]
        if data.get("password") or data.get("clear_password") or self.instance.password_removed:
            names.append("password")
        return names


def from_note(email_settings: SiteEmailSettings) -> str:
    """Why the saved From address does not head the emails, or "" when it does."""
    if not email_settings.from_email or email_messages.sends_from_own_address(email_settings):
        return ""
    site = email_settings.site
    values = {
        "default": email_messages.default_sender_address(),
        "site": site.site_name or site.hostname,
        "address": email_settings.from_email,
        "reply_to": (email_messages.reply_to(email_settings) or [""])[0],
        "domains": ", ".join(billing_settings().sender_domains),
    }
    if values["domains"]:
        text = _(
            "Without Custom SMTP, this site's emails are sent from %(default)s under the "
            "name %(site)s, not from %(address)s: through the project's email backend, a "
            "site can send only from %(domains)s. Replies go to %(reply_to)s."
        )
    else:
        text = _(
            "Without Custom SMTP, this site's emails are sent from %(default)s under the name "
            "%(site)s, not from %(address)s: the project's email backend sends only from its "
            "own address. Replies go to %(reply_to)s."
        )
    return text % values


def _obviously_private(host: str) -> bool:
    """An address literal that is not public, or "localhost" (no lookup here)."""
    if host.lower().rstrip(".") == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False  # a name: checked when sending
    return not smtp.is_public_address(address)


class TestEmailForm(forms.Form):
    to = forms.EmailField(label=gettext_lazy("Send to"))


def editable_sites(user: Any) -> QuerySet:
    sites = email_settings_policy.sites_user_has_any_permission_for(user, ["change"])
    return sites.order_by("site_name", "hostname")


class SiteMixin:
    """The switcher's site among those the user may edit: 403 for none, 404 for another."""

    site: Site

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        refusal = _("You cannot edit this site's email settings.")
        site = listing.selected_site(request, editable_sites(request.user), refusal)
        if site is None:
            return forbidden(request, "wagtail_client_billing/email_settings/forbidden.html")
        self.site = site
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]


@method_decorator(sensitive_post_parameters("password"), name="dispatch")
class EmailSettingsView(SiteMixin, WagtailAdminTemplateMixin, UpdateView):
    template_name = "wagtail_client_billing/email_settings/edit.html"
    form_class = SiteEmailSettingsForm
    page_title = gettext_lazy("Email settings")
    header_icon = "mail"

    def get_page_subtitle(self) -> str:
        return self.site.site_name or self.site.hostname

    def may_bill(self) -> bool:
        return billable_sites(self.request.user).filter(pk=self.site.pk).exists()

    def get_breadcrumbs_items(self) -> list[dict[str, Any]]:
        items = [*super().get_breadcrumbs_items()]
        if self.may_bill():
            items.append({"url": url("index", site=self.site), "label": _("Client billing")})
        return [*items, {"url": "", "label": _("Email settings")}]

    def get_object(self, queryset: QuerySet | None = None) -> SiteEmailSettings:
        return SiteEmailSettings.for_site_or_default(self.site.pk)

    def get_success_url(self) -> str:
        return url("email_settings", site=self.site)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        # As saved: a refused form has written what was typed into its instance.
        instance = self.get_object()
        return super().get_context_data(
            **kwargs,
            site=self.site,
            sites=editable_sites(self.request.user),
            switch_url=reverse(f"{URL_NAME}:email_settings"),
            action_url=url("email_settings", site=self.site),
            index_url=url("index", site=self.site) if self.may_bill() else "",
            test_url=url("email_settings_test", site=self.site),
            test_form=TestEmailForm(initial={"to": getattr(self.request.user, "email", "")}),
            password_problem=password_problem(instance),
            from_note=from_note(instance),
            server=failures.server_name(instance),
        )

    # form_class is SiteEmailSettingsForm; the stubs type UpdateView's as a ModelForm.
    def form_valid(self, form: SiteEmailSettingsForm) -> HttpResponse:  # type: ignore[override]
        response = super().form_valid(form)
        instance = self.object
        if changed := form.changed_names():
            data: dict[str, Any] = {"site": self.site.pk, "changed": changed}
            if form.saved_server and form.saved_server != instance.server_address:
                data["server"] = {"old": form.saved_server, "new": instance.server_address}
            if instance.password_removed:
                data["password_removed"] = True
            log(instance, ACTION_EDIT, user=self.request.user, data=data)
        messages.success(
            self.request,
            _("Email settings saved for %(site)s.") % {"site": self.get_page_subtitle()},
        )
        if instance.password_removed:
            messages.warning(
                self.request,
                _(
                    "The stored password was removed: it was entered for another server "
                    "(the host, port, username or security changed). If %(server)s needs "
                    "a password, type it again and save."
                )
                % {"server": instance.server_address},
            )
        return response


# The test email talks to an SMTP server: never inside a request transaction.
@method_decorator(transaction.non_atomic_requests, name="dispatch")
class SendTestEmailView(SiteMixin, View):
    """Send a test email through the site's settings as saved, and say what happened."""

    def post(self, request: HttpRequest) -> HttpResponse:
        back = redirect(url("email_settings", site=self.site))
        form = TestEmailForm(request.POST)
        if not form.is_valid():
            messages.error(request, _("Enter the address to send the test email to."))
            return back
        # The audit entry needs a row: defaults if none was saved.
        email_settings, _created = SiteEmailSettings.objects.get_or_create(site=self.site)
        to, server = form.cleaned_data["to"], failures.server_name(email_settings)
        # Counted in the database (every worker sees it), after writing the entry: two
        # requests at once are at worst both refused, never both sent over the limit.
        data = {"site": self.site.pk, "to": to, "server": server}
        entry = log(email_settings, ACTION_TEST, user=request.user, data=data)
        recent = ModelLogEntry.objects.filter(action=ACTION_TEST, user_id=request.user.pk)
        since = timezone.now() - TEST_EMAIL_WINDOW
        sent_before = recent.filter(timestamp__gt=since).exclude(pk=entry.pk).count()
        if sent_before >= billing_settings().test_emails_per_minute:
            entry.delete()
            messages.error(
                request,
                ngettext(
                    "You have sent %(count)s test email in the last minute; wait a minute "
                    "before sending another.",
                    "You have sent %(count)s test emails in the last minute; wait a minute "
                    "before sending another.",
                    sent_before,
                )
                % {"count": sent_before},
            )
            return back
        try:
            outbox.send_test_email(email_settings, to)
        except outbox.EmailFailed as error:
            entry.data = {**entry.data, "error": str(error)}
            entry.save(update_fields=["data"])
            messages.error(
                request, _("The test email could not be sent: %(reason)s") % {"reason": error}
            )
        else:
            messages.success(
                request,
                _("A test email was sent to %(email)s through %(server)s.")
                % {"email": to, "server": server},
            )
        return back

    def get(self, request: HttpRequest) -> HttpResponse:
        return redirect(url("email_settings", site=self.site))


def password_problem(email_settings: SiteEmailSettings) -> str:
    """Why the stored password cannot be used, or "" (the value itself is never shown)."""
    try:
        email_settings.get_password()
    except crypto.UndecryptableSecret as error:
        return str(error)
    return ""
