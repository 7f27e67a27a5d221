"""Testing helpers shipped with the app: a local Stripe simulator and pytest fixtures.

Nothing here imports Django, so the simulator also runs on its own
(``python -m wagtail_client_billing.testing.stripe_simulator``).
"""
