"""Bill an agency's clients through Stripe, per Wagtail site."""

__version__ = "0.1.0.dev0"
