"""The agency settings page: "Client billing account" (connect, watch, unlink)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.generic import FormView, TemplateView, View
from wagtail.admin.views.generic.base import WagtailAdminTemplateMixin

from .. import agency, stripe_api, webhook_setup
from ..conf import billing_settings
from ..forms import ConnectForm
from ..models import StripeConnection
from ..permissions import is_agency_admin

MODES = ("test", "live")
INDEX_URL = "wagtail_client_billing_agency:index"


def mask(secret: str) -> str:
    """Show enough of a secret to recognise it, never enough to use it."""
    if not secret:
        return ""
    prefix = secret[: secret.index("_", secret.index("_") + 1) + 1] if secret.count("_") > 1 else ""
    return f"{prefix}…{secret[-4:]}" if len(secret) > len(prefix) + 8 else f"{prefix}…"


def direct_mode() -> bool:
    """Whether the install uses the platform's own account instead of Connect."""
    return billing_settings().direct


class AgencyAdminMixin:
    """Agency admins only: everyone else gets 403 on every URL, GET and POST."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not is_agency_admin(request.user):
            return forbidden(request)
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]


def forbidden(request: HttpRequest) -> HttpResponse:
    """A real 403 (Wagtail turns ``PermissionDenied`` into a redirect to the dashboard)."""
    return TemplateResponse(
        request,
        "wagtail_client_billing/forbidden.html",
        {"page_title": _("Permission denied"), "header_title": _("Permission denied")},
        status=403,
    )


class AgencyPageMixin(AgencyAdminMixin, WagtailAdminTemplateMixin):
    header_icon = "credit-card"
    page_title = gettext_lazy("Client billing account")

    def get_breadcrumbs_items(self) -> list[dict[str, Any]]:
        return [
            *super().get_breadcrumbs_items(),
            {"url": reverse(INDEX_URL), "label": gettext_lazy("Client billing account")},
        ]


def get_mode(kwargs: dict[str, Any]) -> str:
    mode = kwargs["mode"]
    if mode not in MODES:
        raise PermissionDenied
    return mode


def connection_or_404(mode: str) -> StripeConnection:
    from django.http import Http404

    connection = agency.linked_connection(mode)
    if connection is None:
        raise Http404(_("No client billing account is linked in %(mode)s mode.") % {"mode": mode})
    return connection


def onboarding_urls(request: HttpRequest, mode: str) -> dict[str, str]:
    return {
        "refresh_url": request.build_absolute_uri(
            reverse("wagtail_client_billing_agency:refresh", args=[mode])
        ),
        "return_url": request.build_absolute_uri(
            reverse("wagtail_client_billing_agency:return", args=[mode])
        ),
    }


class IndexView(AgencyPageMixin, TemplateView):
    """The page itself: each mode's connection, the active mode, keys and secrets."""

    template_name = "wagtail_client_billing/agency/index.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        conf = billing_settings()
        active = agency.active_mode()
        modes = []
        for mode in MODES:
            modes.append(
                {
                    "mode": mode,
                    "active": mode == active,
                    "connection": agency.linked_connection(mode),
                    "secret_key": mask(conf.secret_key(mode)),
                    "webhook_secrets": [mask(s) for s in conf.webhook_secrets(mode)],
                }
            )
        from ..forms import NotificationSettingsForm
        from ..mail.messages import agency_recipients
        from ..mail.queue import unsent
        from ..models import AgencyBillingSettings

        settings_row = AgencyBillingSettings.load()
        context.update(
            unsent_notifications=unsent()
            .select_related("billing_request", "billing_request__site")
            .order_by("-created_at", "-pk")[:20],
            notifications_form=NotificationSettingsForm(
                initial={
                    "notify_payments": settings_row.notify_payments,
                    "notification_recipients": settings_row.notification_recipients,
                }
            ),
            notification_recipients=agency_recipients(),
            modes=modes,
            active_mode=active,
            any_linked=any(m["connection"] for m in modes),
            direct=conf.direct,
            webhook_url=self.request.build_absolute_uri(
                reverse("wagtail_client_billing:stripe_webhook")
            ),
        )
        return context


