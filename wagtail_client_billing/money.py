"""Stripe's currency facts and conversions; pure Python (the Stripe simulator uses it).

Money is an integer in the minor unit *as Stripe counts it* (https://docs.stripe.com/currencies):
three-decimal amounts end in 0; ISK and UGX are whole units sent as two-decimal values."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from functools import lru_cache

from babel.core import Locale, UnknownLocaleError
from babel.numbers import NumberPattern


class MoneyError(ValueError):
    """Base class of this module's errors."""


class UnknownCurrency(MoneyError):
    """The code is not a currency Stripe accepts for card payments."""

    def __init__(self, code: object) -> None:
        self.code = code
        super().__init__(f"Unknown or unsupported currency: {code!r}.")


class InvalidAmount(MoneyError):
    """The amount cannot be charged in this currency."""


class TooManyDecimals(InvalidAmount):
    """The amount has more decimals than Stripe accepts for the currency."""

    def __init__(self, message: str, *, currency: Currency) -> None:
        self.currency = currency
        super().__init__(message)


class _OutOfRange(InvalidAmount):
    bound: str  # "minimum" or "maximum": ``limit`` is that amount, in minor units
    wording: str

    def __init__(self, currency: Currency, amount: int) -> None:
        self.currency = currency
        self.amount = amount
        self.limit: int = getattr(currency, self.bound)
        super().__init__(
            f"Amount must be {self.wording} {format_amount(self.limit, currency.code)} "
            f"(Stripe's {self.bound} charge)."
        )


class AmountTooSmall(_OutOfRange):
    """The amount is under Stripe's minimum charge; ``limit`` is that minimum."""

    bound, wording = "minimum", "at least"


class AmountTooLarge(_OutOfRange):
    """The amount is over Stripe's maximum charge; ``limit`` is that maximum."""

    bound, wording = "maximum", "no more than"


@dataclass(frozen=True)
class Currency:
    """A currency as Stripe sees it: limits in minor units, amounts a multiple of ``step``."""

    code: str
    exponent: int
    minimum: int
    maximum: int
    step: int = 1

    @property
    def quantum(self) -> Decimal:  # the smallest chargeable amount: 0.01 USD, 0.010 KWD
        return Decimal(self.step).scaleb(-self.exponent)

    @property
    def display_decimals(self) -> int:  # none when only whole units can be charged
        return 0 if self.step == 10**self.exponent else self.exponent


ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf vnd vuv xaf xof xpf".split())
THREE_DECIMAL = frozenset("bhd jod kwd omr tnd".split())
# UGX is also on Stripe's zero-decimal list; the special case governs charges, so it wins.
WHOLE_UNITS_AS_TWO_DECIMAL = frozenset({"isk", "ugx"})

# Stripe's published minimum charge per settlement currency, in major units.
STRIPE_MINIMUMS: dict[str, str] = {
    "usd": "0.50", "aed": "2.00", "aud": "0.50", "bgn": "1.00", "brl": "0.50", "cad": "0.50",
    "chf": "0.50", "czk": "15.00", "dkk": "2.50", "eur": "0.50", "gbp": "0.30", "hkd": "4.00",
    "huf": "175.00", "inr": "0.50", "jpy": "50", "mxn": "10", "myr": "2", "nok": "3.00",
    "nzd": "0.50", "pln": "2.00", "ron": "2.00", "sek": "3.00", "sgd": "0.50", "thb": "10",
}  # fmt: skip

