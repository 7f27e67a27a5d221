"""The agency settings page: "Client billing account" (connect, watch, unlink)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_http_methods
from django.views.generic import FormView, TemplateView
from wagtail.admin.views.generic.base import WagtailAdminTemplateMixin

from .. import billing, connections, stripe_api
from ..conf import billing_settings
from ..events import endpoints
from ..forms import ConnectForm, InvoiceSettingsForm, NotificationSettingsForm
from ..icons import ICON
from ..mail.messages import agency_recipients
from ..mail.queue import send_again, unsent
from ..models import AgencyBillingSettings, StripeConnection
from ..models.agency import Mode
from ..permissions import AgencyAdminRequiredMixin, agency_admins_only
from ..requirements import in_words

INDEX_URL = "wagtail_client_billing_agency:index"
# Views that call Stripe run outside ATOMIC_REQUESTS: no transaction stays open while it answers.
outside_transactions = transaction.non_atomic_requests


def mask(secret: str) -> str:
    """Show enough of a secret to recognise it, never enough to use it."""
    if not secret:
        return ""
    prefix = secret[: secret.index("_", secret.index("_") + 1) + 1] if secret.count("_") > 1 else ""
    return f"{prefix}…{secret[-4:]}" if len(secret) > len(prefix) + 8 else f"{prefix}…"


def connection_or_404(mode: str) -> StripeConnection:
    """The connection linked in ``mode`` (a URL part): 404 for another word or none linked."""
    connection = connections.linked_connection(mode) if mode in Mode.values else None
    if connection is None:
        raise Http404(_("No client billing account is linked in %(mode)s mode.") % {"mode": mode})
    return connection


def webhook_url(request: HttpRequest) -> str:
    return request.build_absolute_uri(reverse("wagtail_client_billing:stripe_webhook"))


def onboarding_link(request: HttpRequest, connection: StripeConnection) -> str:
    """A fresh link to Stripe's onboarding, which comes back to this page's mode URLs."""
    urls = {
        f"{name}_url": request.build_absolute_uri(
            reverse(f"wagtail_client_billing_agency:{name}", args=[connection.mode])
        )
        for name in ("refresh", "return")
    }
    return stripe_api.create_onboarding_link(connection.mode, connection.account_id, **urls)


def button(
    methods: tuple[str, ...] = ("POST",), *, stripe: bool = True
) -> Callable[[Callable[..., str | None]], Callable[..., HttpResponse]]:
    """A button of the page: act, say how it went, go back (or to the address returned)."""

    def decorate(act: Callable[..., str | None]) -> Callable[..., HttpResponse]:
        @wraps(act)
        def view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
            try:
                return redirect(act(request, **kwargs) or INDEX_URL)
            except stripe_api.StripeFailure as error:
                messages.error(request, error.user_message)
                return redirect(INDEX_URL)

        checked = agency_admins_only(require_http_methods(list(methods))(view))
        return outside_transactions(checked) if stripe else checked

    return decorate


class AgencyPageMixin(AgencyAdminRequiredMixin, WagtailAdminTemplateMixin):
    header_icon = ICON
    page_title = gettext_lazy("Client billing account")

    def get_breadcrumbs_items(self) -> list[dict[str, Any]]:
        return [
            *super().get_breadcrumbs_items(),
            {"url": reverse(INDEX_URL), "label": gettext_lazy("Client billing account")},
        ]


class IndexView(AgencyPageMixin, TemplateView):
    template_name = "wagtail_client_billing/agency/index.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        conf = billing_settings()
        settings_row = AgencyBillingSettings.load(request_or_site=self.request)
        modes = [
            {
                "mode": mode,
                "active": mode == settings_row.active_mode,
                "connection": connection,
                "requirements": in_words(connection.requirements_due if connection else []),
                "secret_key": mask(conf.secret_key(mode)),
                "webhook_secrets": [mask(s) for s in conf.webhook_secrets(mode)],
            }
            for mode in Mode
            for connection in [connections.linked_connection(mode)]
        ]
        return super().get_context_data(
            unsent_notifications=unsent()
            .select_related("billing_request", "billing_request__site")
            .order_by("-created_at", "-pk")[:20],
            notifications_form=NotificationSettingsForm(instance=settings_row),
            invoices_form=kwargs.pop("invoices_form", None)
            or InvoiceSettingsForm(instance=settings_row),
            notification_recipients=agency_recipients(),
            modes=modes,
            active_mode=settings_row.active_mode,
            any_linked=any(m["connection"] for m in modes),
            direct=conf.direct,
            webhook_url=webhook_url(self.request),
            **kwargs,
        )


class InvoiceSettingsView(IndexView):
    """Save "Invoices and receipts"; refused: the page again, with what was typed and why."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> HttpResponse:
        settings_row = AgencyBillingSettings.load(request_or_site=request)
        form = InvoiceSettingsForm(request.POST, instance=settings_row)
        if not form.is_valid():
            messages.error(request, _("The invoice settings were not saved: see below why."))
            return self.render_to_response(self.get_context_data(invoices_form=form))
        # Only the form's fields: a mode switched meanwhile is not written back.
        form.save(commit=False).save(update_fields=list(form.fields))
        messages.success(request, _("Invoice settings saved."))
        return redirect(reverse(INDEX_URL) + "#wcb-invoices")


