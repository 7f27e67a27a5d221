"""The overview benchmark's anchor: a plain Wagtail ``ModelViewSet`` over a copy of the
billing requests (same columns, same rows), served at ``/admin/bench-anchor/``.

Benchmark-only: installed by ``benchmarks.bench_settings``, never by the package.
"""
