"""pytest fixtures for the bundled Stripe simulator.

Enable with ``pytest_plugins = ["wagtail_client_billing.testing.pytest_plugin"]``.

* ``stripe_simulator_server`` (session): one simulator per test session (per xdist
  worker), with short webhook back-offs.
* ``stripe_simulator``: the same simulator, reset before and after each test (fast).
* ``stripe_client``: a factory of real ``stripe.StripeClient`` pointed at the simulator.
* ``webhook_receiver``: a loopback server recording webhooks and serving landing pages.
* ``billing_stripe_settings``: points ``WAGTAIL_CLIENT_BILLING["STRIPE_API_BASE"]`` at
  the simulator (needs pytest-django).

Nothing here imports Django (or stripe) at import time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from .stripe_simulator import StripeSimulator
from .stripe_simulator.receiver import WebhookReceiver

if TYPE_CHECKING:
    import stripe

TEST_API_KEY = "sk_test_simulator"

# Short delays so retries and expiry happen within a test; no automatic settlement of
# delayed payments, so a test decides when and how they settle (``settle_async``).
SIMULATOR_TEST_SETTINGS: dict[str, Any] = {
    "webhook_retry_base": 0.05,
    "webhook_retry_max_delay": 0.5,
    "webhook_max_attempts": 4,
    "webhook_timeout": 3.0,
    "async_settle_delay": None,
    "tick_interval": 0.05,
}


@pytest.fixture(scope="session")
def stripe_simulator_server() -> Iterator[StripeSimulator]:
    """A Stripe simulator running for the whole test session."""
    simulator = StripeSimulator(**SIMULATOR_TEST_SETTINGS).start()
    yield simulator
    simulator.stop()


@pytest.fixture
def stripe_simulator(stripe_simulator_server: StripeSimulator) -> Iterator[StripeSimulator]:
    """The session's simulator with empty state for this test."""
    stripe_simulator_server.reset()
    yield stripe_simulator_server
    # Stop deliveries and timers of this test from reaching the next one.
    stripe_simulator_server.reset()


@pytest.fixture
def stripe_client(stripe_simulator: StripeSimulator) -> Callable[..., stripe.StripeClient]:
    """``stripe_client(api_key="sk_test_simulator", *, stripe_account=None, timeout=None,
    max_network_retries=0)``: a real ``stripe.StripeClient`` talking to the simulator."""
    import stripe

    def make(
        api_key: str = TEST_API_KEY,
        *,
        stripe_account: str | None = None,
        timeout: float | None = None,
        max_network_retries: int = 0,
    ) -> stripe.StripeClient:
        http_client = stripe.RequestsClient(timeout=timeout) if timeout is not None else None
        return stripe.StripeClient(
            api_key,
            stripe_account=stripe_account,
            base_addresses=stripe_simulator.base_addresses,
            max_network_retries=max_network_retries,
            http_client=http_client,
        )

    return make


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A loopback HTTP server recording POSTed webhooks and serving landing pages."""
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def billing_stripe_settings(
    request: pytest.FixtureRequest, stripe_simulator: StripeSimulator
) -> StripeSimulator:
    """Point the app's ``STRIPE_API_BASE`` at the simulator for this test; returns it."""
    settings = request.getfixturevalue("settings")  # pytest-django's
    current = dict(getattr(settings, "WAGTAIL_CLIENT_BILLING", None) or {})
    settings.WAGTAIL_CLIENT_BILLING = {**current, "STRIPE_API_BASE": stripe_simulator.url}
    return stripe_simulator
