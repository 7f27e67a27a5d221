"""The client's subscription link: ``/billing/manage/<token>/<key>/`` on the request's own
site opens Stripe's customer portal (update the card, see invoices, cancel). The key is
the request's own HMAC: the pay link's token alone (editors see it) does not open it."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import translation
from django.utils.crypto import constant_time_compare
from django.views.decorators.cache import never_cache
from wagtail.models import Site

from .. import billing, stripe_api
from ..billing import subscriptions
from ..models import SiteEmailSettings
from .pay import TEMPLATES, _requests_by_token, not_found


def stripe_locale(language: str) -> str:
    """The portal's language: the site's client language where Stripe has it by that code."""
    return language if len(language) == 2 else "auto"


@never_cache
def manage(request: HttpRequest, token: str, key: str) -> HttpResponse:
    """Off to the client's customer portal at Stripe, or a page saying why not."""
    billing_request = _requests_by_token(token).select_related("site").first()
    if billing_request is None or not any(
        constant_time_compare(key, known) for known in billing_request.manage_keys()
    ):
        return not_found(request)
    current_site = Site.find_for_request(request)
    if current_site is not None and current_site.pk != billing_request.site_id:
        return HttpResponseRedirect(billing_request.get_manage_url())
    email_settings = SiteEmailSettings.for_site_or_default(billing_request.site_id)
    language = email_settings.language(billing_request.site)
    with translation.override(language):
        context = {
            "billing_request": billing_request,
            "site_name": billing_request.site.site_name or billing_request.site.hostname,
            "contact_email": email_settings.contact_address,
        }
        try:
            url = subscriptions.portal_url(
                billing_request,
                return_url=billing_request.site.root_url.rstrip("/") + "/",
                locale=stripe_locale(language),
            )
        except billing.BillingError as error:
            context["reason"] = error.user_message
            return render(request, TEMPLATES + "manage_unavailable.html", context, status=410)
        except stripe_api.StripeFailure:
            context["later"] = True
            return render(request, TEMPLATES + "manage_unavailable.html", context, status=503)
    return HttpResponseRedirect(url)