# Any other currency's minimum is about USD 0.50, from these rough rates (not for conversion).
APPROX_UNITS_PER_USD: dict[str, str] = {
    "afn": "70", "all": "92", "amd": "390", "ang": "1.79", "aoa": "915", "ars": "1200",
    "awg": "1.79", "azn": "1.70", "bam": "1.75", "bbd": "2", "bdt": "122", "bhd": "0.376",
    "bif": "2950", "bmd": "1", "bnd": "1.32", "bob": "6.9", "bsd": "1", "bwp": "13.5", "byn": "3.3",
    "bzd": "2", "cdf": "2850", "clp": "950", "cny": "7.2", "cop": "4100", "crc": "505", "cve": "97",
    "djf": "178", "dop": "62", "dzd": "132", "egp": "49", "etb": "130", "fjd": "2.25",
    "fkp": "0.76", "gel": "2.7", "gip": "0.76", "gmd": "72", "gnf": "8650", "gtq": "7.7",
    "gyd": "209", "hnl": "26", "htg": "131", "idr": "16500", "ils": "3.6", "isk": "125",
    "jmd": "160", "jod": "0.709", "kes": "129", "kgs": "87", "khr": "4000", "kmf": "430",
    "krw": "1400", "kwd": "0.307", "kyd": "0.83", "kzt": "520", "lak": "21600", "lbp": "89500",
    "lkr": "300", "lrd": "200", "lsl": "18", "mad": "9.1", "mdl": "17", "mga": "4500", "mkd": "54",
    "mmk": "2100", "mnt": "3580", "mop": "8", "mur": "46", "mvr": "15.4", "mwk": "1735",
    "mzn": "64", "nad": "18", "ngn": "1530", "nio": "36.8", "npr": "139", "omr": "0.385",
    "pab": "1", "pen": "3.6", "pgk": "4.1", "php": "57", "pkr": "282", "pyg": "7500", "qar": "3.64",
    "rsd": "103", "rub": "80", "rwf": "1440", "sar": "3.75", "sbd": "8.4", "scr": "14",
    "shp": "0.76", "sle": "22.7", "sos": "571", "srd": "38", "std": "22300", "szl": "18",
    "tjs": "10.5", "tnd": "2.95", "top": "2.37", "try": "40", "ttd": "6.8", "twd": "31",
    "tzs": "2600", "uah": "41.5", "ugx": "3650", "uyu": "40", "uzs": "12500", "vnd": "26000",
    "vuv": "120", "wst": "2.75", "xaf": "575", "xcd": "2.7", "xcg": "1.79", "xof": "575",
    "xpf": "105", "yer": "240", "zar": "18", "zmw": "24",
}  # fmt: skip

# Stripe: "The amount value supports up to 8 digits", except IDR (12) and INR (9).
MAX_DIGITS = {"idr": 12, "inr": 9}


def _round_up_nicely(value: Decimal) -> Decimal:
    """The smallest "round" figure (1, 1.5, 2, 2.5, 3, 4, 5, 6, 7.5 x 10^n) >= value."""
    magnitude = Decimal(1).scaleb(value.adjusted())
    mantissas = map(Decimal, "1 1.5 2 2.5 3 4 5 6 7.5 10".split())
    return next(m * magnitude for m in mantissas if m * magnitude >= value)


def _build_currency(code: str) -> Currency:
    exponent = 0 if code in ZERO_DECIMAL else 3 if code in THREE_DECIMAL else 2
    step = 10 if code in THREE_DECIMAL else 100 if code in WHOLE_UNITS_AS_TWO_DECIMAL else 1
    if code in STRIPE_MINIMUMS:
        minimum_major = Decimal(STRIPE_MINIMUMS[code])
    else:
        minimum_major = _round_up_nicely(Decimal("0.50") * Decimal(APPROX_UNITS_PER_USD[code]))
    minimum = int(minimum_major.scaleb(exponent).to_integral_value(ROUND_CEILING))
    minimum = max(step, -(-minimum // step) * step)  # a multiple of step, at least one step
    maximum = 10 ** MAX_DIGITS.get(code, 8) - 1
    maximum -= maximum % step
    return Currency(code=code, exponent=exponent, minimum=minimum, maximum=maximum, step=step)


CURRENCIES: dict[str, Currency] = {
    code: _build_currency(code) for code in sorted({*STRIPE_MINIMUMS, *APPROX_UNITS_PER_USD})
}


def get_currency(code: str) -> Currency:
    """The Stripe currency for an ISO 4217 code (any case), or raise UnknownCurrency."""
    if not isinstance(code, str) or code.strip().lower() not in CURRENCIES:
        raise UnknownCurrency(code)
    return CURRENCIES[code.strip().lower()]


def to_minor(amount: Decimal | int | str, code: str) -> int:
    """Convert a major-unit amount (Decimal("12.50")) to Stripe's integer minor units."""
    currency = get_currency(code)
    try:
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount).strip())
    except InvalidOperation:
        raise InvalidAmount(f"{amount!r} is not a number.") from None
    if isinstance(amount, float) or not value.is_finite():
        # Floats carry binary rounding errors; money must arrive as Decimal, int or str.
        raise InvalidAmount(f"{amount!r} is not a valid amount; pass a Decimal.")
    minor = value.scaleb(currency.exponent)
    if minor != minor.to_integral_value() or int(minor) % currency.step:
        upper = currency.code.upper()
        places = currency.display_decimals
        if places == 0:
            detail = f"{upper} amounts must be whole numbers"
        elif currency.step > 1:
            detail = (
                f"{upper} amounts can have at most {places - 1} decimal places "
                f"(Stripe requires the last of the {places} decimals to be 0)"
            )
        else:
            detail = f"{upper} amounts can have at most {places} decimal places"
        raise TooManyDecimals(f"{detail}; got {value}.", currency=currency)
    return int(minor)


