"""The per-site "Client billing" area: list, send, inspect, resend and delete requests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import django_filters
from django import forms
from django.contrib import messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.formats import date_format
from django.utils.functional import cached_property
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.timezone import localtime
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.generic import FormView, View
from wagtail.admin.filters import DateRangePickerWidget, WagtailFilterSet
from wagtail.admin.ui.tables import (
    ButtonsColumnMixin,
    Column,
    DateColumn,
    StatusTagColumn,
    TitleColumn,
)
from wagtail.admin.views import generic
from wagtail.admin.views.generic.base import WagtailAdminTemplateMixin
from wagtail.admin.viewsets.model import ModelViewSet
from wagtail.admin.widgets.button import Button
from wagtail.models import Site

from .. import agency, billing, stripe_api
from ..compat import PolicyViewSetMixin
from ..forms import BillingRequestForm, currency_choices
from ..mail.queue import queue_billing_email
from ..models import BillingRequest
from ..money import format_money
from ..permissions import BillingRequestPermissionPolicy, is_agency_admin

Status = BillingRequest.Status
billing_request_policy = BillingRequestPermissionPolicy(BillingRequest)
URL_NAME = "wagtail_client_billing_requests"
SESSION_SITE_KEY = "wagtail_client_billing_site"


def billable_sites(user: Any) -> QuerySet:
    """The sites ``user`` may bill for, by name."""
    return billing_request_policy.sites_user_has_any_permission_for(user, ["add"]).order_by(
        "site_name", "hostname"
    )


def selected_site(
    request: HttpRequest, sites: QuerySet | None = None, refusal: str = ""
) -> Site | None:
    """The site chosen with the switcher (``?site=``) among ``sites`` (by default those
    the user may bill for), remembered in the session; 404 with ``refusal`` for another.

    The billing area and the email settings share the remembered choice: a remembered
    site that is not among ``sites`` falls back to one that is.
    """
    sites = billable_sites(request.user) if sites is None else sites
    wanted = request.GET.get("site") or request.session.get(SESSION_SITE_KEY)
    site = None
    if wanted and str(wanted).isdigit():
        site = sites.filter(pk=wanted).first()
        if site is None and request.GET.get("site"):
            raise Http404(refusal or _("You cannot bill for this site."))
    if site is None:
        current = Site.find_for_request(request)
        site = sites.filter(pk=current.pk).first() if current else None
    site = site or sites.first()
    if site is not None:
        request.session[SESSION_SITE_KEY] = site.pk
    return site


def requests_for(user: Any) -> QuerySet:
    """Every request ``user`` may see (their sites only); never one still being created."""
    return billing_request_policy.instances_user_has_any_permission_for(user, ["view"]).exclude(
        status=BillingRequest.CREATING
    )


def url(name: str, *args: Any, site: Site | None = None) -> str:
    target = reverse(f"{URL_NAME}:{name}", args=args)
    return f"{target}?site={site.pk}" if site is not None else target


class BillingRequestFilterSet(WagtailFilterSet):
    # distinct=False: these filters join nothing, and django-filter's default SELECT
    # DISTINCT over every column would make the database sort every matching row
    # instead of reading the newest page from an index.
    status = django_filters.MultipleChoiceFilter(
        label=gettext_lazy("Status"), choices=Status.choices, distinct=False
    )
    billing_type = django_filters.MultipleChoiceFilter(
        label=gettext_lazy("Billing type"),
        choices=BillingRequest.BillingType.choices,
        distinct=False,
    )
    currency = django_filters.ChoiceFilter(label=gettext_lazy("Currency"), choices=())
    created_at = django_filters.DateFromToRangeFilter(
        label=gettext_lazy("Created"), widget=DateRangePickerWidget
    )

    class Meta:
        model = BillingRequest
        fields = ["status", "billing_type", "currency", "created_at"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.filters["currency"].extra["choices"] = currency_choices()


class AmountColumn(Column):
    """The amount with its currency, formatted for the reader's language."""

    def get_value(self, instance: BillingRequest) -> str:
        return format_money(instance.amount, instance.currency)


