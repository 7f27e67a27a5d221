"""URLs of the benchmarks: the example project's, plus two views to compare with.

``POST /bench/bare/`` reads the body and answers 200, nothing else: the cost of Django,
its middleware and the HTTP server, without the app. ``POST /bench/store/`` also parses
the body and stores it once (one ``INSERT ... ON CONFLICT DO NOTHING``, committed): the
floor of any webhook endpoint that keeps what it is sent. The webhook benchmark sends
both the same signed bodies as the real ``/billing/stripe/webhook/``.
"""

import json

from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from example_project.urls import urlpatterns as project_urlpatterns

BARE_PATH = "/bench/bare/"
STORE_PATH = "/bench/store/"


@csrf_exempt
@login_not_required
@require_POST
def bare_post(request: HttpRequest) -> HttpResponse:
    """Answer 200 to a POST, reading its body as the webhook view does."""
    return HttpResponse(f"{len(request.body)}", content_type="text/plain")


@csrf_exempt
@login_not_required
@require_POST
def store_post(request: HttpRequest) -> HttpResponse:
    """Parse the body and store it once under its ``id``: one durable INSERT."""
    event = json.loads(request.body)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO bench_anchor_anchorevent (stripe_id, payload) VALUES (%s, %s) "
            "ON CONFLICT (stripe_id) DO NOTHING",
            [event["id"], request.body.decode()],
        )
    return HttpResponse(event["id"], content_type="text/plain")


urlpatterns = [
    path(BARE_PATH.strip("/") + "/", bare_post),
    path(STORE_PATH.strip("/") + "/", store_post),
    *project_urlpatterns,
]
