"""The per-site "Client billing" area: Wagtail's generic views, plus extra URLs."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import path
from django.utils import translation
from django.utils.decorators import method_decorator
from django.utils.functional import cached_property
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.generic import TemplateView
from wagtail.admin.ui.tables import DateColumn
from wagtail.admin.views import generic
from wagtail.admin.views.generic.base import (
    BaseObjectMixin,
    BaseOperationView,
    WagtailAdminTemplateMixin,
)
from wagtail.admin.viewsets.model import ModelViewSet
from wagtail.admin.widgets.button import HeaderButton
from wagtail.models import Site

from .. import billing, connections, stripe_api
from ..compat import PolicyViewSetMixin
from ..forms import BillingRequestForm, country_currency
from ..icons import ICON
from ..mail.messages import language_of_site
from ..models import BillingRequest, WebhookEvent
from ..models.agency import Mode
from ..permissions import billing_request_policy, forbidden, is_agency_admin
from . import overview, refunds, subscriptions
from .email_settings import EmailSettingsView, SendTestEmailView
from .listing import (
    URL_NAME,
    BillingRequestFilterSet,
    HumanDateColumn,
    IndexView,
    choose_site,
    requests_for,
    selected_site,
    status_tone,
    url,
)

# The views that call Stripe write before and after the call in transactions of their
# own: under ATOMIC_REQUESTS the whole request would be one transaction held across it.
outside_atomic_requests = method_decorator(transaction.non_atomic_requests, name="dispatch")


class RequestViewMixin:
    """Views on one request: only within the user's sites (404 otherwise)."""

    request: HttpRequest
    kwargs: dict[str, Any]

    def get_object(self, queryset: QuerySet | None = None) -> BillingRequest:
        requests = requests_for(self.request.user).select_related("site")
        return get_object_or_404(requests, pk=self.kwargs["pk"])

    def get_breadcrumbs_items(self) -> list[dict[str, Any]]:
        index = {"url": url("index"), "label": _("Client billing")}
        return [*self.breadcrumbs_items, index]  # type: ignore[attr-defined]


@outside_atomic_requests
class CreateView(RequestViewMixin, generic.CreateView):
    template_name = "wagtail_client_billing/requests/create.html"
    page_title = gettext_lazy("Add billing request")
    error_message = None  # the form shows its errors; no banner above it
    produced_error_message = None

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        site = selected_site(request)
        if site is None:
            return forbidden(request, "wagtail_client_billing/requests/forbidden.html")
        self.site: Site = site
        self.page_subtitle = site.site_name or site.hostname
        return super().dispatch(request, *args, **kwargs)

    def get_form_kwargs(self) -> dict[str, Any]:
        kwargs = super().get_form_kwargs()
        kwargs.pop("instance", None)  # a plain form: the domain makes the request
        kwargs["require_https"] = connections.active_mode() == Mode.LIVE
        kwargs["currencies_first"] = [
            c for c in [self.account_currency, *self.used_currencies] if c
        ]
        return kwargs

    @cached_property
    def account_currency(self) -> str:
        """The linked account's country's currency: the form's default."""
        connection = connections.linked_connection()
        return country_currency(connection.country) if connection else ""

    @cached_property
    def used_currencies(self) -> list[str]:
        """The currencies billed in, this site's first, then the agency's; most used first."""
        requests = BillingRequest.objects.exclude(status=BillingRequest.CREATING)
        used = requests.values("currency").annotate(n=Count("pk")).order_by("-n", "currency")
        here = [row["currency"] for row in used.filter(site=self.site)[:5]]
        return list(dict.fromkeys([*here, *(row["currency"] for row in used[:5])]))

    def get_initial(self) -> dict[str, Any]:
        # The client reads it (on Checkout, in the email): the site's language, not ours.
        with translation.override(language_of_site(self.site)):
            description = _("Payment to %(site)s") % {"site": self.page_subtitle}
        home = self.site.root_url.rstrip("/") + "/"
        return {
            "nonce": connections.new_idempotency_nonce(),
            "currency": self.account_currency,
            "billing_type": BillingRequest.BillingType.ONE_TIME,
            "description": description,
            "success_url": home,
            "cancel_url": home,
        }

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        try:
            billing.ready_connection()
            not_ready = ""
        except billing.NotReadyToCharge as error:
            not_ready = error.user_message
        return {
            **super().get_context_data(**kwargs),
            "not_ready": not_ready,
            "billed_site": self.site,
            "agency_admin": is_agency_admin(self.request.user),
            "cancel_url": url("index", site=self.site),
            "twin": getattr(self, "twin", None),
        }

    def save_instance(self) -> BillingRequest:
        data = self.form.cleaned_data
        typed = ("email", "currency", "description", "success_url", "cancel_url", "billing_type")
        details = billing.RequestDetails(amount=data["amount_minor"], **{n: data[n] for n in typed})
        return billing.create_request(
            site=self.site,
            details=details,
            nonce=data["nonce"],
            user=self.request.user,
            allow_twin=data["send_anyway"],
        )

    def form_valid(self, form: BillingRequestForm) -> HttpResponse:
        # Not Wagtail's form_valid: it runs save_instance() in transaction.atomic(),
        # and create_request calls Stripe, which never happens inside a transaction.
        self.form = form
        try:
            self.object = self.save_instance()
        except billing.AlreadySubmitted as duplicate:
            messages.info(self.request, duplicate.user_message)
            return redirect(url("inspect", duplicate.billing_request.pk))
        except billing.NotReadyToCharge:
            # Said once, by the note above the form (get_context_data), not again in red.
            return self.form_invalid(form)
        except (billing.BillingError, stripe_api.StripeFailure) as error:
            form.add_error(None, error.user_message)
            if isinstance(error, billing.PendingTwin):  # ask before billing twice
                form.fields["send_anyway"].widget = forms.CheckboxInput()
                form.fields["send_anyway"].label = _("Send another one")
                self.twin = error.billing_request
            return self.form_invalid(form)
        sent = _("Billing request sent to %(email)s.") % {"email": self.object.email}
        messages.success(self.request, sent)
        return redirect(url("index", site=self.site))