class AmountNotUnderstood(MoneyError):
    """Typed text that is not an amount."""


class AmbiguousAmount(MoneyError):
    """Typed text that reads two ways ("1,000": one thousand, or one with 3 decimals)."""


def parse_amount(text: str, *, decimal_separator: str = ".") -> Decimal:
    """An amount typed as people write it ("49,90", "1 234,50", "1,234.50"), in major units.

    The last "." or "," is the decimal point unless repeated. One before exactly three digits
    that is not ``decimal_separator`` is ``AmbiguousAmount``: a wrong guess bills 1000x."""
    value = text.strip()
    for space in ("\u00a0", "\u202f", "'", "\u2019"):  # other thousands separators
        value = value.replace(space, " ")
    if not re.fullmatch(r"[0-9]+(?:[ .,][0-9]+)*", value):
        raise AmountNotUnderstood(f"{text!r} is not an amount.")
    integer, fraction, decimal = value, "", ""
    last = max(value.rfind("."), value.rfind(","))
    if last != -1 and value.count(value[last]) == 1:
        decimal, integer, fraction = value[last], value[:last], value[last + 1 :]
    # Plain digits, or digits grouped by threes with one and the same separator.
    if not re.fullmatch(r"[0-9]+|[0-9]{1,3}([ .,])[0-9]{3}(?:\1[0-9]{3})*", integer):
        raise AmountNotUnderstood(f"{text!r} is not an amount.")
    if integer.isdigit() and decimal and len(fraction) == 3 and decimal != decimal_separator:
        raise AmbiguousAmount(f"{text!r} reads two ways.")
    integer = re.sub("[ .,]", "", integer)
    return Decimal(f"{integer}.{fraction}" if decimal else integer)


def _checked_minor(minor: int, code: str) -> Currency:
    currency = get_currency(code)
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise InvalidAmount(f"{minor!r} is not an integer amount in minor units.")
    return currency


def to_major(minor: int, code: str) -> Decimal:
    """Convert Stripe's integer minor units back to a Decimal in major units."""
    return Decimal(minor).scaleb(-_checked_minor(minor, code).exponent)  # "12.50", not "12.5"


def format_amount(minor: int, code: str) -> str:
    """Human-readable amount such as "1,234.50 USD" or "50 JPY" (not localised)."""
    currency = get_currency(code)
    return f"{to_major(minor, code):,.{currency.display_decimals}f} {currency.code.upper()}"


def check_amount(minor: int, code: str) -> Currency:
    """Raise AmountTooSmall/AmountTooLarge/InvalidAmount unless Stripe can charge it."""
    currency = _checked_minor(minor, code)
    if minor < currency.minimum:
        raise AmountTooSmall(currency, minor)
    if minor > currency.maximum:
        raise AmountTooLarge(currency, minor)
    if minor % currency.step:
        raise TooManyDecimals(
            f"{currency.code.upper()} amounts in minor units must be a multiple of "
            f"{currency.step}; got {minor}.",
            currency=currency,
        )
    return currency


@lru_cache(maxsize=64)
def _currency_pattern(language: str) -> tuple[Locale, NumberPattern]:
    locale = Locale.parse(language)
    return locale, locale.currency_formats["standard"]


def format_money(minor: int, code: str, language: str | None = None) -> str:
    """Formatted by Babel for ``language`` (default: Django's), else ``format_amount``."""
    if language is None:
        # Local: this module stays free of Django.
        from django.utils.translation import get_language, to_locale

        language = to_locale(get_language() or "en")
    try:  # Babel's format_currency, with the locale's pattern parsed once (the sweep's labels)
        locale, pattern = _currency_pattern(language.replace("-", "_"))
        # ISO 4217 digits: JPY 0, KWD 3, EUR 2 (Stripe agrees but for its special cases).
        return pattern.apply(
            to_major(minor, code),
            locale,
            currency=get_currency(code).code.upper(),
            currency_digits=True,
        )
    except (UnknownLocaleError, ValueError):
        return format_amount(minor, code)
