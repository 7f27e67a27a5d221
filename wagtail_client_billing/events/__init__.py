"""Stripe events: the webhook endpoint, and applying each event once.

- ``view``: ``POST /billing/stripe/webhook/``: verify, store once, apply, answer.
- ``processing``: claim a stored event and run its handler in one transaction.
- ``handlers``: the ``{event type: handler}`` table; handlers get Stripe's typed objects.
- ``endpoints``: register this install's endpoint at Stripe for exactly those types.

To handle a new event type, write its handler in ``handlers`` and add it to ``HANDLERS``.
"""