def stripe_events_for(billing_request: BillingRequest) -> QuerySet:
    if not billing_request.checkout_session_id:
        return WebhookEvent.objects.none()
    match = Q(payload__data__object__id=billing_request.checkout_session_id)
    if billing_request.subscription_id:
        match |= Q(payload__data__object__id=billing_request.subscription_id)
    if billing_request.payment_intent_id:  # its refunds, charges and disputes
        match |= Q(payload__data__object__payment_intent=billing_request.payment_intent_id)
    invoices = list(billing_request.invoices.values_list("stripe_id", flat=True))
    if invoices:
        match |= Q(payload__data__object__id__in=invoices)
    return WebhookEvent.objects.filter(match).order_by("received_at", "pk")


class InspectView(RequestViewMixin, generic.InspectView):
    template_name = "wagtail_client_billing/requests/inspect.html"
    page_title = gettext_lazy("Billing request")

    @cached_property
    def header_buttons(self) -> list:
        return [HeaderButton(_("History"), url=url("history", self.object.pk), icon_name="history")]

    header_more_buttons: list = []  # Resend, Delete and Renew are on the page, where they apply

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {
            **super().get_context_data(**kwargs),
            "stripe_events": stripe_events_for(self.object),
            "status_tone": status_tone(self.object),
            "renewal": billing.renewal_of(self.object),
            "account_linked": connections.account_is_linked(self.object),
            "can_see_events": is_agency_admin(self.request.user),
            "refunds": self.object.refunds.select_related("created_by"),
            "refundable": self._refundable(),
            "can_cancel": is_agency_admin(self.request.user)
            and subscriptions.cancelable(self.object),
        }

    def _refundable(self) -> bool:
        """Whether the Refund button applies: an agency admin, money left, the account linked."""
        if self.object.status != BillingRequest.Status.PAID:
            return False
        if not is_agency_admin(self.request.user):
            return False
        payment = billing.latest_payment(self.object)
        remains = bool(payment and payment.remaining > 0)
        return remains and connections.account_is_linked(self.object)


class HistoryView(RequestViewMixin, generic.HistoryView):
    @cached_property
    def columns(self) -> list:
        # Wagtail's date column says "Il y a 0 minute" in French; ours, "À l'instant".
        return [
            HumanDateColumn(column.name, label=column.label, width=column.width)
            if type(column) is DateColumn
            else column
            for column in super().columns
        ]

    @cached_property
    def header_buttons(self) -> list:
        details = url("inspect", self.object.pk)
        return [HeaderButton(_("Details"), url=details, icon_name="info-circle")]


@outside_atomic_requests
class DeleteView(RequestViewMixin, generic.DeleteView):
    template_name = "wagtail_client_billing/requests/delete.html"
    page_title = gettext_lazy("Delete billing request")

    def get_success_url(self) -> str:
        return url("index", site=self.object.site)

    def form_valid(self, form: forms.Form) -> HttpResponse:
        # Not Wagtail's "deleted" in every case: Stripe may fail, or report it paid.
        try:
            result = billing.delete_request(self.object, user=self.request.user)
        except (billing.BillingError, stripe_api.StripeFailure) as error:
            messages.error(self.request, error.user_message)
        else:
            if result.status == BillingRequest.Status.PAID:
                paid = _("The client had already paid this request: it is now marked Paid.")
                messages.warning(self.request, paid)
            else:
                deleted = _("The billing request was deleted; its link no longer works.")
                messages.success(self.request, deleted)
        return redirect(self.get_success_url())


