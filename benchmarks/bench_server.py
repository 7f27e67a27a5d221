"""A threaded HTTP server for the benchmarks: Django's runserver machinery, no reloader.

    DJANGO_SETTINGS_MODULE=benchmarks.bench_settings WCB_BENCH_DATABASE_NAME=... \\
        python -m benchmarks.bench_server

Listens on a free loopback port (port 0), prints that port on stdout, and serves the
benchmarks' project (``bench_urls``) until terminated: Django's ``ThreadedWSGIServer``
and ``WSGIRequestHandler`` (HTTP/1.1 keep-alive, one thread per connection), as
``runserver --noreload`` runs them. One difference: answers go out with ``TCP_NODELAY``,
as production servers send them. Without it, the status line, the headers and the body
leave in separate small writes and a keep-alive client's delayed ACK stalls each answer
about 40 ms (Nagle's algorithm), which would measure Linux's TCP timers, not Django.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def serve() -> None:
    """Serve until killed; the first line on stdout is the port."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.bench_settings")
    import django

    django.setup()
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application

    class Handler(WSGIRequestHandler):
        disable_nagle_algorithm = True  # socketserver sets TCP_NODELAY on each connection

    server = ThreadedWSGIServer(("127.0.0.1", 0), Handler)
    server.set_app(get_wsgi_application())
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()


if __name__ == "__main__":
    serve()
