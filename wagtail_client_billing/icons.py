"""The app's own icon: Wagtail (7.4, 8) has no credit card (``register_icons`` hook)."""

#: The name of ``templates/wagtail_client_billing/icons/credit-card.svg``'s icon.
ICON = "wcb-credit-card"
SVG = "wagtail_client_billing/icons/credit-card.svg"
