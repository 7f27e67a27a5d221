"""Admin forms."""

from __future__ import annotations

import unicodedata
from decimal import Decimal
from typing import Any

from babel.numbers import get_currency_name, get_territory_currencies
from django import forms
from django.core.validators import URLValidator, validate_email
from django.utils.formats import get_format
from django.utils.text import Truncator, capfirst
from django.utils.translation import get_language, to_locale
from django.utils.translation import gettext_lazy as _
from django_countries import countries

from . import money
from .billing.invoicing import MAX_FIELDS, MAX_NAME, MAX_VALUE
from .connections import new_idempotency_nonce
from .models import AgencyBillingSettings, BillingRequest, Refund, StripeConnection
from .models.agency import Mode
from .money import CURRENCIES

# Countries where Stripe accounts can be opened (https://stripe.com/global).
STRIPE_COUNTRIES = (
    "AE AT AU BE BG BR CA CH CY CZ DE DK EE ES FI FR GB GI GR HK HR HU IE IT JP LI LT LU "
    "LV MT MX MY NL NO NZ PL PT RO SE SG SI SK TH US"
).split()

INCOMPLETE_FORM = _(
    "This form arrived incomplete (it may have been cut off or changed on the way). "
    "Check the values below and send it again."
)


class NonceField(forms.CharField):
    """The hidden once-only key of a form: a retry or double click makes nothing twice."""

    widget = forms.HiddenInput
    default_error_messages = {"required": INCOMPLETE_FORM, "max_length": INCOMPLETE_FORM}


class FreshNonceMixin:
    """A form refused for its nonce comes back with a fresh one, so sending it again works."""

    data: Any
    _errors: Any

    def full_clean(self) -> None:
        super().full_clean()  # type: ignore[misc]
        if "nonce" in self._errors:
            self.data = self.data.copy()
            self.data["nonce"] = new_idempotency_nonce()


class PublicURLField(forms.URLField):
    default_validators = [URLValidator(schemes=["http", "https"])]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("assume_scheme", "https")
        kwargs.setdefault("max_length", 500)
        super().__init__(*args, **kwargs)


