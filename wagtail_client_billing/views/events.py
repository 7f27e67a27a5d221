"""The agency's listing of received Stripe events, with "Reprocess" for failed ones."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import django_filters
from django import forms
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.text import Truncator, capfirst
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.generic import TemplateView
from wagtail.admin import messages
from wagtail.admin.filters import DateRangePickerWidget, WagtailFilterSet
from wagtail.admin.ui.tables import Column, StatusTagColumn
from wagtail.admin.views.generic import IndexView, InspectView
from wagtail.admin.views.generic.base import BaseObjectMixin, WagtailAdminTemplateMixin
from wagtail.admin.views.generic.permissions import PermissionCheckedMixin
from wagtail.admin.viewsets.model import ModelViewSet
from wagtail.admin.widgets.button import Button, HeaderButton
from wagtail.utils.urlpatterns import decorate_urlpatterns

from ..compat import PolicyViewSetMixin
from ..events.handlers import HANDLERS
from ..events.processing import EventProcessingFailed, process_event
from ..models import WebhookEvent
from ..models.agency import Mode
from ..permissions import agency_admins_only, webhook_event_policy
from .listing import HumanDateColumn

STATUS = WebhookEvent.Status
REPROCESS = "reprocess"


def short_error(event: WebhookEvent, length: int = 100) -> str:
    """The last line of the stored traceback (the exception), shortened for a listing."""
    lines = [line.strip() for line in event.error.splitlines() if line.strip()]
    return Truncator(lines[-1]).chars(length) if lines else ""


def event_url(name: str, event: WebhookEvent | None = None) -> str:
    args = [quote(event.pk)] if event else []
    return reverse(webhook_event_viewset.get_url_name(name), args=args)


def can_reprocess(user: Any, event: WebhookEvent) -> bool:
    return event.status == STATUS.FAILED and webhook_event_policy.user_has_permission(
        user, REPROCESS
    )


class WebhookEventFilterSet(WagtailFilterSet):
    status = django_filters.MultipleChoiceFilter(
        label=gettext_lazy("Status"),
        choices=STATUS.choices,
        widget=forms.CheckboxSelectMultiple,
    )
    mode = django_filters.ChoiceFilter(
        label=gettext_lazy("Mode"),
        choices=Mode.choices,
        method="filter_mode",
        widget=forms.RadioSelect,
        empty_label=gettext_lazy("All"),
    )
    type = django_filters.ChoiceFilter(
        label=gettext_lazy("Type"), widget=forms.Select, empty_label=gettext_lazy("All")
    )
    account = django_filters.CharFilter(label=gettext_lazy("Account"), lookup_expr="iexact")
    received_at = django_filters.DateFromToRangeFilter(
        label=gettext_lazy("Received"), widget=DateRangePickerWidget
    )

    class Meta:
        model = WebhookEvent
        fields = ["status", "mode", "type", "account", "received_at"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The types received so far and those with a handler (one never received: none).
        received = WebhookEvent.objects.order_by().values_list("type", flat=True).distinct()
        types = sorted(set(received) | set(HANDLERS))
        self.filters["type"].extra["choices"] = [(t, t) for t in types]

    def filter_mode(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(livemode=value == Mode.LIVE) if value else queryset


class WebhookEventIndexView(IndexView):
    def get_list_more_buttons(self, instance: WebhookEvent) -> list:
        buttons = super().get_list_more_buttons(instance)
        if can_reprocess(self.request.user, instance):
            url = event_url(REPROCESS, instance)
            buttons.append(Button(_("Reprocess"), url=url, icon_name="resubmit", priority=40))
        return buttons


class WebhookEventInspectView(InspectView):
    template_name = "wagtail_client_billing/events/inspect.html"

    def get_fields_context(self) -> list[dict[str, Any]]:
        # Leave out what this event does not have (no note, not processed yet...).
        optional = {"account", "api_version", "note", "processed_at"}
        return [
            self.get_context_for_field(name)
            for name in self.fields
            if name not in optional or getattr(self.object, name) not in ("", None)
        ]

    def get_field_label(self, field_name: str, field: Any) -> str:
        labels = {"livemode": _("Mode"), "api_version": _("API version")}
        return labels.get(field_name) or super().get_field_label(field_name, field)

    def get_livemode_display_value(self) -> str:
        return str(self.object.mode.label)

    def get_field_display_value(self, field_name: str, field: Any) -> Any:
        value = super().get_field_display_value(field_name, field)
        # Wagtail's inspect template shows values with ``|localize``, which formats a
        # datetime as stored (UTC), not in the reader's time zone as ``{{ value }}`` would.
        return timezone.localtime(value) if isinstance(value, datetime) else value

    @cached_property
    def header_buttons(self) -> list:
        if not can_reprocess(self.request.user, self.object):
            return []
        url = event_url(REPROCESS, self.object)
        return [HeaderButton(_("Reprocess"), url=url, icon_name="resubmit")]

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        payload_json = json.dumps(self.object.payload, indent=2, ensure_ascii=False)
        return super().get_context_data(payload_json=payload_json, **kwargs)


class ReprocessView(
    PermissionCheckedMixin, BaseObjectMixin, WagtailAdminTemplateMixin, TemplateView
):
    """GET: a confirmation; POST: apply the failed event again and say how it went."""

    model = WebhookEvent
    permission_policy = webhook_event_policy
    permission_required = REPROCESS
    template_name = "wagtail_client_billing/events/confirm_reprocess.html"
    page_title = gettext_lazy("Reprocess")
    header_icon = "resubmit"

    @cached_property
    def inspect_url(self) -> str:
        return event_url("inspect", self.object)

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if self.object.status != STATUS.FAILED:
            messages.warning(
                request,
                _("Only failed events can be reprocessed; this one is %(status)s.")
                % {"status": self.object.get_status_display().lower()},
            )
            return redirect(self.inspect_url)
        return super().dispatch(request, *args, **kwargs)

    def get_page_subtitle(self) -> str:
        return str(self.object)

    def get_breadcrumbs_items(self) -> list[dict[str, Any]]:
        return [
            *self.breadcrumbs_items,
            {"url": event_url("index"), "label": capfirst(WebhookEvent._meta.verbose_name_plural)},
            {"url": self.inspect_url, "label": str(self.object)},
            {"url": "", "label": self.get_page_title(), "sublabel": str(self.object)},
        ]

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(
            event=self.object,
            short_error=short_error(self.object),
            inspect_url=self.inspect_url,
            **kwargs,
        )

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        event = self.object
        try:
            process_event(event)
        except EventProcessingFailed:
            messages.error(
                request,
                _("Reprocessing failed again: %(error)s") % {"error": short_error(event)},
            )
        else:
            if event.status == STATUS.PROCESSED:
                messages.success(request, _("The event was reprocessed successfully."))
            else:  # ignored (the account was unlinked since?), or applied by a Stripe retry
                reason = event.note or event.get_status_display().lower()
                messages.warning(
                    request, _("The event was not applied: %(reason)s") % {"reason": reason}
                )
        return redirect(self.inspect_url)


class WebhookEventViewSet(PolicyViewSetMixin, ModelViewSet):
    model = WebhookEvent
    policy = webhook_event_policy
    icon = "resubmit"
    menu_label = gettext_lazy("Stripe events")
    add_to_settings_menu = True
    menu_order = 611  # right after "Client billing account"
    inspect_view_enabled = True
    add_to_reference_index = False  # an event refers to nothing Wagtail shows the usage of
    index_view_class = WebhookEventIndexView
    inspect_view_class = WebhookEventInspectView
    # Events are never added or edited by hand: the policy allows "view" only.
    exclude_form_fields: list[str] = []
    ordering = ["-received_at", "-pk"]
    list_per_page = 50
    filterset_class = WebhookEventFilterSet
    search_fields = ["stripe_id", "type", "account"]
    inspect_view_fields_exclude = ["id", "payload", "error"]
    url_prefix = "client-billing/events"
    name = "wagtail_client_billing_events"

    list_display = [
        "type",
        Column("account", label=gettext_lazy("Account"), sort_key="account"),
        Column("mode", label=gettext_lazy("Mode"), accessor="mode.label"),
        StatusTagColumn(
            "status",
            label=gettext_lazy("Status"),
            accessor="get_status_display",
            sort_key="status",
            primary=lambda event: event.status == STATUS.PROCESSED,
        ),
        HumanDateColumn("received_at", label=gettext_lazy("Received"), sort_key="received_at"),
        HumanDateColumn("processed_at", label=gettext_lazy("Processed"), sort_key="processed_at"),
        Column("error", label=gettext_lazy("Error"), accessor=short_error),
    ]

    def get_permissions_to_register(self) -> QuerySet:
        # The agency permission governs these screens; the model's own would do nothing.
        return Permission.objects.none()

    def get_urlpatterns(self) -> list:
        patterns = [
            *super().get_urlpatterns(),
            path(f"{REPROCESS}/<int:pk>/", ReprocessView.as_view(), name=REPROCESS),
        ]
        # Agency admins only, on every URL: a 403 before any look-up (no hint of which exist).
        return decorate_urlpatterns(patterns, agency_admins_only)


webhook_event_viewset = WebhookEventViewSet()
