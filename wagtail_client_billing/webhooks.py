"""The Stripe webhook endpoint (work in progress)."""

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    return HttpResponseBadRequest()