class ConnectView(AgencyPageMixin, FormView):
    template_name = "wagtail_client_billing/agency/connect.html"
    form_class = ConnectForm
    page_subtitle = gettext_lazy("Create client billing account")

    def get_form_kwargs(self) -> dict[str, Any]:
        return {**super().get_form_kwargs(), "direct": billing_settings().direct}

    def get_initial(self) -> dict[str, Any]:
        # "Create client billing account" on the Live panel asks for live mode.
        live = self.request.GET.get("mode") == Mode.LIVE
        return {"nonce": connections.new_idempotency_nonce(), "test_mode": not live}

    def form_valid(self, form: ConnectForm) -> HttpResponse:
        data, direct = form.cleaned_data, billing_settings().direct
        try:
            connection = connections.connect(
                mode=form.mode,
                privacy_policy_url=data["privacy_policy_url"],
                terms_of_service_url=data["terms_of_service_url"],
                user=self.request.user,
                direct=direct,
                country=data.get("country", ""),
                site_url=self.request.build_absolute_uri("/"),
                nonce=data["nonce"],
            )
        except stripe_api.StripeFailure as error:
            form.add_error(None, error.user_message)
            return self.form_invalid(form)
        if direct:
            messages.success(self.request, _("Stripe accepted the keys: billing can start."))
            return redirect(INDEX_URL)
        try:
            return redirect(onboarding_link(self.request, connection))
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


class UnlinkView(AgencyPageMixin, TemplateView):
    template_name = "wagtail_client_billing/agency/unlink.html"
    page_subtitle = gettext_lazy("Unlink account")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        connection = connection_or_404(self.kwargs["mode"])
        pending = connections.pending_requests(connection).count()
        return super().get_context_data(connection=connection, pending=pending, **kwargs)

    def post(self, request: HttpRequest, mode: str) -> HttpResponse:
        connection, user = connection_or_404(mode), request.user
        reason = "unlinked by an agency admin"
        if withdraw := "withdraw" in request.POST:
            outcome = billing.withdraw_and_unlink(connection, user=user, reason=reason)
        else:
            pending = connections.unlink_unless_pending(connection, user=user, reason=reason)
            outcome = billing.UnlinkOutcome(unlinked=not pending, pending=pending)
        messages.add_message(request, *unlink_report(outcome, withdrew=withdraw))
        if outcome.unlinked:
            return redirect(INDEX_URL)
        return redirect("wagtail_client_billing_agency:unlink", mode)


def unlink_report(outcome: billing.UnlinkOutcome, *, withdrew: bool) -> tuple[int, str]:
    """The message (level, text) that says what Unlink did, or why it did not."""
    count, failed = outcome.pending, len(outcome.failures)
    reasons = "; ".join(f"{request.email}: {reason}" for request, reason in outcome.failures)
    withdrawn = ngettext(
        "%(count)s pending billing request was withdrawn",
        "%(count)s pending billing requests were withdrawn",
        outcome.withdrawn,
    )
    paid = ngettext(
        "%(count)s had already been paid and is now marked Paid",
        "%(count)s had already been paid and are now marked Paid",
        outcome.paid,
    )
    done = [
        text % {"count": n}
        for n, text in [(outcome.withdrawn, withdrawn), (outcome.paid, paid)]
        if n
    ]
    if not outcome.unlinked and failed:  # Stripe failed for some: nothing unlinked
        not_done = ngettext("%(count)s could not be", "%(count)s could not be", failed)
        return messages.ERROR, _(
            "The account was not unlinked: %(done)s (%(reasons)s). "
            "Try again to withdraw the rest and unlink."
        ) % {"done": ", ".join([*done, not_done % {"count": failed}]), "reasons": reasons}
    if not outcome.unlinked and withdrew:  # requests kept arriving while withdrawing
        return messages.ERROR, ngettext(
            "The account was not unlinked: new billing requests kept arriving on it "
            "(%(count)s pending now). Try again.",
            "The account was not unlinked: new billing requests kept arriving on it "
            "(%(count)s pending now). Try again.",
            count,
        ) % {"count": count}
    if not outcome.unlinked:  # a plain unlink, refused while requests are pending
        return messages.ERROR, ngettext(
            "The account was not unlinked: %(count)s billing request is still pending on it. "
            "Withdraw it first.",
            "The account was not unlinked: %(count)s billing requests are still pending on "
            "it. Withdraw them first.",
            count,
        ) % {"count": count}
    if failed:  # unlinked, but requests sent meanwhile could not be withdrawn
        return messages.WARNING, ngettext(
            "The client billing account was unlinked, but %(count)s billing request sent "
            "meanwhile could not be withdrawn (%(reasons)s): its link now says it no longer "
            "works, and a payment Stripe still reports for it is recorded.",
            "The client billing account was unlinked, but %(count)s billing requests sent "
            "meanwhile could not be withdrawn (%(reasons)s): their links now say they no "
            "longer work, and a payment Stripe still reports for them is recorded.",
            failed,
        ) % {"count": failed, "reasons": reasons}
    if done:
        return messages.SUCCESS, _("%(done)s; the client billing account was unlinked.") % {
            "done": "; ".join(done)
        }
    return messages.SUCCESS, _("The client billing account was unlinked.")


