"""Stripe events: the webhook endpoint (``view``), applying each event once (``processing``),
the ``HANDLERS`` table (``handlers``) and registering the endpoint at Stripe (``endpoints``)."""