class StatusColumn(StatusTagColumn):
    def get_value(self, instance: BillingRequest) -> str:
        label = instance.get_status_display()
        if instance.status == Status.PENDING and instance.payment_state:
            label = f"{label} · {instance.get_payment_state_display()}"
        if instance.subscription_status and instance.status == Status.PAID:
            label = f"{label} · {instance.subscription_status}"
        if instance.client_asked_at and instance.status in (Status.EXPIRED, Status.DELETED):
            asked = _("client asked for a new link")
            label = f"{label} · {asked}"
        return label


class OutcomeDateColumn(DateColumn):
    """When it expires (pending), was paid, expired or was deleted."""

    cell_template_name = "wagtail_client_billing/tables/outcome_date_cell.html"

    def get_cell_context_data(self, instance: BillingRequest, parent_context: Any) -> dict:
        from django.utils import timezone

        return {**super().get_cell_context_data(instance, parent_context), "now": timezone.now()}

    def get_value(self, instance: BillingRequest) -> Any:
        return {
            Status.PAID: instance.paid_at,
            Status.EXPIRED: instance.expired_at or instance.expires_at,
            Status.DELETED: instance.deleted_at,
        }.get(instance.status, instance.expires_at)


class EmailStateColumn(Column):
    def get_value(self, instance: BillingRequest) -> str:
        return instance.get_email_status_display()


class MenuButton(Button):
    """A ``<button>`` in a row's menu, driven by one of Wagtail's Stimulus controllers.

    Always a ``<button>``: Wagtail 7.4's own button template always renders a link.
    """

    template_name = "wagtail_client_billing/includes/menu_button.html"

    @classmethod
    def copy(cls, label: str, *, text: str, **kwargs: Any) -> MenuButton:
        """Copies ``text`` to the clipboard (``w-clipboard``)."""
        attrs = {
            "type": "button",
            "data-controller": "w-clipboard",
            "data-action": "w-clipboard#copy",
            "data-w-clipboard-value-param": text,
            "data-wcb-copied-label": _("Copied"),
        }
        return cls(label, attrs=attrs, **kwargs)

    @classmethod
    def post(cls, label: str, *, action: str, **kwargs: Any) -> MenuButton:
        """POSTs to ``action`` with the CSRF token and ``next`` (``w-action``)."""
        attrs = {
            "type": "button",
            "data-controller": "w-action",
            "data-action": "w-action#post",
            "data-w-action-url-value": action,
        }
        return cls(label, attrs=attrs, **kwargs)


