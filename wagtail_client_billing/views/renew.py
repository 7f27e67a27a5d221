"""Renew: one click (after a confirmation that shows what will be sent) re-bills a client."""

from __future__ import annotations

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.views.generic import View

from .. import agency, billing, stripe_api
from ..models import BillingRequest
from .requests import RequestViewMixin, url


class RenewView(RequestViewMixin, View):
    """GET: what will be sent; POST: a new Pending request with the same details."""

    template_name = "wagtail_client_billing/requests/renew.html"

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        billing_request = self.get_billing_request()
        renewal = billing.renewal_of(billing_request)
        if renewal:
            messages.info(request, billing.AlreadyRenewed(renewal).user_message)
            return redirect(url("inspect", renewal.pk))
        self.page_title = _("Renew billing request")
        return TemplateResponse(
            request,
            self.template_name,
            {
                **self.get_context_data(),
                "view": self,
                "billing_request": billing_request,
                "renewable": billing_request.status
                in (BillingRequest.Status.EXPIRED, BillingRequest.Status.DELETED),
                "nonce": agency.new_idempotency_nonce(),
                "lifetime_hours": round(billing.session_lifetime() / 3600),
                "cancel_url": url("inspect", billing_request.pk),
            },
        )

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        billing_request = self.get_billing_request()
        # An opaque key; PostgreSQL cannot even look up one with a NUL in it.
        nonce = (request.POST.get("nonce") or "").replace("\x00", "")[:64] or None
        try:
            renewed = billing.renew_request(billing_request, nonce=nonce, user=request.user)
        except billing.AlreadySubmitted as duplicate:
            messages.info(request, duplicate.user_message)
            return redirect(url("inspect", duplicate.billing_request.pk))
        except (billing.BillingError, stripe_api.StripeFailure) as error:
            messages.error(request, error.user_message)
            return redirect(url("inspect", billing_request.pk))
        messages.success(
            request,
            _("A new billing request was sent to %(email)s.") % {"email": renewed.email},
        )
        return redirect(url("inspect", renewed.pk))


# Renewing calls Stripe: never inside a request transaction (ATOMIC_REQUESTS).
renew = transaction.non_atomic_requests(RenewView.as_view())