class ConnectView(AgencyPageMixin, FormView):
    """Create client billing account -> Connect -> Stripe's onboarding."""

    template_name = "wagtail_client_billing/agency/connect.html"
    form_class = ConnectForm
    page_subtitle = gettext_lazy("Create client billing account")

    def get_form_kwargs(self) -> dict[str, Any]:
        kwargs = super().get_form_kwargs()
        kwargs["direct"] = direct_mode()
        return kwargs

    def get_initial(self) -> dict[str, Any]:
        # "Create client billing account" on the Live panel asks for live mode.
        live = self.request.GET.get("mode") == "live"
        return {"nonce": agency.new_idempotency_nonce(), "test_mode": not live}

    def form_valid(self, form: ConnectForm) -> HttpResponse:
        mode = form.mode
        data = form.cleaned_data
        try:
            if direct_mode():
                agency.connect_direct(
                    mode=mode,
                    privacy_policy_url=data["privacy_policy_url"],
                    terms_of_service_url=data["terms_of_service_url"],
                    user=self.request.user,
                )
                messages.success(self.request, _("Stripe accepted the keys: billing can start."))
                return redirect(INDEX_URL)
            connection = agency.connect(
                mode=mode,
                country=data["country"],
                privacy_policy_url=data["privacy_policy_url"],
                terms_of_service_url=data["terms_of_service_url"],
                site_url=self.request.build_absolute_uri("/"),
                nonce=data["nonce"],
                user=self.request.user,
            )
        except stripe_api.StripeFailure as error:
            form.add_error(None, error.user_message)
            return self.form_invalid(form)
        try:
            url = agency.onboarding_link(connection, **onboarding_urls(self.request, mode))
        except stripe_api.StripeFailure as error:
            # The account exists at Stripe and is stored: onboarding can resume later.
            messages.error(
                self.request,
                _(
                    "The account was created, but Stripe's onboarding could not be opened: "
                    "%(reason)s Use Continue onboarding to try again."
                )
                % {"reason": error.user_message},
            )
            return redirect(INDEX_URL)
        return HttpResponseRedirect(url)


class OnboardView(AgencyAdminMixin, View):
    """Continue onboarding (POST from the page) and Stripe's refresh URL (GET)."""

    def post(self, request: HttpRequest, mode: str) -> HttpResponse:
        connection = connection_or_404(get_mode({"mode": mode}))
        try:
            url = agency.onboarding_link(connection, **onboarding_urls(request, mode))
        except stripe_api.StripeFailure as error:
            messages.error(request, error.user_message)
            return redirect(INDEX_URL)
        return HttpResponseRedirect(url)

    # Stripe sends the browser to the refresh URL with a GET when a link has expired.
    get = post


class ReturnView(AgencyAdminMixin, View):
    """Stripe's return URL: re-read the account and say where onboarding stands."""

    def get(self, request: HttpRequest, mode: str) -> HttpResponse:
        connection = connection_or_404(get_mode({"mode": mode}))
        try:
            connection = agency.refresh(connection, user=request.user)
        except stripe_api.StripeFailure as error:
            messages.error(request, error.user_message)
            return redirect(INDEX_URL)
        if connection.status == StripeConnection.Status.READY:
            messages.success(request, _("Your client billing account is ready to charge."))
        else:
            messages.warning(request, _("Stripe still needs some information before billing."))
        return redirect(INDEX_URL)


class RefreshStatusView(AgencyAdminMixin, View):
    """Ask Stripe again now (the webhook does this on its own)."""

    def post(self, request: HttpRequest, mode: str) -> HttpResponse:
        connection = connection_or_404(get_mode({"mode": mode}))
        try:
            agency.refresh(connection, user=request.user)
            messages.success(request, _("Status updated from Stripe."))
        except stripe_api.StripeFailure as error:
            messages.error(request, error.user_message)
        return redirect(INDEX_URL)


