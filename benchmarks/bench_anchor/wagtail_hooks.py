"""The anchor's admin: a plain ``ModelViewSet`` of ``AnchorRequest`` at /admin/bench-anchor/.

Plain: Wagtail's own index view, columns and filters from ``list_display`` and
``list_filter``, the overview's columns and filters. Two lines of view code, both what
any developer would write for this listing: the site's name is read with the rows
(``select_related``, else one query per row), and Deleted rows are hidden unless a
status filter asks for them (the overview's default, so that both pages list the same
25 rows).
"""

from typing import Any

from django.db.models import QuerySet
from wagtail import hooks
from wagtail.admin.views import generic
from wagtail.admin.viewsets.model import ModelViewSet

from .models import AnchorRequest


class AnchorIndexView(generic.IndexView):
    def get_base_queryset(self) -> QuerySet:
        return super().get_base_queryset().select_related("site")

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        queryset = super().filter_queryset(queryset)
        if not self.request.GET.getlist("status"):
            queryset = queryset.exclude(status=AnchorRequest.Status.DELETED)
        return queryset


class AnchorViewSet(ModelViewSet):
    model = AnchorRequest
    index_view_class = AnchorIndexView
    url_prefix = "bench-anchor"
    icon = "list-ul"
    add_to_admin_menu = False
    list_per_page = 25  # the overview's page
    ordering = "-created_at"  # the overview's default ordering
    list_display = [
        "email",
        "site",
        "description",
        "amount",
        "billing_type",
        "status",
        "created_at",
        "expires_at",
    ]
    list_filter = ["site", "mode", "status", "billing_type", "currency", "created_at"]
    search_fields = ["email", "description"]
    form_fields = list_display


anchor_viewset = AnchorViewSet("bench_anchor")


@hooks.register("register_admin_viewset")
def register_anchor_viewset() -> Any:
    return anchor_viewset
