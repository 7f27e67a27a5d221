"""The billing requests' listing: the site switcher, filters, columns and row menus."""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponseBase
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.functional import cached_property
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.generic import TemplateView
from wagtail.admin.filters import DateRangePickerWidget, WagtailFilterSet
from wagtail.admin.paginator import WagtailPaginator
from wagtail.admin.ui.menus import MenuItem
from wagtail.admin.ui.tables import Column, DateColumn, StatusTagColumn, Table, TitleColumn
from wagtail.admin.views import generic
from wagtail.admin.views.generic.base import WagtailAdminTemplateMixin
from wagtail.admin.widgets.button import Button, HeaderButton
from wagtail.models import Site

from .. import connections
from ..forms import currency_choices
from ..icons import ICON
from ..models import BillingRequest
from ..money import format_money
from ..permissions import billing_request_policy, email_settings_policy
from ..templatetags.wagtail_client_billing_tags import site_address

Status = BillingRequest.Status
URL_NAME = "wagtail_client_billing_requests"
SESSION_SITE_KEY = "wagtail_client_billing_site"


def billable_sites(user: Any) -> QuerySet:
    sites = billing_request_policy.sites_user_has_any_permission_for(user, ["add"])
    return sites.order_by("site_name", "hostname")


def selected_site(
    request: HttpRequest, sites: QuerySet | None = None, refusal: str = "", *, ask: bool = False
) -> Site | None:
    """The site chosen with the switcher (``?site=``) among ``sites`` (default: billable),
    remembered in the session (shared with the email settings); 404 for another.

    With ``ask``, None when nothing was chosen yet and there are several: the caller shows
    the site chooser (the admin's own host is usually the agency's site, not a client's)."""
    sites = billable_sites(request.user) if sites is None else sites
    wanted = request.GET.get("site") or request.session.get(SESSION_SITE_KEY)
    site = None
    if wanted and str(wanted).isdigit():
        site = sites.filter(pk=wanted).first()
        if site is None and request.GET.get("site"):
            raise Http404(refusal or _("You cannot bill for this site."))
    if site is None and ask and sites.count() > 1:
        return None
    if site is None:
        current = Site.find_for_request(request)
        site = sites.filter(pk=current.pk).first() if current else None
    site = site or sites.first()
    if site is not None:
        request.session[SESSION_SITE_KEY] = site.pk
    return site


def requests_for(user: Any) -> QuerySet:
    """Every request ``user`` may see (their sites only); never one still being created."""
    requests = billing_request_policy.instances_user_has_any_permission_for(user, ["view"])
    return requests.exclude(status=BillingRequest.CREATING)


def url(name: str, *args: Any, site: Site | None = None) -> str:
    target = reverse(f"{URL_NAME}:{name}", args=args)
    return f"{target}?site={site.pk}" if site is not None else target


class BillingRequestFilterSet(WagtailFilterSet):
    # distinct=False: no joins here, and django-filter's SELECT DISTINCT would make the
    # database sort every matching row instead of reading the newest page from an index.
    # Checkboxes, as Wagtail's own listings filter (pages: owner, site, type), not a
    # <select multiple> that needs Ctrl-click.
    status = django_filters.MultipleChoiceFilter(
        label=gettext_lazy("Status"),
        choices=Status.choices,
        distinct=False,
        widget=forms.CheckboxSelectMultiple,
    )
    billing_type = django_filters.MultipleChoiceFilter(
        label=gettext_lazy("Billing type"),
        choices=BillingRequest.BillingType.choices,
        distinct=False,
        widget=forms.CheckboxSelectMultiple,
    )
    currency = django_filters.ChoiceFilter(label=gettext_lazy("Currency"), choices=currency_choices)
    created_at = django_filters.DateFromToRangeFilter(
        label=gettext_lazy("Created"), widget=DateRangePickerWidget
    )

    class Meta:
        model = BillingRequest
        fields = ["status", "billing_type", "currency", "created_at"]


def status_tone(instance: BillingRequest) -> str:
    """The colour of a request's status tag: its status, or a pending one's payment state."""
    if instance.status == Status.PENDING and instance.payment_state:
        return instance.payment_state  # processing, failed
    if instance.dispute_status and instance.dispute_status not in ("won", "warning_closed"):
        return "disputed"
    return instance.refund_state or instance.status


class StatusColumn(StatusTagColumn):
    """Wagtail's status tag (``w-status--label``), one colour per status (admin.css)."""

    cell_template_name = "wagtail_client_billing/tables/status_cell.html"

    def get_cell_context_data(self, instance: BillingRequest, parent_context: Any) -> dict:
        return {
            **super().get_cell_context_data(instance, parent_context),
            "tone": status_tone(instance),
        }

    def get_value(self, instance: BillingRequest) -> str:
        status, parts = instance.status, [instance.get_status_label()]
        if instance.refund_state:
            parts.append(format_money(instance.refunded_amount, instance.currency))
        if instance.dispute_status:
            parts.append(instance.get_dispute_display())
        if status == Status.PENDING and instance.payment_state:
            parts.append(instance.get_payment_state_display())
        if instance.subscription_status and status == Status.PAID:
            parts.append(instance.get_subscription_status_display())
            if instance.cancel_at_period_end and instance.current_period_end:
                ends = formats.date_format(timezone.localtime(instance.current_period_end))
                parts.append(_("ends on %(date)s") % {"date": ends})
        if instance.client_asked_at and status in (Status.EXPIRED, Status.DELETED):
            parts.append(_("client asked for a new link"))
        return " · ".join(parts)


