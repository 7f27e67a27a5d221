"""The client's payment link: ``/billing/pay/<token>/`` on the request's own site."""

from __future__ import annotations

import re

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import timezone, translation
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST
from wagtail.models import Site

from .. import billing, connections
from ..mail import queue as outbox_queue
from ..mail.messages import language_of_site
from ..models import BillingRequest, Invoice, SiteEmailSettings

Status = BillingRequest.Status
TEMPLATES = "wagtail_client_billing/public/"
# What new_token() makes (URL-safe base64); anything else cannot be a link of ours, and
# some of it (a NUL) the database refuses to even compare.
TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _requests_by_token(token: str) -> QuerySet:
    if not TOKEN.fullmatch(token):
        return BillingRequest.objects.none()
    return BillingRequest.objects.filter(token=token)


@never_cache
def pay(request: HttpRequest, token: str) -> HttpResponse:
    """Send the client to Stripe Checkout while payable; otherwise say why not."""
    requests = _requests_by_token(token).select_related("site", "site__root_page__locale")
    billing_request = requests.first()
    if billing_request is None:
        return not_found(request)
    current_site = Site.find_for_request(request)
    if current_site is not None and current_site.pk != billing_request.site_id:
        # Each link lives on its own client's site.
        return HttpResponseRedirect(billing_request.get_payment_url())
    email_settings = SiteEmailSettings.for_site_or_default(billing_request.site_id)
    contact = email_settings.contact_address
    with translation.override(email_settings.language(billing_request.site)):
        context = {
            "billing_request": billing_request,
            "site_name": billing_request.site.site_name or billing_request.site.hostname,
            "contact_email": contact,
        }
        status = billing_request.status
        if status == Status.PENDING and billing_request.expires_at > timezone.now():
            if not connections.account_is_linked(billing_request):
                # The agency no longer bills through this account: say so, not Checkout
                # (a payment made there anyway is still recorded, flagged late).
                return render(request, TEMPLATES + "account_gone.html", context, status=410)
            if billing_request.payment_state:  # paid by a delayed method: Checkout is over
                failed = billing_request.payment_state == BillingRequest.PaymentState.FAILED
                context["failed"] = failed
                return render(request, TEMPLATES + "processing.html", context)
            if billing_request.checkout_url:
                return HttpResponseRedirect(billing_request.checkout_url)
        if status == Status.PAID:
            context["invoice"] = latest_invoice(billing_request)
            return render(request, TEMPLATES + "paid.html", context)
        # Withdrawn; expired, or pending past its time before the sweep caught up.
        page = "withdrawn.html" if status == Status.DELETED else "expired.html"
        return render(request, TEMPLATES + page, context, status=410)


def latest_invoice(billing_request: BillingRequest) -> Invoice | None:
    """The invoice the paid page links: the latest one with a link (a subscription has one
    per payment), never a voided one."""
    invoices = billing_request.invoices.exclude(status="void")
    return invoices.exclude(invoice_pdf="", hosted_invoice_url="").first()


def not_found(request: HttpRequest) -> HttpResponse:
    """No such link: said in the language of the site it was opened on."""
    with translation.override(language_of_site(Site.find_for_request(request))):
        return render(request, TEMPLATES + "not_found.html", status=404)


@never_cache
@require_POST
def ask_for_new_link(request: HttpRequest, token: str) -> HttpResponse:
    """ "Ask for a new link" on the expired page: tells the site once per request."""
    billing_request = _requests_by_token(token).first()
    if billing_request is None:
        return not_found(request)
    if billing_request.status == Status.PENDING and billing_request.expires_at <= timezone.now():
        billing.mark_expired(billing_request.pk, source="client")
    # A second click, or a reload of the POST, changes nothing and sends nothing.
    outbox_queue.ask_for_new_link(billing_request)
    return HttpResponseRedirect(billing_request.get_payment_path())