class UnlinkView(AgencyPageMixin, TemplateView):
    """Unlink account: says how many requests are pending and withdraws them first."""

    template_name = "wagtail_client_billing/agency/unlink.html"
    page_subtitle = gettext_lazy("Unlink account")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        connection = connection_or_404(get_mode(self.kwargs))
        context["connection"] = connection
        context["pending"] = agency.pending_requests(connection).count()
        return context

    def post(self, request: HttpRequest, mode: str) -> HttpResponse:
        connection = connection_or_404(get_mode({"mode": mode}))
        reason = "unlinked by an agency admin"
        if "withdraw" not in request.POST:
            pending = agency.unlink_unless_pending(connection, user=request.user, reason=reason)
            if pending:
                messages.error(request, still_pending_message(pending))
                return redirect("wagtail_client_billing_agency:unlink", mode)
            messages.success(request, _("The client billing account was unlinked."))
            return redirect(INDEX_URL)
        outcome = agency.withdraw_and_unlink(connection, user=request.user, reason=reason)
        if not outcome.unlinked:
            messages.error(request, not_unlinked_message(outcome))
            return redirect("wagtail_client_billing_agency:unlink", mode)
        if outcome.failures:
            messages.warning(request, unlinked_but_message(outcome))
        else:
            messages.success(request, unlinked_message(outcome))
        return redirect(INDEX_URL)


def still_pending_message(count: int) -> str:
    """A plain unlink refused: how many requests are still pending."""
    return ngettext(
        "The account was not unlinked: %(count)s billing request is still pending on it. "
        "Withdraw it first.",
        "The account was not unlinked: %(count)s billing requests are still pending on it. "
        "Withdraw them first.",
        count,
    ) % {"count": count}


def _done(outcome: agency.UnlinkOutcome) -> list[str]:
    done = []
    if outcome.withdrawn:
        done.append(
            ngettext(
                "%(count)s pending billing request was withdrawn",
                "%(count)s pending billing requests were withdrawn",
                outcome.withdrawn,
            )
            % {"count": outcome.withdrawn}
        )
    if outcome.paid:
        done.append(
            ngettext(
                "%(count)s had already been paid and is now marked Paid",
                "%(count)s had already been paid and are now marked Paid",
                outcome.paid,
            )
            % {"count": outcome.paid}
        )
    return done


def _reasons(outcome: agency.UnlinkOutcome) -> str:
    return "; ".join(f"{request.email}: {reason}" for request, reason in outcome.failures)


def unlinked_message(outcome: agency.UnlinkOutcome) -> str:
    """Withdrawn (or found paid), then unlinked."""
    done = _done(outcome)
    if not done:
        return _("The client billing account was unlinked.")
    return _("%(done)s; the client billing account was unlinked.") % {"done": "; ".join(done)}


def not_unlinked_message(outcome: agency.UnlinkOutcome) -> str:
    """Stripe failed for some (nothing unlinked), or requests kept arriving."""
    if not outcome.failures:
        return ngettext(
            "The account was not unlinked: new billing requests kept arriving on it "
            "(%(count)s pending now). Try again.",
            "The account was not unlinked: new billing requests kept arriving on it "
            "(%(count)s pending now). Try again.",
            outcome.pending,
        ) % {"count": outcome.pending}
    failed = len(outcome.failures)
    not_done = ngettext("%(count)s could not be", "%(count)s could not be", failed) % {
        "count": failed
    }
    return _(
        "The account was not unlinked: %(done)s (%(reasons)s). "
        "Try again to withdraw the rest and unlink."
    ) % {
        "done": ", ".join([*_done(outcome), not_done]),
        "reasons": _reasons(outcome),
    }


def unlinked_but_message(outcome: agency.UnlinkOutcome) -> str:
    """Unlinked, but requests sent during the unlink could not be withdrawn."""
    failed = len(outcome.failures)
    return ngettext(
        "The client billing account was unlinked, but %(count)s billing request sent "
        "meanwhile could not be withdrawn (%(reasons)s): its link now says it no longer "
        "works, and a payment Stripe still reports for it is recorded.",
        "The client billing account was unlinked, but %(count)s billing requests sent "
        "meanwhile could not be withdrawn (%(reasons)s): their links now say they no "
        "longer work, and a payment Stripe still reports for them is recorded.",
        failed,
    ) % {"count": failed, "reasons": _reasons(outcome)}