class HumanDateColumn(DateColumn):
    """Wagtail's date column, saying "Just now" in French too (not "Il y a 0 minute")."""

    cell_template_name = "wagtail_client_billing/tables/date_cell.html"


class OutcomeDateColumn(HumanDateColumn):
    """When it expires (pending), was paid, expired or was deleted."""

    cell_template_name = "wagtail_client_billing/tables/outcome_date_cell.html"

    def get_cell_context_data(self, instance: BillingRequest, parent_context: Any) -> dict:
        return {**super().get_cell_context_data(instance, parent_context), "now": timezone.now()}

    def get_value(self, instance: BillingRequest) -> Any:
        outcomes: dict[str, Any] = {
            Status.PAID: instance.paid_at,
            Status.EXPIRED: instance.expired_at or instance.expires_at,
            Status.DELETED: instance.deleted_at,
        }
        return outcomes.get(instance.status, instance.expires_at)


class CappedPaginator(WagtailPaginator):
    """Wagtail's paginator, counting at most ``cap`` rows: a page of a million requests
    costs what one of 10,000 does (the count reads no further; beyond it, the filters)."""

    cap = 10_000  # 400 pages of 25

    @cached_property
    def counted(self) -> int:
        """The rows, counted up to one beyond the cap (no ORDER BY: any rows will do)."""
        if not isinstance(self.object_list, QuerySet):
            return len(self.object_list)
        return self.object_list.order_by()[: self.cap + 1].count()

    @cached_property
    def capped(self) -> bool:
        return self.counted > self.cap

    @cached_property
    def count(self) -> int:
        return min(self.counted, self.cap)

    @cached_property
    def items_count_label(self) -> str:
        if not self.capped:
            return super().items_count_label
        cap = formats.number_format(self.cap, force_grouping=True)
        items = self.verbose_name_plural
        return _("More than %(count)s %(items)s") % {"count": cap, "items": items}


class MenuButton(Button):
    """A ``<button>`` in a row's menu run by a Wagtail Stimulus ``controller#action``
    (Wagtail 7.4's own button template always renders a link)."""

    template_name = "wagtail_client_billing/includes/menu_button.html"

    def __init__(self, label: str, action: str, data: dict[str, str], **kwargs: Any) -> None:
        controller = action.partition("#")[0]
        attrs = {"type": "button", "data-controller": controller, "data-action": action, **data}
        super().__init__(label, attrs=attrs, **kwargs)


