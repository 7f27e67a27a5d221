"""Shared fixtures: the Stripe simulator (from the package's pytest plugin), the app pointed
at it, two client sites, a linked Stripe account, and a browser.

Tests that need PostgreSQL, a browser or Redis are skipped with a reason when the
machine cannot run them. ``WCB_REQUIRE=browser,postgres,redis`` (set by ``.ci/run``)
turns those skips into failures, so CI can never pass with them silently skipped.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Iterator

import pytest
from django.db import connection as database

from tests.factories import connect_ready_account, make_site

pytest_plugins = ["wagtail_client_billing.testing.pytest_plugin"]

# Playwright's sync API runs an event loop in the test thread; Django would then refuse
# ORM calls from that thread although nothing runs concurrently.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "1")

REQUIRED = {item.strip() for item in os.environ.get("WCB_REQUIRE", "").split(",") if item}


def _unavailable(capability: str, reason: str) -> None:
    if capability in REQUIRED:
        pytest.fail(f"{capability} tests are required here (WCB_REQUIRE) but: {reason}")
    pytest.skip(reason)


def chromium_path() -> str | None:
    """Debian's chromium (Playwright's own browser download does not work offline)."""
    return os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")


def redis_url() -> str:
    """The Redis server of django-q2's Redis broker (as in the example project's settings)."""
    return os.environ.get("Q_REDIS_URL") or "redis://127.0.0.1:6379/0"


@functools.cache
def redis_unreachable() -> str:
    """Why Redis cannot be used here ("" if it answers), asked once per session."""
    try:
        import redis
    except ImportError:
        return "needs the redis Python package (pip install -e .[test])"
    url = redis_url()
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as error:
        return f"needs Redis at {url} (Q_REDIS_URL): {error}"
    return ""


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("postgres") and database.vendor != "postgresql":
        _unavailable("postgres", "needs PostgreSQL: run with DATABASE_URL=postgres://...")
    if item.get_closest_marker("browser") and not chromium_path():
        _unavailable("browser", "needs Debian's chromium (apt-get install chromium)")
    if item.get_closest_marker("redis") and redis_unreachable():
        _unavailable("redis", redis_unreachable())


@pytest.fixture
def stripe_timeout() -> float:
    """The app's Stripe timeout (seconds) in ``stripe``; a module overrides this fixture."""
    return 2


@pytest.fixture
def stripe(billing_stripe_settings, settings, stripe_timeout):
    """The app pointed at the simulator, with no SDK retries so faults show at once."""
    settings.WAGTAIL_CLIENT_BILLING = {
        **settings.WAGTAIL_CLIENT_BILLING,
        "STRIPE_MAX_NETWORK_RETRIES": 0,
        "STRIPE_TIMEOUT": stripe_timeout,
    }
    return billing_stripe_settings


@pytest.fixture
def sites(db) -> tuple:
    """Two client sites: Acme (``sites[0]``) and the bakery."""
    return make_site("acme.test", "Acme Plumbing"), make_site("bakery.test", "Rue Haute Bakery")


@pytest.fixture
def connection(stripe):
    """The agency's Stripe account, linked and onboarded at the simulator."""
    return connect_ready_account(stripe)


@pytest.fixture(scope="session")
def browser() -> Iterator:
    """A headless Debian chromium driven by Playwright."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("browser", "needs the playwright Python package")
    path = chromium_path()
    if not path:
        _unavailable("browser", "needs Debian's chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=path,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def wagtail_root(transactional_db) -> None:
    """Wagtail's default locale, root page and site, as its migrations make them.

    Transactional tests (browser tests against a live server) start from a flushed
    database, where the migrations' rows are gone; Django's serialized rollback cannot
    bring them back reliably while Playwright runs an event loop in the test thread.
    """
    from wagtail.models import Locale, Page, Site

    if Page.get_first_root_node() is not None:
        return
    Locale.objects.get_or_create(language_code="en")
    root = Page.add_root(title="Root", slug="root")
    home = root.add_child(instance=Page(title="Welcome", slug="home"))
    Site.objects.get_or_create(
        hostname="localhost", defaults={"root_page": home, "is_default_site": True}
    )


@pytest.fixture(autouse=True)
def _default_language() -> Iterator[None]:
    """Each test starts and ends in the project's language: a request made in French
    (a user's preference) must not leave French active for the next test's forms."""
    from django.conf import settings
    from django.utils import translation

    translation.activate(settings.LANGUAGE_CODE)
    yield
    translation.activate(settings.LANGUAGE_CODE)


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    """Wagtail caches site root paths, Django content types: a flushed database must not
    meet stale ones."""
    from django.contrib.contenttypes.models import ContentType
    from django.core.cache import cache

    from wagtail_client_billing.permissions import billing_request_policy, email_settings_policy

    cache.clear()
    # A transactional test's flush re-creates content types and permissions with new
    # ids; forget the ones cached in memory (each permission policy caches its own).
    ContentType.objects.clear_cache()
    for policy in (billing_request_policy, email_settings_policy):
        policy.__dict__.pop("_content_type", None)


@pytest.fixture
def page(browser) -> Iterator:
    """A fresh browser tab (own cookies) per test."""
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()
