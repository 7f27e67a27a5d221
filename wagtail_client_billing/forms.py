"""Admin forms."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.validators import URLValidator
from django.utils.translation import gettext_lazy as _
from django_countries import countries

# Countries where Stripe accounts can be opened (https://stripe.com/global).
STRIPE_COUNTRIES = (
    "AE AT AU BE BG BR CA CH CY CZ DE DK EE ES FI FR GB GI GR HK HR HU IE IT JP LI LT LU "
    "LV MT MX MY NL NO NZ PL PT RO SE SG SI SK TH US"
).split()


def country_choices() -> list[tuple[str, str]]:
    """Stripe's countries with their names in the active language, sorted by name."""
    names = dict(countries)
    return sorted(((code, str(names[code])) for code in STRIPE_COUNTRIES), key=lambda c: c[1])


class PublicURLField(forms.URLField):
    """An absolute http(s) URL; ``https`` only when ``require_https`` is set."""

    default_validators = [URLValidator(schemes=["http", "https"])]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("assume_scheme", "https")
        kwargs.setdefault("max_length", 500)
        super().__init__(*args, **kwargs)


class ConnectForm(forms.Form):
    """Create client billing account: mode, country and the agency's two policy URLs."""

    test_mode = forms.BooleanField(
        label=_("Test mode"),
        required=False,
        initial=True,
        help_text=_("Try the whole process with Stripe's test data; no real money moves."),
    )
    country = forms.ChoiceField(label=_("Country"), choices=())
    privacy_policy_url = PublicURLField(label=_("Privacy policy URL"))
    terms_of_service_url = PublicURLField(label=_("Terms of service URL"))
    nonce = forms.CharField(widget=forms.HiddenInput)

    def __init__(self, *args: Any, direct: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["country"].choices = [("", "---------"), *country_choices()]
        if direct:
            # The platform's own account already has its country.
            del self.fields["country"]

    @property
    def mode(self) -> str:
        return "test" if self.cleaned_data.get("test_mode") else "live"

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if not cleaned.get("test_mode"):
            for name in ("privacy_policy_url", "terms_of_service_url"):
                url = cleaned.get(name)
                if url and not url.startswith("https://"):
                    self.add_error(name, _("In live mode this must be an https:// address."))
        return cleaned