class SwitchModeView(AgencyAdminMixin, View):
    """Make test or live the mode new billing requests use."""

    def post(self, request: HttpRequest) -> HttpResponse:
        mode = request.POST.get("mode", "")
        if mode not in MODES:
            messages.error(request, _("Unknown mode."))
        else:
            agency.switch_mode(mode, user=request.user)
            messages.success(
                request,
                _("Live mode is now active.") if mode == "live" else _("Test mode is now active."),
            )
        return redirect(INDEX_URL)


class RegisterWebhookView(AgencyAdminMixin, View):
    """Register this install's webhook endpoint at Stripe and show the secret to set."""

    def post(self, request: HttpRequest, mode: str) -> HttpResponse:
        mode = get_mode({"mode": mode})
        url = request.build_absolute_uri(reverse("wagtail_client_billing:stripe_webhook"))
        if mode == "live" and not url.startswith("https://"):
            # Stripe delivers live events to https endpoints only.
            messages.error(
                request,
                _(
                    "Stripe sends live events to https addresses only, and this page was "
                    "opened over http (%(url)s). Open the admin over https (behind a proxy, "
                    "set SECURE_PROXY_SSL_HEADER), or run manage.py register_stripe_webhook "
                    "--mode live --url https://your.site%(path)s"
                )
                % {"url": url, "path": reverse("wagtail_client_billing:stripe_webhook")},
            )
            return redirect(INDEX_URL)
        try:
            endpoint = webhook_setup.register_webhook_endpoint(mode, url, connect=not direct_mode())
        except stripe_api.StripeFailure as error:
            messages.error(request, error.user_message)
            return redirect(INDEX_URL)
        messages.success(
            request,
            _(
                "Stripe will send events to %(url)s. Put this signing secret in "
                "WAGTAIL_CLIENT_BILLING['%(setting)s'] (or the environment) and restart: "
                "%(secret)s"
            )
            % {
                "url": url,
                "setting": f"STRIPE_{mode.upper()}_WEBHOOK_SECRET",
                "secret": endpoint.secret,
            },
        )
        return redirect(INDEX_URL)


class NotificationsView(AgencyAdminMixin, View):
    """Save who hears when money arrives."""

    def post(self, request: HttpRequest) -> HttpResponse:
        from ..forms import NotificationSettingsForm
        from ..models import AgencyBillingSettings

        form = NotificationSettingsForm(request.POST)
        if not form.is_valid():
            for errors in form.errors.values():
                for error in errors:
                    messages.error(request, error)
            return redirect(INDEX_URL)
        settings_row = AgencyBillingSettings.load()
        settings_row.notify_payments = form.cleaned_data["notify_payments"]
        settings_row.notification_recipients = form.cleaned_data["notification_recipients"]
        settings_row.save(update_fields=["notify_payments", "notification_recipients"])
        messages.success(request, _("Notification settings saved."))
        return redirect(INDEX_URL)


class SendNotificationAgainView(AgencyAdminMixin, View):
    """Queue a notification that did not go out once more."""

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        from ..mail.queue import send_again

        if send_again(pk):
            messages.success(request, _("The notification is on its way again."))
        else:
            messages.warning(
                request, _("This notification was already sent, or is being sent right now.")
            )
        return redirect(INDEX_URL)


# The views that call Stripe run outside any request transaction (ATOMIC_REQUESTS):
# a transaction must never stay open while Stripe answers.
outside_transactions = transaction.non_atomic_requests

index = IndexView.as_view()
notifications = NotificationsView.as_view()
send_notification_again = SendNotificationAgainView.as_view()
connect = outside_transactions(ConnectView.as_view())
onboard = outside_transactions(OnboardView.as_view())
return_view = outside_transactions(ReturnView.as_view())
refresh_status = outside_transactions(RefreshStatusView.as_view())
# Withdrawing calls Stripe once per request: never inside a request-wide transaction.
unlink = outside_transactions(UnlinkView.as_view())
switch_mode = SwitchModeView.as_view()
register_webhook = outside_transactions(RegisterWebhookView.as_view())