class RequestTitleColumn(ButtonsColumnMixin, TitleColumn):
    """The email, linking to the request, with the row's menu (the view's list buttons)."""

    def __init__(self, name: str, *, get_buttons: Callable[[Any], list], **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self._get_buttons = get_buttons

    def get_buttons(self, instance: BillingRequest, parent_context: Any) -> list:
        return self._get_buttons(instance)


def request_columns(view: IndexView, *, with_site: bool = False) -> list[Column]:
    """The listing's columns of a billing request, with a Site column for the overview."""
    columns: list[Column] = [
        RequestTitleColumn(
            "email",
            get_buttons=view.get_list_buttons,
            label=gettext_lazy("Email"),
            get_url=lambda instance: reverse(f"{URL_NAME}:inspect", args=[instance.pk]),
            sort_key="email",
        ),
        Column("description", label=gettext_lazy("Description")),
        AmountColumn("amount", label=gettext_lazy("Amount"), sort_key="amount"),
        Column(
            "billing_type", label=gettext_lazy("Billing type"), accessor="get_billing_type_display"
        ),
        StatusColumn(
            "status",
            label=gettext_lazy("Status"),
            primary=lambda instance: instance.status == Status.PAID,
            sort_key="status",
        ),
        DateColumn("created_at", label=gettext_lazy("Created"), sort_key="created_at"),
        OutcomeDateColumn("outcome", label=gettext_lazy("Expires or paid at")),
    ]
    if with_site:
        columns.insert(1, Column("site", label=gettext_lazy("Site"), sort_key="site__site_name"))
    return columns


class IndexView(generic.IndexView):
    """One site's billing requests, newest first; Deleted hidden unless asked for."""

    template_name = "wagtail_client_billing/requests/index.html"
    results_template_name = "wagtail_client_billing/requests/index_results.html"
    page_title = gettext_lazy("Client billing")
    # The product's words, not Wagtail's generic "Add %(model_name)s" (in French
    # "Ajouter un(e) demande de facturation").
    add_item_label = gettext_lazy("Add billing request")
    default_ordering = "-created_at"
    paginate_by = 25
    any_permission_required = ["add", "view"]

    @cached_property
    def site(self) -> Site | None:
        return selected_site(self.request)

    def get_base_queryset(self) -> QuerySet:
        if self.site is None:
            return BillingRequest.objects.none()
        return (
            requests_for(self.request.user)
            .filter(site=self.site)
            .select_related("site")
            .prefetch_related("emails")
        )

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        queryset = super().filter_queryset(queryset)
        if not self.request.GET.getlist("status"):
            queryset = queryset.exclude(status=Status.DELETED)
        return queryset

    @cached_property
    def columns(self) -> list[Column]:
        return [
            *request_columns(self),
            EmailStateColumn("email_status", label=gettext_lazy("Email")),
        ]

    def get_add_url(self) -> str | None:
        if self.site is not None:
            return url("add", site=self.site)
        return None

    @cached_property
    def header_buttons(self) -> list:
        from wagtail.admin.widgets.button import HeaderButton

        from .email_settings import may_edit_email_settings

        buttons = list(super().header_buttons)
        if self.site is not None and may_edit_email_settings(self.request.user, self.site):
            buttons.append(
                HeaderButton(
                    _("Email settings"), url=url("email_settings", site=self.site),
                    icon_name="mail", priority=20,
                )
            )  # fmt: skip
        return buttons

    @cached_property
    def linked_accounts(self) -> set[tuple[str, str]]:
        """Read once per listing: a request of an account that is gone offers no Resend."""
        return agency.linked_accounts()

    def get_list_more_buttons(self, instance: BillingRequest) -> list:
        from wagtail.admin.ui.menus import MenuItem

        buttons = [
            MenuItem(
                _("Details"),
                url=reverse(f"{URL_NAME}:inspect", args=[instance.pk]),
                icon_name="info-circle",
                priority=10,
            ),
            MenuButton.copy(
                _("Copy payment link"), text=instance.get_payment_url(), icon_name="link",
                priority=15,
            ),
        ]  # fmt: skip
        if instance.status == Status.PENDING:
            if agency.account_is_linked(instance, self.linked_accounts):
                buttons.append(
                    MenuButton.post(
                        _("Resend email"),
                        action=reverse(f"{URL_NAME}:resend", args=[instance.pk]),
                        icon_name="mail", priority=20,
                    )
                )  # fmt: skip
            buttons += [
                MenuItem(
                    _("Delete"), url=reverse(f"{URL_NAME}:delete", args=[instance.pk]),
                    icon_name="bin", priority=30,
                ),
            ]  # fmt: skip
        return buttons

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["sites"] = billable_sites(self.request.user)
        context["current_site"] = self.site
        context["switch_url"] = reverse(f"{URL_NAME}:index")
        context["agency_admin"] = is_agency_admin(self.request.user)
        return context


def stripe_events_for(billing_request: BillingRequest) -> QuerySet:
    """The Stripe events about this request's Checkout Session or subscription."""
    from django.db.models import Q

    from ..models import WebhookEvent

    match = Q(payload__data__object__id=billing_request.checkout_session_id)
    if billing_request.subscription_id:
        match |= Q(payload__data__object__id=billing_request.subscription_id)
    if not billing_request.checkout_session_id:
        return WebhookEvent.objects.none()
    return WebhookEvent.objects.filter(match).order_by("received_at", "pk")


class RequestViewMixin(WagtailAdminTemplateMixin):
    """Views on one request: only within the user's sites (404 otherwise)."""

    header_icon = "credit-card"

    def get_billing_request(self) -> BillingRequest:
        return get_object_or_404(
            requests_for(self.request.user).select_related("site"), pk=self.kwargs["pk"]
        )

    def get_breadcrumbs_items(self) -> list[dict[str, Any]]:
        return [
            *super().get_breadcrumbs_items(),
            {"url": reverse(f"{URL_NAME}:index"), "label": _("Client billing")},
        ]


# Create and delete write before and after their Stripe call, in transactions of their
# own: under ATOMIC_REQUESTS the whole request would be one transaction held across it.
@method_decorator(transaction.non_atomic_requests, name="dispatch")
class CreateView(RequestViewMixin, FormView):
    """ "+ Add billing request" for the selected site."""

    template_name = "wagtail_client_billing/requests/create.html"
    form_class = BillingRequestForm
    page_title = gettext_lazy("Add billing request")

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        self.site = selected_site(request)
        if self.site is None:
            return TemplateResponse(
                request, "wagtail_client_billing/forbidden.html",
                {"page_title": _("Permission denied"), "header_title": _("Permission denied")},
                status=403,
            )  # fmt: skip
        return super().dispatch(request, *args, **kwargs)

    def get_page_subtitle(self) -> str:
        return self.site.site_name or self.site.hostname

    def get_form_kwargs(self) -> dict[str, Any]:
        kwargs = super().get_form_kwargs()
        kwargs["require_https"] = agency.active_mode() == "live"
        return kwargs

    def get_initial(self) -> dict[str, Any]:
        from django.utils import translation

        from ..mail.messages import language_of_site

        # The client reads the description (on Checkout, in the email): the site's
        # language, not the editor's.
        with translation.override(language_of_site(self.site)):
            description = _("Payment to %(site)s") % {
                "site": self.site.site_name or self.site.hostname
            }
        return {
            "nonce": agency.new_idempotency_nonce(),
            "billing_type": BillingRequest.BillingType.ONE_TIME,
            "description": description,
            "success_url": self.site.root_url.rstrip("/") + "/",
            "cancel_url": self.site.root_url.rstrip("/") + "/",
        }

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["site"] = self.site
        context["not_ready"] = self.not_ready_message()
        context["agency_admin"] = is_agency_admin(self.request.user)
        context["cancel_url"] = url("index", site=self.site)
        context["twin"] = getattr(self, "twin", None)
        return context

    def not_ready_message(self) -> str:
        try:
            billing.ready_connection()
        except billing.NotReadyToCharge as error:
            return error.user_message
        return ""

    def form_valid(self, form: BillingRequestForm) -> HttpResponse:
        data = form.cleaned_data
        details = billing.RequestDetails(
            email=data["email"],
            currency=data["currency"],
            amount=data["amount_minor"],
            description=data["description"],
            success_url=data["success_url"],
            cancel_url=data["cancel_url"],
            billing_type=data["billing_type"],
        )
        twin = None
        already_sent = BillingRequest.objects.filter(form_nonce=data["nonce"]).exists()
        if not data.get("send_anyway") and not already_sent:  # a double click: see below
            twin = billing.pending_twin(self.site, details)
        if twin is not None:
            form.add_error(
                None,
                _(
                    "The same billing request to %(email)s is already pending (sent %(when)s). "
                    "To email it again, use Resend email on it. To bill the client a second "
                    "time, tick “Send another one” and send again."
                )
                % {
                    "email": twin.email,
                    "when": date_format(localtime(twin.created_at), "SHORT_DATETIME_FORMAT"),
                },
            )
            form.fields["send_anyway"].widget = forms.CheckboxInput()
            form.fields["send_anyway"].label = _("Send another one")
            self.twin = twin
            return self.form_invalid(form)
        try:
            created = billing.create_request(
                site=self.site, details=details, nonce=data["nonce"], user=self.request.user
            )
        except billing.AlreadySubmitted as duplicate:
            messages.info(self.request, duplicate.user_message)
            return redirect(url("inspect", duplicate.billing_request.pk))
        except (billing.BillingError, stripe_api.StripeFailure) as error:
            form.add_error(None, error.user_message)
            return self.form_invalid(form)
        messages.success(
            self.request,
            _("Billing request sent to %(email)s.") % {"email": created.email},
        )
        return redirect(url("index", site=self.site))


class InspectView(RequestViewMixin, View):
    """A request's details, its payment link and its history."""

    template_name = "wagtail_client_billing/requests/inspect.html"

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        from wagtail.models import ModelLogEntry

        billing_request = self.get_billing_request()
        self.page_title = _("Billing request")
        self.page_subtitle = str(billing_request)
        history = ModelLogEntry.objects.for_instance(billing_request).select_related("user")
        return TemplateResponse(
            request,
            self.template_name,
            {
                **self.get_context_data(),
                "billing_request": billing_request,
                "payment_url": billing_request.get_payment_url(),
                "history": history,
                "stripe_events": stripe_events_for(billing_request),
                "renewal": billing.renewal_of(billing_request),
                "account_linked": agency.account_is_linked(billing_request),
                "can_see_events": is_agency_admin(request.user),
                "index_url": url("index", site=billing_request.site),
            },
        )

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {"view": self, **super().get_context_data(**kwargs)}


ACCOUNT_GONE_MESSAGE = gettext_lazy(
    "This billing request's Stripe account was unlinked, so its payment link no longer "
    "works: the email was not sent again."
)


class ResendView(RequestViewMixin, View):
    """Resend the email of a pending request (queued again)."""

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        billing_request = self.get_billing_request()
        if billing_request.status != Status.PENDING:
            messages.error(request, _("Only pending billing requests can be sent again."))
        elif not agency.account_is_linked(billing_request):
            messages.error(request, ACCOUNT_GONE_MESSAGE)
        else:
            queue_billing_email(billing_request)
            messages.success(
                request, _("The email to %(email)s is queued.") % {"email": billing_request.email}
            )
        back = request.POST.get("next", "")  # the listing it was pressed in, filters and all
        if url_has_allowed_host_and_scheme(
            back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            return redirect(back)
        return redirect(url("index", site=billing_request.site))

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        return redirect(url("inspect", pk))


@method_decorator(transaction.non_atomic_requests, name="dispatch")
class DeleteView(RequestViewMixin, View):
    """Delete asks for confirmation, expires the session at Stripe, then marks Deleted."""

    template_name = "wagtail_client_billing/requests/delete.html"

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        billing_request = self.get_billing_request()
        self.page_title = _("Delete billing request")
        return TemplateResponse(
            request,
            self.template_name,
            {
                **self.get_context_data(),
                "view": self,
                "billing_request": billing_request,
                "index_url": url("index", site=billing_request.site),
            },
        )

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        billing_request = self.get_billing_request()
        try:
            result = billing.delete_request(billing_request, user=request.user)
        except (billing.BillingError, stripe_api.StripeFailure) as error:
            messages.error(request, error.user_message)
            return redirect(url("index", site=billing_request.site))
        if result.status == Status.PAID:
            messages.warning(
                request,
                _("The client had already paid this request: it is now marked Paid."),
            )
        else:
            messages.success(
                request, _("The billing request was deleted; its link no longer works.")
            )
        return redirect(url("index", site=billing_request.site))


class BillingRequestViewSet(PolicyViewSetMixin, ModelViewSet):
    """The "Client billing" menu item and its URLs."""

    model = BillingRequest
    policy = billing_request_policy
    icon = "credit-card"
    menu_label = gettext_lazy("Client billing")
    menu_order = 250
    add_to_admin_menu = True
    name = URL_NAME
    url_prefix = "client-billing/requests"
    index_view_class = IndexView
    filterset_class = BillingRequestFilterSet
    search_fields = ["email"]
    exclude_form_fields: list[str] = []
    list_per_page = 25  # the viewset passes its own page size to the index view

    def get_permissions_to_register(self) -> QuerySet:
        """Only "Can add billing request" in the Groups editor's Object permissions: it
        is the one billing permission (ticked there, it covers every site). "Change",
        "delete" and "view" would be boxes that do nothing or mislead."""
        return super().get_permissions_to_register().filter(codename="add_billingrequest")

    def get_urlpatterns(self) -> list:
        from . import overview, renew
        from .email_settings import EmailSettingsView, SendTestEmailView

        return [
            path("", self.index_view, name="index"),
            path("results/", self.index_results_view, name="index_results"),
            path("new/", CreateView.as_view(), name="add"),
            path("overview/", overview.overview, name="overview"),
            path("overview/results/", overview.overview_results, name="overview_results"),
            path("<int:pk>/", InspectView.as_view(), name="inspect"),
            path("<int:pk>/resend/", ResendView.as_view(), name="resend"),
            path("<int:pk>/delete/", DeleteView.as_view(), name="delete"),
            path("<int:pk>/renew/", renew.renew, name="renew"),
            path("email-settings/", EmailSettingsView.as_view(), name="email_settings"),
            path("email-settings/test/", SendTestEmailView.as_view(), name="email_settings_test"),
        ]

    def get_common_view_kwargs(self, **kwargs: Any) -> dict[str, Any]:
        view_kwargs = super().get_common_view_kwargs(**kwargs)
        # No edit, history or usage URLs: requests are never edited.
        for name in ("edit_url_name", "history_url_name", "usage_url_name"):
            view_kwargs[name] = None
        view_kwargs["delete_url_name"] = None
        return view_kwargs


billing_request_viewset = BillingRequestViewSet()
