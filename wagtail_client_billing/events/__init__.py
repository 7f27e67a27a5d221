"""Stripe events: the webhook endpoint, applying events once, their handlers, registration."""