index = IndexView.as_view()
invoice_settings = InvoiceSettingsView.as_view()
connect = outside_transactions(ConnectView.as_view())
# Withdrawing calls Stripe once per request.
unlink = outside_transactions(UnlinkView.as_view())


# Stripe sends the browser to the refresh URL with a GET when a link has expired.
@button(("GET", "HEAD", "POST"))
def onboard(request: HttpRequest, mode: str) -> str:
    """Continue onboarding (POST from the page) and Stripe's refresh URL (GET)."""
    return onboarding_link(request, connection_or_404(mode))


@button(("GET", "HEAD"))
def return_view(request: HttpRequest, mode: str) -> None:
    """Stripe's return URL: re-read the account and say where onboarding stands."""
    connection = connections.refresh(connection_or_404(mode), user=request.user)
    if connection.status == StripeConnection.Status.READY:
        messages.success(request, _("Your client billing account is ready to charge."))
    else:
        messages.warning(request, _("Stripe still needs some information before billing."))


@button()
def refresh_status(request: HttpRequest, mode: str) -> None:
    """Ask Stripe again now (the webhook does this on its own)."""
    connections.refresh(connection_or_404(mode), user=request.user)
    messages.success(request, _("Status updated from Stripe."))


@button(stripe=False)
def switch_mode(request: HttpRequest) -> None:
    """Make test or live the mode new billing requests use."""
    mode = request.POST.get("mode", "")
    if mode not in Mode.values:
        messages.error(request, _("Unknown mode."))
        return
    connections.switch_mode(mode, user=request.user)
    live = mode == Mode.LIVE
    messages.success(
        request, _("Live mode is now active.") if live else _("Test mode is now active.")
    )


@button()
def register_webhook(request: HttpRequest, mode: str) -> None:
    """Register this install's webhook endpoint at Stripe and show the secret to set."""
    if mode not in Mode.values:
        raise Http404
    url = webhook_url(request)
    if mode == Mode.LIVE and not url.startswith("https://"):
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
        return
    endpoint = endpoints.register_webhook_endpoint(mode, url, connect=not billing_settings().direct)
    if endpoint.existing and endpoint.added:
        added = _(
            "Stripe already sends events to %(url)s (endpoint %(id)s): it now also sends "
            "%(events)s, which this version handles. Its signing secret is unchanged."
        )
        messages.success(
            request, added % {"url": url, "id": endpoint.id, "events": ", ".join(endpoint.added)}
        )
        return
    if endpoint.existing:
        already = _(
            "Stripe already sends events to %(url)s (endpoint %(id)s): nothing was changed. "
            "Its signing secret is on the endpoint's page in the Stripe Dashboard; a second "
            "endpoint would send every event twice, once with a secret this site does not know."
        )
        messages.info(request, already % {"url": url, "id": endpoint.id})
        return
    setting = f"STRIPE_{mode.upper()}_WEBHOOK_SECRET"
    messages.success(
        request,
        _(
            "Stripe will send events to %(url)s. Put this signing secret in "
            "WAGTAIL_CLIENT_BILLING['%(setting)s'] (or the environment) and restart: "
            "%(secret)s"
        )
        % {"url": url, "setting": setting, "secret": endpoint.secret},
    )


@button(stripe=False)
def notifications(request: HttpRequest) -> None:
    """Save who hears when money arrives (errors come back as messages on the page)."""
    settings_row = AgencyBillingSettings.load(request_or_site=request)
    form = NotificationSettingsForm(request.POST, instance=settings_row)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, str(error))
        return
    # Only the form's fields: a mode switched meanwhile is not written back.
    form.save(commit=False).save(update_fields=list(form.fields))
    messages.success(request, _("Notification settings saved."))


@button(stripe=False)
def send_notification_again(request: HttpRequest, pk: int) -> None:
    """Queue a notification that did not go out once more."""
    if send_again(pk):
        messages.success(request, _("The notification is on its way again."))
    else:
        messages.warning(
            request, _("This notification was already sent, or is being sent right now.")
        )