class ResendView(RequestViewMixin, BaseOperationView):
    model = BillingRequest

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            billing.resend(self.object, user=request.user)
        except billing.BillingError as error:
            messages.error(request, error.user_message)
        else:
            message = _("The email to %(email)s is queued.") % {"email": self.object.email}
            messages.success(request, message)
        # The listing it was pressed in, filters and all.
        return redirect(self.next_url or url("index", site=self.object.site))

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return redirect(url("inspect", self.object.pk))


@outside_atomic_requests
class RenewView(RequestViewMixin, BaseObjectMixin, WagtailAdminTemplateMixin, TemplateView):
    """GET: what will be sent; POST: a new Pending request with the same details."""

    model = BillingRequest
    template_name = "wagtail_client_billing/requests/renew.html"
    page_title = gettext_lazy("Renew billing request")
    header_icon = ICON

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if renewal := billing.renewal_of(self.object):
            messages.info(request, billing.AlreadyRenewed(renewal).user_message)
            return redirect(url("inspect", renewal.pk))
        return super().get(request, *args, **kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {
            **super().get_context_data(**kwargs),
            "nonce": connections.new_idempotency_nonce(),
            "lifetime_hours": round(billing.session_lifetime() / 3600),
        }

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # An opaque key; PostgreSQL cannot even look up one with a NUL in it.
        nonce = (request.POST.get("nonce") or "").replace("\x00", "")[:64] or None
        try:
            renewed = billing.renew_request(self.object, nonce=nonce, user=request.user)
        except billing.AlreadySubmitted as duplicate:
            messages.info(request, duplicate.user_message)
            return redirect(url("inspect", duplicate.billing_request.pk))
        except (billing.BillingError, stripe_api.StripeFailure) as error:
            messages.error(request, error.user_message)
            return redirect(url("inspect", self.object.pk))
        message = _("A new billing request was sent to %(email)s.") % {"email": renewed.email}
        messages.success(request, message)
        return redirect(url("inspect", renewed.pk))


class BillingRequestViewSet(PolicyViewSetMixin, ModelViewSet):
    model = BillingRequest
    policy = billing_request_policy
    icon = ICON
    menu_label = gettext_lazy("Client billing")
    menu_order = 250
    add_to_admin_menu = True
    name = URL_NAME
    url_prefix = "client-billing/requests"
    index_view_class = IndexView
    add_view_class = CreateView
    inspect_view_class = InspectView
    history_view_class = HistoryView
    delete_view_class = DeleteView
    inspect_view_enabled = True
    copy_view_enabled = False
    # Nothing in Wagtail shows what refers to a site or a user: indexing a request's links
    # to them cost 5 statements per save (measured: create_request 8 -> 3).
    add_to_reference_index = False
    filterset_class = BillingRequestFilterSet
    search_fields = ["email"]
    list_per_page = 25  # the viewset passes its own to the index view

    def get_form_class(self, for_update: bool = False) -> type[forms.Form]:
        return BillingRequestForm

    def get_permissions_to_register(self) -> QuerySet:
        # Only "Can add billing request", the one billing permission: other boxes would mislead.
        return super().get_permissions_to_register().filter(codename="add_billingrequest")

    def get_common_view_kwargs(self, **kwargs: Any) -> dict[str, Any]:
        # Requests are never edited, so no edit (nor usage) URL.
        return super().get_common_view_kwargs(edit_url_name=None, usage_url_name=None, **kwargs)

    def get_urlpatterns(self) -> list:
        return [
            *(p for p in super().get_urlpatterns() if p.name not in ("edit", "usage")),
            path("sites/", choose_site, name="choose_site"),
            path("overview/", overview.overview, name="overview"),
            path("overview/results/", overview.overview_results, name="overview_results"),
            path("resend/<int:pk>/", ResendView.as_view(), name="resend"),
            path("renew/<int:pk>/", RenewView.as_view(), name="renew"),
            path("refund/<int:pk>/", refunds.RefundView.as_view(), name="refund"),
            path(
                "cancel-subscription/<int:pk>/",
                subscriptions.CancelSubscriptionView.as_view(),
                name="cancel_subscription",
            ),
            path("email-settings/", EmailSettingsView.as_view(), name="email_settings"),
            path("email-settings/test/", SendTestEmailView.as_view(), name="email_settings_test"),
        ]


billing_request_viewset = BillingRequestViewSet()
