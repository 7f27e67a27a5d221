"""Refund a paid request's payment (agency admins: money leaves the agency's account)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404, redirect
from django.utils.formats import localize_input
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.generic import FormView
from wagtail.admin.views.generic.base import BaseObjectMixin, WagtailAdminTemplateMixin

from .. import billing, connections, stripe_api
from ..billing.refunds import Payment
from ..forms import RefundForm
from ..icons import ICON
from ..models import BillingRequest, Refund
from ..money import format_money, to_major
from ..permissions import forbidden, is_agency_admin
from .listing import url


class RefundView(BaseObjectMixin, WagtailAdminTemplateMixin, FormView):
    """GET: how much, why, and what the client will see; POST: the refund, once."""

    model = BillingRequest
    template_name = "wagtail_client_billing/requests/refund.html"
    page_title = gettext_lazy("Refund")
    header_icon = ICON
    form_class = RefundForm

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not is_agency_admin(request.user):
            return forbidden(request)
        return super().dispatch(request, *args, **kwargs)

    def setup(self, request: HttpRequest, *args: Any, **kwargs: Any) -> None:
        super().setup(request, *args, **kwargs)
        self.payment: Payment | None = None

    def get_object(self) -> BillingRequest:
        return get_object_or_404(BillingRequest.objects.select_related("site"), pk=self.pk)

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if (response := self._unrefundable()) is not None:
            return response
        return super().get(request, *args, **kwargs)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        nonce = request.POST.get("nonce", "").replace("\x00", "")[:64]
        earlier = Refund.objects.filter(key=nonce, billing_request=self.object).first()
        if earlier is not None:  # a double click, or the retry of one Stripe did not answer
            self.payment = billing.latest_payment(self.object)
            return self._refund(self.get_form(), amount=earlier.amount, reason=earlier.reason)
        if (response := self._unrefundable()) is not None:
            return response
        return super().post(request, *args, **kwargs)

    def _unrefundable(self) -> HttpResponse | None:
        """Back to the request, saying why, unless it has a payment left to refund."""
        self.payment = billing.latest_payment(self.object)
        if self.payment is None:
            message = _("Only a paid billing request's payment can be refunded.")
        elif self.payment.remaining <= 0:
            message = _("This payment has already been refunded in full.")
        elif not connections.account_is_linked(self.object):
            message = _(
                "The Stripe account that took this payment is no longer linked: refund it there."
            )
        else:
            return None
        messages.warning(self.request, message)
        return redirect(url("inspect", self.object.pk))

    def get_form_kwargs(self) -> dict[str, Any]:
        payment = self.payment
        currency = payment.currency if payment else self.object.currency
        remaining = payment.remaining if payment else 0
        return {**super().get_form_kwargs(), "currency": currency, "remaining": remaining}

    def get_initial(self) -> dict[str, Any]:
        payment = self.payment
        # What remains, as the reader writes amounts ("49,90" in French).
        amount = to_major(payment.remaining, payment.currency) if payment else None
        initial = localize_input(amount) if amount is not None else ""
        return {"nonce": connections.new_idempotency_nonce(), "amount": initial}

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {**super().get_context_data(**kwargs), "payment": self.payment}

    def get_breadcrumbs_items(self) -> list[dict[str, Any]]:
        """Home > Client billing > the request > this page, whose title the header shows."""
        return [
            *self.breadcrumbs_items,
            {"url": url("index"), "label": _("Client billing")},
            {"url": url("inspect", self.object.pk), "label": self.object.email},
            {"url": "", "label": self.get_page_title()},
        ]

    def form_valid(self, form: RefundForm) -> HttpResponse:
        data = form.cleaned_data
        return self._refund(form, amount=data["amount"], reason=data["reason"])

    def _refund(self, form: RefundForm, *, amount: int, reason: str) -> HttpResponse:
        try:
            refund = billing.refund(
                self.object,
                amount=amount,
                reason=reason,
                key=form.data["nonce"],
                user=self.request.user,
            )
        except stripe_api.StripeUnavailable as error:
            # Kept "not confirmed", amount held: this same form, sent again, finishes it.
            form.add_error(None, error.user_message)
            return self.form_invalid(form)
        except (billing.BillingError, stripe_api.StripeFailure) as error:
            form.add_error(None, error.user_message)
            form.data = form.data.copy()
            form.data["nonce"] = connections.new_idempotency_nonce()  # a new try is a new refund
            return self.form_invalid(form)
        return self._done(refund)

    def _done(self, refund: Refund) -> HttpResponse:
        amount = format_money(refund.amount, refund.currency)
        if refund.status == Refund.Status.SUCCEEDED:
            messages.success(self.request, _("%(amount)s refunded.") % {"amount": amount})
        elif refund.status == Refund.Status.FAILED:
            message = _("Stripe could not refund %(amount)s.") % {"amount": amount}
            messages.error(self.request, message)
        else:
            message = _("The refund of %(amount)s is %(status)s at Stripe.")
            status = refund.get_status_display().lower()
            messages.info(self.request, message % {"amount": amount, "status": status})
        return redirect(url("inspect", self.object.pk))
