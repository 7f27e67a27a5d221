"""URLs of the benchmarks: the example project's, plus a bare view to compare with.

``POST /bench/bare/`` reads the body and answers 200, nothing else: the cost of Django,
its middleware and the HTTP server, without the app. The webhook benchmark sends it
the same signed bodies as the real ``/billing/stripe/webhook/``.
"""

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from example_project.urls import urlpatterns as project_urlpatterns

BARE_PATH = "/bench/bare/"


@csrf_exempt
@login_not_required
@require_POST
def bare_post(request: HttpRequest) -> HttpResponse:
    """Answer 200 to a POST, reading its body as the webhook view does."""
    return HttpResponse(f"{len(request.body)}", content_type="text/plain")


urlpatterns = [path(BARE_PATH.strip("/") + "/", bare_post), *project_urlpatterns]
