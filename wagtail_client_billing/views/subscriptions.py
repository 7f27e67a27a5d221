"""Cancel a paid request's subscription (agency admins: it ends the client's revenue)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404, redirect
from django.utils import formats, timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.generic import FormView
from wagtail.admin.views.generic.base import BaseObjectMixin, WagtailAdminTemplateMixin

from .. import billing, stripe_api
from ..billing import subscriptions
from ..icons import ICON
from ..models import BillingRequest
from ..permissions import forbidden, is_agency_admin
from .listing import url


class CancelForm(forms.Form):
    when = forms.ChoiceField(
        label=gettext_lazy("When"),
        widget=forms.RadioSelect,
        choices=[
            ("period_end", gettext_lazy("At the end of the period already paid")),
            ("now", gettext_lazy("Now")),
        ],
        initial="period_end",
    )


class CancelSubscriptionView(BaseObjectMixin, WagtailAdminTemplateMixin, FormView):
    """GET: when, and what the client gets; POST: cancel at Stripe."""

    model = BillingRequest
    template_name = "wagtail_client_billing/requests/cancel_subscription.html"
    page_title = gettext_lazy("Cancel subscription")
    header_icon = ICON
    form_class = CancelForm

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not is_agency_admin(request.user):
            return forbidden(request)
        return super().dispatch(request, *args, **kwargs)

    def get_object(self) -> BillingRequest:
        return get_object_or_404(BillingRequest.objects.select_related("site"), pk=self.pk)

    def get_breadcrumbs_items(self) -> list[dict[str, Any]]:
        """Home > Client billing > the request > this page, whose title the header shows."""
        return [
            *self.breadcrumbs_items,
            {"url": url("index"), "label": _("Client billing")},
            {"url": url("inspect", self.object.pk), "label": self.object.email},
            {"url": "", "label": self.get_page_title()},
        ]

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not cancelable(self.object):
            messages.warning(request, _("This subscription cannot be canceled (any more)."))
            return redirect(url("inspect", self.object.pk))
        return super().get(request, *args, **kwargs)

    def form_valid(self, form: CancelForm) -> HttpResponse:
        at_period_end = form.cleaned_data["when"] == "period_end"
        try:
            request = subscriptions.cancel(
                self.object, at_period_end=at_period_end, user=self.request.user
            )
        except (billing.BillingError, stripe_api.StripeFailure) as error:
            messages.error(self.request, error.user_message)
            return redirect(url("inspect", self.object.pk))
        if request.cancel_at_period_end and request.current_period_end:
            message = _("The subscription ends on %(date)s; %(email)s was told.")
            when = formats.date_format(timezone.localtime(request.current_period_end))
            messages.success(self.request, message % {"date": when, "email": request.email})
        else:
            message = _("The subscription is canceled; %(email)s was told.")
            messages.success(self.request, message % {"email": request.email})
        return redirect(url("inspect", request.pk))


def cancelable(request: BillingRequest) -> bool:
    """Whether a Cancel subscription button applies to ``request``."""
    return (
        request.status == BillingRequest.Status.PAID
        and bool(request.subscription_id)
        and request.subscription_status not in subscriptions.ENDED
    )
