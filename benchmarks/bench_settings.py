"""Settings of the benchmarks: the test suite's, with production's task queue.

``DJANGO_SETTINGS_MODULE=benchmarks.bench_settings``. Differences from ``tests.settings``:

- ``ROOT_URLCONF`` is ``benchmarks.bench_urls`` (the example project's URLs plus a bare
  view that the webhook benchmark compares the real endpoint with);
- ``benchmarks.bench_anchor`` is installed: the overview benchmark's anchor, a plain
  Wagtail ``ModelViewSet`` at ``/admin/bench-anchor/`` (its URLs come with Wagtail's
  admin URLs, through the ``register_admin_viewset`` hook);
- django-q2 tasks are queued in its ORM broker, as in production, instead of run inline
  (``sync``), so an operation is timed with what it does itself, not with the emails a
  worker would send later; django-q2 logs warnings only (not a line per queued task);
- ``WCB_BENCH_DATABASE_NAME``, when set, names the database (a benchmark's server
  process runs on the database its benchmark created).
"""

import os

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES, INSTALLED_APPS, Q_CLUSTER

ROOT_URLCONF = "benchmarks.bench_urls"
INSTALLED_APPS = ["benchmarks.bench_anchor", *INSTALLED_APPS]
Q_CLUSTER = {**Q_CLUSTER, "sync": False, "log_level": "WARNING"}

if os.environ.get("WCB_BENCH_DATABASE_NAME"):
    DATABASES["default"]["NAME"] = os.environ["WCB_BENCH_DATABASE_NAME"]
