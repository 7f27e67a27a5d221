"""End-to-end tests: the example project, a django-q2 cluster and the Stripe simulator as
real processes, driven through Debian's chromium (see ``harness.py``)."""