class ConnectForm(FreshNonceMixin, forms.ModelForm):
    test_mode = forms.BooleanField(
        label=_("Test mode"),
        required=False,
        initial=True,
        help_text=_("Try the whole process with Stripe's test data; no real money moves."),
    )
    nonce = NonceField(max_length=64)

    class Meta:
        model = StripeConnection
        fields = ["country", "privacy_policy_url", "terms_of_service_url"]
        field_classes = {
            "privacy_policy_url": PublicURLField,
            "terms_of_service_url": PublicURLField,
        }

    field_order = ["test_mode", *Meta.fields]

    def __init__(self, *args: Any, direct: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Blank on the model (a direct account may have no country), required here.
        self.fields["privacy_policy_url"].required = True
        self.fields["terms_of_service_url"].required = True
        if direct:  # the platform's own account already has its country
            del self.fields["country"]
        else:
            # django-countries sorts the names of the active language as people do
            # ("États-Unis" among the E's): with pyuca's collation if it is installed, else
            # by the names with their accents taken off; keep its order.
            stripe = [(code, str(name)) for code, name in countries if code in STRIPE_COUNTRIES]
            choices = [("", "---------"), *stripe]
            label = self.fields["country"].label
            self.fields["country"] = forms.ChoiceField(label=label, choices=choices)

    @property
    def mode(self) -> Mode:
        return Mode.TEST if self.cleaned_data.get("test_mode") else Mode.LIVE

    def clean(self) -> dict[str, Any]:
        super().clean()
        if not self.cleaned_data.get("test_mode"):
            require_https(self, "privacy_policy_url", "terms_of_service_url")
        return self.cleaned_data


def require_https(form: forms.BaseForm, *names: str) -> None:
    for name in names:
        url = form.cleaned_data.get(name)
        if url and not url.lower().startswith("https://"):
            form.add_error(name, _("In live mode this must be an https:// address."))


def currency_choices() -> list[tuple[str, str]]:
    """Stripe's currencies as "EUR – Euro", names in the active language."""
    locale = to_locale(get_language() or "en")
    choices = []
    for code in CURRENCIES:
        try:
            name = get_currency_name(code.upper(), locale=locale)
        except Exception:  # an unknown locale: the code alone is still clear
            name = code.upper()
        choices.append((code, f"{code.upper()} – {name}"))
    return sorted(choices)


# Currencies most agencies bill in, offered first after the account's and those used.
COMMON_CURRENCIES = ["eur", "usd", "gbp", "chf", "cad", "aud", "jpy"]


def country_currency(country: str) -> str:
    """The currency of a country (``"FR"`` -> ``"eur"``) if Stripe takes it, else ""."""
    try:
        codes = get_territory_currencies(country.upper(), tender=True) if country else []
    except Exception:  # an unknown country code: no default rather than an error
        codes = []
    return next((code.lower() for code in codes if code.lower() in CURRENCIES), "")


def grouped_currency_choices(first: list[str]) -> list[Any]:
    """The form's currencies: ``first`` then the common ones as "Most used", then the rest
    by name in the active language ("Euro (EUR)"), as people look for them."""
    locale = to_locale(get_language() or "en")
    names = {}
    for code in CURRENCIES:
        try:
            names[code] = capfirst(get_currency_name(code.upper(), locale=locale))
        except Exception:  # an unknown locale: the code alone is still clear
            names[code] = code.upper()
    top = list(dict.fromkeys(c for c in [*first, *COMMON_CURRENCIES] if c in CURRENCIES))
    rest = sorted((c for c in CURRENCIES if c not in top), key=lambda c: collation_key(names[c]))
    label = "%(name)s (%(code)s)"
    return [
        ("", "---------"),
        (_("Most used"), [(c, label % {"name": names[c], "code": c.upper()}) for c in top]),
        (_("All currencies"), [(c, label % {"name": names[c], "code": c.upper()}) for c in rest]),
    ]


def collation_key(text: str) -> str:
    """Sorts names as people do ("Émirats" among the E's), accents aside."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(char for char in decomposed if not unicodedata.combining(char)).casefold()


class AmountField(forms.CharField):
    """An amount as people type it ("49.90", "49,90", "1 234,50"), cleaned to a Decimal.

    Not ``<input type=number>``: a browser in a decimal-comma language may drop a comma
    it does not expect and send "4990" for "49,90", a hundred times the amount."""

    widget = forms.TextInput(
        attrs={"inputmode": "decimal", "autocomplete": "off", "maxlength": "32"}
    )

    def to_python(self, value: Any) -> Decimal | None:  # type: ignore[override]  # a Decimal
        text = super().to_python(value)
        if not text:
            return None
        if len(text) > 32:  # checked here: the validators see the Decimal, not the text
            raise forms.ValidationError(_("Enter an amount, e.g. 49.90."), code="invalid")
        try:
            amount = money.parse_amount(text, decimal_separator=get_format("DECIMAL_SEPARATOR"))
        except money.AmbiguousAmount:
            raise forms.ValidationError(
                _(
                    "“%(value)s” can be read two ways: write it without a thousands "
                    "separator, e.g. 1000 or 1000.50."
                ),
                params={"value": text},
                code="ambiguous",
            ) from None
        except money.AmountNotUnderstood:
            raise forms.ValidationError(_("Enter an amount, e.g. 49.90."), code="invalid") from None
        # More digits than any amount Stripe accepts in any currency (its largest maximum has 12).
        if len(amount.as_tuple().digits) > 16:
            raise forms.ValidationError(_("This amount is far too large."), code="max_digits")
        return amount


def too_many_decimals(error: money.TooManyDecimals) -> str:
    """Why an amount has too many decimals for its currency, in words."""
    places = error.currency.display_decimals
    params = {"currency": error.currency.code.upper(), "places": places, "all": places}
    if places == 0:
        message = _("%(currency)s amounts must be whole numbers.")
    elif error.currency.step > 1:
        params["places"] = places - 1
        message = _(
            "%(currency)s amounts can have at most %(places)s decimal places "
            "(the last of its %(all)s decimals must be 0)."
        )
    else:
        message = _("%(currency)s amounts can have at most %(places)s decimal places.")
    return message % params


class BillingRequestForm(FreshNonceMixin, forms.Form):
    """ "Add billing request": what the client is asked to pay and where to go after."""

    fields: dict[str, Any]
    email = forms.EmailField(label=_("Email"), max_length=254)
    currency = forms.ChoiceField(label=_("Currency"), choices=())
    amount = AmountField(label=_("Amount"), help_text=_("In the currency's main unit, e.g. 49.90."))
    description = forms.CharField(
        label=_("Description"),
        max_length=250,
        help_text=_("The product name the client sees on Stripe Checkout."),
    )
    success_url = PublicURLField(label=_("Success URL"), max_length=2000)
    cancel_url = PublicURLField(label=_("Cancel URL"), max_length=2000)
    billing_type = forms.ChoiceField(label=_("Billing type"))
    nonce = NonceField(max_length=64)
    # Shown (as a checkbox) only when the same request is already pending.
    send_anyway = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def __init__(
        self,
        *args: Any,
        require_https: bool = False,
        currencies_first: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.require_https = require_https
        self.fields["currency"].choices = grouped_currency_choices(currencies_first or [])
        self.fields["billing_type"].choices = BillingRequest.BillingType.choices

    def clean_description(self) -> str:
        # One line: it ends up in email headers.
        description = " ".join(self.cleaned_data["description"].split())
        if not description:
            raise forms.ValidationError(_("This field is required."))
        return description

    def clean(self) -> dict[str, Any]:
        cleaned = self.cleaned_data
        if self.require_https:
            require_https(self, "success_url", "cancel_url")
        currency, amount = cleaned.get("currency"), cleaned.get("amount")
        if not currency or amount is None:
            return cleaned
        code = currency.upper()
        try:
            minor = money.to_minor(amount, currency)
            money.check_amount(minor, currency)
        except money.TooManyDecimals as error:
            self.add_error("amount", too_many_decimals(error))
        except (money.AmountTooSmall, money.AmountTooLarge) as error:
            if isinstance(error, money.AmountTooSmall):
                bound = _("The minimum Stripe accepts in %(currency)s is %(limit)s.")
            else:
                bound = _("The maximum Stripe accepts in %(currency)s is %(limit)s.")
            limit = money.format_money(error.limit, currency)
            self.add_error("amount", bound % {"currency": code, "limit": limit})
        except money.InvalidAmount:
            self.add_error("amount", _("Enter a valid amount."))
        else:
            cleaned["amount_minor"] = minor
        return cleaned


class NotificationSettingsForm(forms.ModelForm):
    class Meta:
        model = AgencyBillingSettings
        fields = ["notify_payments", "notification_recipients"]
        widgets = {"notification_recipients": forms.Textarea(attrs={"rows": 3})}

    def clean_notification_recipients(self) -> str:
        lines = self.cleaned_data["notification_recipients"].replace(",", "\n").splitlines()
        addresses = [line.strip() for line in lines if line.strip()]
        for address in addresses:
            try:
                validate_email(address)
            except forms.ValidationError:
                raise forms.ValidationError(
                    _("%(address)s is not a valid email address.") % {"address": address}
                ) from None
        return "\n".join(addresses)


class InvoiceSettingsForm(forms.ModelForm):
    """ "Invoices and receipts": what Stripe prints on invoices and asks for in Checkout,
    checked against Stripe's limits so that no billing request fails on them later."""

    class Meta:
        model = AgencyBillingSettings
        fields = [
            "create_invoices",
            "invoice_footer",
            "invoice_custom_fields",
            "collect_tax_id",
            "collect_billing_address",
        ]
        widgets = {
            "invoice_footer": forms.Textarea(attrs={"rows": 3}),
            "invoice_custom_fields": forms.Textarea(attrs={"rows": 4}),
        }

    def clean_invoice_custom_fields(self) -> str:
        lines = [line.strip() for line in self.cleaned_data["invoice_custom_fields"].splitlines()]
        lines = [line for line in lines if line]
        if len(lines) > MAX_FIELDS:
            raise forms.ValidationError(
                _("Stripe prints at most %(max)s fields: there are %(count)s lines.")
                % {"max": MAX_FIELDS, "count": len(lines)}
            )
        cleaned, problems = [], []
        for number, line in enumerate(lines, start=1):
            name, colon, value = (part.strip() for part in line.partition(":"))
            params = {"number": number, "line": Truncator(line).chars(50), "max": MAX_NAME}
            if not colon or not name or not value:
                message = _("Line %(number)s (“%(line)s”): write it as “Name: value”.")
            elif len(name) > MAX_NAME:
                message = _(
                    "Line %(number)s (“%(line)s”): the name can have at most %(max)s characters."
                )
            elif len(value) > MAX_VALUE:
                params["max"] = MAX_VALUE
                message = _(
                    "Line %(number)s (“%(line)s”): the value can have at most %(max)s characters."
                )
            else:
                cleaned.append(f"{name}: {value}")
                continue
            problems.append(forms.ValidationError(message % params))
        if problems:
            raise forms.ValidationError(problems)
        return "\n".join(cleaned)


class RefundForm(FreshNonceMixin, forms.Form):
    """ "Refund": how much of the payment to give back (at most what remains), and why."""

    amount = AmountField(label=_("Amount to refund"))
    reason = forms.ChoiceField(
        label=_("Reason"),
        choices=Refund.Reason.choices,
        initial=Refund.Reason.REQUESTED_BY_CUSTOMER,
        help_text=_("Stripe keeps it with the refund; the client does not see it."),
    )
    nonce = NonceField(max_length=64)

    def __init__(self, *args: Any, currency: str, remaining: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.currency, self.remaining = currency, remaining
        self.fields["amount"].help_text = _("At most %(remaining)s.") % {
            "remaining": money.format_money(remaining, currency)
        }

    def clean_amount(self) -> int:
        try:
            minor = money.to_minor(self.cleaned_data["amount"], self.currency)
        except money.TooManyDecimals as error:
            raise forms.ValidationError(too_many_decimals(error)) from None
        if minor <= 0:
            raise forms.ValidationError(_("Enter an amount greater than zero."))
        if minor > self.remaining:
            raise forms.ValidationError(
                _("At most %(remaining)s can be refunded.")
                % {"remaining": money.format_money(self.remaining, self.currency)}
            )
        return minor
