"""A site's "Email settings" in its Client billing area: custom SMTP, From, Reply-to.

Whoever may bill for a site may edit its email settings: the same per-site permission
(``billable_sites``/``selected_site``), so an editor of site A gets 404 on site B. The
password is write-only: never rendered back, kept when the field is left blank.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.debug import sensitive_post_parameters
from django.views.generic import FormView, View
from wagtail.admin.views.generic.base import WagtailAdminTemplateMixin
from wagtail.log_actions import log
from wagtail.models import Site

from .. import crypto, mail, mailers
from ..models import SiteEmailSettings
from .requests import URL_NAME, billable_sites, selected_site, url

ACTION_EDIT = "wagtail_client_billing.email_settings.edit"
HOST_PATTERN = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)$")


class SiteEmailSettingsForm(forms.ModelForm):
    """The settings form; the password field is write-only."""

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
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.has_password:
            self.fields["password"].help_text = _(
                "A password is stored. Leave this blank to keep it."
            )
        else:
            del self.fields["clear_password"]

    def clean_host(self) -> str:
        host = self.cleaned_data["host"].strip()
        if host and not HOST_PATTERN.match(host):
            raise forms.ValidationError(_("Enter a host name such as smtp.example.com."))
        return host

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("custom_smtp"):
            if not data.get("host") and "host" not in self.errors:
                self.add_error("host", _("Custom SMTP needs a host."))
            if not data.get("from_email") and "from_email" not in self.errors:
                self.add_error("from_email", _("Custom SMTP needs a From address."))
        return data

    def save(self, commit: bool = True) -> SiteEmailSettings:
        instance = super().save(commit=False)
        if self.cleaned_data.get("password"):
            instance.set_password(self.cleaned_data["password"])
        elif self.cleaned_data.get("clear_password"):
            instance.set_password("")
        if commit:
            instance.save()
        return instance

    def changed_names(self) -> list[str]:
        """The fields this save changes (the password by name only)."""
        names = [name for name in self.changed_data if name not in ("password", "clear_password")]
        if self.cleaned_data.get("password") or self.cleaned_data.get("clear_password"):
            names.append("password")
        return names


class TestEmailForm(forms.Form):
    to = forms.EmailField(label=gettext_lazy("Send to"))


def forbidden(request: HttpRequest) -> HttpResponse:
    return TemplateResponse(
        request,
        "wagtail_client_billing/forbidden.html",
        {"page_title": _("Permission denied"), "header_title": _("Permission denied")},
        status=403,
    )


class SiteMixin:
    """The site from the switcher, among those the user may bill for (404 otherwise)."""

    site: Site

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        site = selected_site(request)
        if site is None:
            return forbidden(request)
        self.site = site
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]


@method_decorator(sensitive_post_parameters("password"), name="dispatch")
class EmailSettingsView(SiteMixin, WagtailAdminTemplateMixin, FormView):
    """Edit one site's email settings."""

    template_name = "wagtail_client_billing/email_settings/edit.html"
    form_class = SiteEmailSettingsForm
    page_title = gettext_lazy("Email settings")
    header_icon = "mail"

    def get_page_subtitle(self) -> str:
        return self.site.site_name or self.site.hostname

    def get_breadcrumbs_items(self) -> list[dict[str, Any]]:
        return [
            *super().get_breadcrumbs_items(),
            {"url": url("index", site=self.site), "label": _("Client billing")},
            {"url": "", "label": _("Email settings")},
        ]

    def get_instance(self) -> SiteEmailSettings:
        return SiteEmailSettings.objects.filter(site=self.site).first() or SiteEmailSettings(
            site=self.site
        )

    def get_form_kwargs(self) -> dict[str, Any]:
        return {**super().get_form_kwargs(), "instance": self.get_instance()}

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        # The settings as saved: a refused form has already written what was typed
        # into its instance, and the test email goes through what is saved.
        instance = self.get_instance()
        context.update(
            site=self.site,
            sites=billable_sites(self.request.user),
            switch_url=reverse(f"{URL_NAME}:email_settings"),
            action_url=url("email_settings", site=self.site),
            index_url=url("index", site=self.site),
            test_url=url("email_settings_test", site=self.site),
            test_form=TestEmailForm(initial={"to": self.request.user.email}),
            password_problem=password_problem(instance),
            server=mailers.server_name(instance),
        )
        return context

    def form_valid(self, form: SiteEmailSettingsForm) -> HttpResponse:
        changed = form.changed_names()
        instance = form.save()
        if changed:
            log(
                instance,
                ACTION_EDIT,
                user=self.request.user,
                data={"site": self.site.pk, "changed": changed},
            )
        messages.success(
            self.request,
            _("Email settings saved for %(site)s.")
            % {"site": self.site.site_name or self.site.hostname},
        )
        return redirect(url("email_settings", site=self.site))


class SendTestEmailView(SiteMixin, View):
    """Send a test email through the site's settings as saved, and say what happened."""

    def post(self, request: HttpRequest) -> HttpResponse:
        back = redirect(url("email_settings", site=self.site))
        form = TestEmailForm(request.POST)
        if not form.is_valid():
            messages.error(request, _("Enter the address to send the test email to."))
            return back
        email_settings = SiteEmailSettings.for_site_or_default(self.site.pk)
        to = form.cleaned_data["to"]
        try:
            mail.send_test_email(email_settings, to)
        except mail.EmailFailed as error:
            messages.error(
                request, _("The test email could not be sent: %(reason)s") % {"reason": error}
            )
        else:
            messages.success(
                request,
                _("A test email was sent to %(email)s through %(server)s.")
                % {"email": to, "server": mailers.server_name(email_settings)},
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
