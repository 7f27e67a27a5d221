"""pytest fixtures for the bundled Stripe simulator (being written)."""