class IndexView(generic.IndexView):
    """One site's billing requests, newest first; Deleted hidden unless asked for."""

    template_name = "wagtail_client_billing/requests/index.html"
    results_template_name = "wagtail_client_billing/requests/index_results.html"
    page_title = gettext_lazy("Client billing")
    # Not Wagtail's "Add %(model_name)s" (in French "Ajouter un(e) demande de facturation").
    add_item_label = gettext_lazy("Add billing request")
    default_ordering = "-created_at"
    paginate_by = 25
    paginator_class = CappedPaginator
    any_permission_required = ["add", "view"]

    @cached_property
    def site(self) -> Site | None:
        return selected_site(self.request, ask=not self.results_only)

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        choosing = not (self.every_site or self.results_only) and self.site is None
        if choosing and billable_sites(request.user).exists():
            return choose_site(request)  # several sites and none chosen yet
        return super().get(request, *args, **kwargs)

    def get_base_queryset(self) -> QuerySet:
        if self.site is None:
            return BillingRequest.objects.none()
        requests = requests_for(self.request.user).filter(site=self.site)
        return requests.select_related("site").prefetch_related("emails")

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        queryset = super().filter_queryset(queryset)
        if not self.request.GET.getlist("status"):
            queryset = queryset.exclude(status=Status.DELETED)
        return queryset

    @cached_property
    def hidden_deleted(self) -> int:
        """How many Deleted requests the other filters and the search would show."""
        if self.request.GET.getlist("status") or self.site is None:  # (the overview: None)
            return 0
        unhidden = super().filter_queryset(self.get_base_queryset())
        return self.search_queryset(unhidden).filter(status=Status.DELETED).count()

    def show_deleted_url(self) -> str:
        """This listing, filters and search kept, showing the Deleted requests."""
        params = self.request.GET.copy()
        for name in (self.page_kwarg, "_w_filter_fragment"):
            params.pop(name, None)
        params.setlist("status", [Status.DELETED])
        if self.site is not None:
            params["site"] = str(self.site.pk)
        return f"{self.index_url}?{params.urlencode()}"

    every_site = False  # the overview: a Site column, no Email column

    @cached_property
    def columns(self) -> list[Column]:
        columns: list[Column] = [
            # The email, linking to the request, with the row's menu.
            self._get_title_column("email", classname="wcb-email"),  # never wraps: admin.css
            Column("description", label=gettext_lazy("Description")),
            Column(
                "amount",
                label=gettext_lazy("Amount"),
                sort_key="amount",
                accessor=lambda instance: format_money(instance.amount, instance.currency),
            ),
            Column(
                "billing_type",
                label=gettext_lazy("Billing type"),
                accessor="get_billing_type_display",
            ),
            StatusColumn("status", label=gettext_lazy("Status"), sort_key="status"),
            HumanDateColumn("created_at", label=gettext_lazy("Created"), sort_key="created_at"),
            OutcomeDateColumn("outcome", label=gettext_lazy("Expires or paid at")),
        ]
        if self.every_site:
            site = Column("site", label=gettext_lazy("Site"), sort_key="site__site_name")
            columns.insert(1, site)
        else:
            email = gettext_lazy("Email")
            columns.append(Column("email_status", label=email, accessor="get_email_status_display"))
        return columns

    def get_add_url(self) -> str | None:
        return url("add", site=self.site) if self.site is not None else None

    @cached_property
    def header_buttons(self) -> list:
        buttons = list(super().header_buttons)
        policy, user = email_settings_policy, self.request.user
        if self.site and policy.user_has_permission_for_instance(user, "change", self.site):
            settings, label = url("email_settings", site=self.site), _("Email settings")
            # An icon with its label as tooltip: the French labels side by side would leave
            # the page's title "Facturat..." at 1280 px.
            buttons.append(
                HeaderButton(label, url=settings, icon_name="mail", icon_only=True, priority=20)
            )
        return buttons

    @cached_property
    def linked_accounts(self) -> set[tuple[str, str]]:
        """Read once per listing: no Resend for a request of an account that is gone."""
        return connections.linked_accounts()

    def get_list_more_buttons(self, instance: BillingRequest) -> list:
        pk = instance.pk
        buttons = [
            MenuItem(_("Details"), url=url("inspect", pk), icon_name="info-circle", priority=10),
            MenuButton(
                _("Copy payment link"),
                "w-clipboard#copy",
                {
                    "data-w-clipboard-value-param": instance.get_payment_url(),
                    "data-wcb-copied-label": _("Copied"),
                },
                icon_name="link",
                priority=15,
            ),
        ]
        if instance.status == Status.PENDING:
            if connections.account_is_linked(instance, self.linked_accounts):
                # POSTs with the CSRF token and ``next``.
                resend = {"data-w-action-url-value": url("resend", pk)}
                buttons.append(
                    MenuButton(
                        _("Resend email"), "w-action#post", resend, icon_name="mail", priority=20
                    )
                )
            buttons.append(
                MenuItem(_("Delete"), url=url("delete", pk), icon_name="bin", priority=30)
            )
        return buttons

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {
            **super().get_context_data(**kwargs),
            "sites": billable_sites(self.request.user),
            "current_site": self.site,
            "switch_url": url("index"),
            "choose_url": url("choose_site"),
            "hidden_deleted": self.hidden_deleted,
            "show_deleted_url": self.show_deleted_url() if self.hidden_deleted else "",
        }


class SiteChooserView(WagtailAdminTemplateMixin, TemplateView):
    """The sites the user can bill for, with their requests: where the listing opens when
    there are several (not on the admin's own site, usually the agency's, with nothing)."""

    template_name = "wagtail_client_billing/requests/choose_site.html"
    page_title = gettext_lazy("Client billing")  # the listing's, so its heading is the same
    header_icon = ICON

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not billable_sites(request.user).exists():
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)

    def get_breadcrumbs_items(self) -> list[dict[str, Any]]:
        return [*self.breadcrumbs_items, {"url": "", "label": self.page_title}]

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        listed = ~Q(billing_requests__status__in=[BillingRequest.CREATING, Status.DELETED])
        sites = billable_sites(self.request.user).annotate(
            pending=Count("billing_requests", filter=Q(billing_requests__status=Status.PENDING)),
            requests=Count("billing_requests", filter=listed),
        )
        columns = [
            TitleColumn(
                "name",
                label=gettext_lazy("Site"),
                accessor=lambda site: site.site_name or site.hostname,
                get_url=lambda site: url("index", site=site),
            ),
            Column("address", label=gettext_lazy("Address"), accessor=site_address),
            Column("pending", label=gettext_lazy("Pending")),
            Column("requests", label=gettext_lazy("Billing requests")),
        ]
        table = Table(columns, sites, attrs={"data-wcb-site-chooser": ""})
        context = {"table": table, "sites": sites, "switch_url": url("index")}
        return {**super().get_context_data(**kwargs), **context}


choose_site = SiteChooserView.as_view()
