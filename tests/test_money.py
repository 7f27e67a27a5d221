"""Stripe's currency facts in wagtail_client_billing.money (pure Python, no database)."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import pytest

from wagtail_client_billing import money
from wagtail_client_billing.money import (
    CURRENCIES,
    AmountTooLarge,
    AmountTooSmall,
    Currency,
    InvalidAmount,
    TooManyDecimals,
    UnknownCurrency,
    check_amount,
    format_amount,
    get_currency,
    to_major,
    to_minor,
)

ZERO_DECIMAL = "BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF VND VUV XAF XOF XPF".split()
THREE_DECIMAL = "BHD JOD KWD OMR TND".split()


def test_module_does_not_import_django():
    # The simulator imports this module in processes that have no Django settings.
    code = "import sys, wagtail_client_billing.money; print('django' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_currency_is_frozen():
    with pytest.raises(AttributeError):
        CURRENCIES["usd"].minimum = 1  # type: ignore[misc]


def test_keys_are_lower_case_codes_of_their_currency():
    assert len(CURRENCIES) > 130
    for code, currency in CURRENCIES.items():
        assert code == code.lower() == currency.code
        assert len(code) == 3
        assert 0 < currency.minimum < currency.maximum
        assert currency.minimum % currency.step == 0
        assert currency.maximum % currency.step == 0


@pytest.mark.parametrize(
    ("code", "minimum"),
    [
        ("usd", 50),
        ("eur", 50),
        ("gbp", 30),
        ("jpy", 50),
        ("chf", 50),
        ("hkd", 400),
        ("huf", 17500),
        ("mxn", 1000),
        ("czk", 1500),
        ("dkk", 250),
        ("sek", 300),
        ("thb", 1000),
    ],
)
def test_minimum_is_stripes_published_minimum(code, minimum):
    assert get_currency(code).minimum == minimum


@pytest.mark.parametrize("code", ["krw", "vnd", "idr", "cop", "kwd", "isk", "ngn", "try"])
def test_other_minimums_are_about_half_a_dollar(code):
    currency = get_currency(code)
    rate = Decimal(money.APPROX_UNITS_PER_USD[code])
    in_usd = to_major(currency.minimum, code) / rate
    assert Decimal("0.50") <= in_usd < Decimal("1.00")


@pytest.mark.parametrize("code", ZERO_DECIMAL)
def test_zero_decimal_currencies(code):
    currency = get_currency(code)
    assert (currency.exponent, currency.step) == (0, 1)
    assert to_minor(Decimal("1234"), code) == 1234
    with pytest.raises(TooManyDecimals, match="whole numbers"):
        to_minor(Decimal("1.5"), code)


@pytest.mark.parametrize("code", THREE_DECIMAL)
def test_three_decimal_currencies_need_a_last_zero(code):
    currency = get_currency(code)
    assert (currency.exponent, currency.step) == (3, 10)
    assert to_minor(Decimal("5.12"), code) == 5120
    assert to_minor(Decimal("5.120"), code) == 5120
    with pytest.raises(TooManyDecimals, match="last of the 3 decimals to be 0"):
        to_minor(Decimal("5.124"), code)
    with pytest.raises(TooManyDecimals):
        check_amount(5124, code)
    assert check_amount(5120, code) is currency


@pytest.mark.parametrize("code", ["isk", "ugx"])
def test_isk_and_ugx_are_whole_units_sent_as_two_decimals(code):
    # Stripe: "to charge 5 ISK, provide an amount value of 500".
    assert to_minor(Decimal("5000"), code) == 500000
    assert to_major(500000, code) == Decimal("5000")
    with pytest.raises(TooManyDecimals, match="whole numbers"):
        to_minor(Decimal("5000.50"), code)
    with pytest.raises(TooManyDecimals):
        check_amount(500050, code)
    assert format_amount(500000, code) == f"5,000 {code.upper()}"


@pytest.mark.parametrize("code", ["huf", "twd"])
def test_huf_and_twd_charge_two_decimals(code):
    # Only payouts are zero-decimal for these; charges take two decimals.
    currency = get_currency(code)
    assert (currency.exponent, currency.step) == (2, 1)
    assert to_minor(Decimal("1000.45"), code) == 100045


def test_maximum_is_eight_digits_except_idr_and_inr():
    assert get_currency("usd").maximum == 99_999_999
    assert get_currency("jpy").maximum == 99_999_999
    assert get_currency("idr").maximum == 999_999_999_999
    assert get_currency("inr").maximum == 999_999_999
    assert get_currency("kwd").maximum == 99_999_990


def test_get_currency_accepts_any_case_and_rejects_unknown():
    assert get_currency("EUR") is get_currency("eur") is get_currency(" Eur ")
    for bad in ["xyz", "", "euro", None, 978]:
        with pytest.raises(UnknownCurrency) as excinfo:
            get_currency(bad)  # type: ignore[arg-type]
        assert isinstance(excinfo.value, ValueError)
    with pytest.raises(UnknownCurrency, match="'xyz'"):
        to_minor(Decimal("1"), "xyz")


def test_to_minor_and_back():
    assert to_minor(Decimal("12.50"), "usd") == 1250
    assert to_minor(Decimal("12.5"), "usd") == 1250
    assert to_minor(12, "usd") == 1200
    assert to_minor("0.30", "gbp") == 30
    assert to_major(1250, "usd") == Decimal("12.50")
    assert str(to_major(1250, "usd")) == "12.50"
    assert str(to_major(5120, "kwd")) == "5.120"
    assert str(to_major(50, "jpy")) == "50"


def test_to_minor_rejects_too_many_decimals_with_a_clear_message():
    with pytest.raises(TooManyDecimals) as excinfo:
        to_minor(Decimal("1.001"), "usd")
    assert str(excinfo.value) == "USD amounts can have at most 2 decimal places; got 1.001."
    assert excinfo.value.currency is get_currency("usd")
    assert isinstance(excinfo.value, ValueError)


@pytest.mark.parametrize("bad", [1.5, "abc", Decimal("NaN"), Decimal("Infinity")])
def test_to_minor_rejects_floats_and_non_numbers(bad):
    with pytest.raises(InvalidAmount):
        to_minor(bad, "usd")


def test_check_amount_names_the_limit():
    with pytest.raises(AmountTooSmall) as small:
        check_amount(49, "usd")
    assert small.value.limit == 50
    assert "0.50 USD" in str(small.value)
    with pytest.raises(AmountTooSmall, match="0.30 GBP"):
        check_amount(29, "gbp")
    with pytest.raises(AmountTooLarge) as large:
        check_amount(100_000_000, "eur")
    assert large.value.limit == 99_999_999
    assert "999,999.99 EUR" in str(large.value)
    assert check_amount(50, "usd") == get_currency("usd")
    assert check_amount(99_999_999, "usd").code == "usd"
    with pytest.raises(InvalidAmount):
        check_amount(True, "usd")  # type: ignore[arg-type]
    with pytest.raises(InvalidAmount):
        check_amount("50", "usd")  # type: ignore[arg-type]


def test_format_amount():
    assert format_amount(123450, "usd") == "1,234.50 USD"
    assert format_amount(50, "jpy") == "50 JPY"
    assert format_amount(5120, "kwd") == "5.120 KWD"


def test_quantum():
    assert get_currency("usd").quantum == Decimal("0.01")
    assert get_currency("jpy").quantum == Decimal("1")
    assert get_currency("kwd").quantum == Decimal("0.01")
    assert get_currency("isk").quantum == Decimal("1")
    assert Currency("usd", 2, 50, 99_999_999).step == 1


@pytest.mark.parametrize(
    ("typed", "separator", "expected"),
    [
        ("49.90", ".", "49.90"),
        ("49,90", ".", "49.90"),  # a decimal comma is read as one even in English
        ("1 234,50", ",", "1234.50"),
        ("1\u202f234,5", ",", "1234.5"),
        ("1,234.50", ".", "1234.50"),
        ("1.234,50", ",", "1234.50"),
        ("1'234.50", ".", "1234.50"),
        ("1,000,000", ".", "1000000"),
        ("1.000.000", ",", "1000000"),
        ("12.340", ".", "12.340"),
        ("1,000", ",", "1.000"),  # French: one, with three decimals
        (" 7 ", ".", "7"),
    ],
)
def test_amounts_are_parsed_as_people_type_them(typed, separator, expected):
    assert money.parse_amount(typed, decimal_separator=separator) == Decimal(expected)


@pytest.mark.parametrize(
    ("typed", "separator", "error"),
    [
        ("1,000", ".", money.AmbiguousAmount),  # a thousand, or one?
        ("12.340", ",", money.AmbiguousAmount),
        ("49 90", ".", money.AmountNotUnderstood),  # not a group of three: a typo
        ("1,23,456", ".", money.AmountNotUnderstood),
        ("1.234.56", ".", money.AmountNotUnderstood),
        ("1 234.567,5", ".", money.AmountNotUnderstood),
        ("12,,5", ".", money.AmountNotUnderstood),
        ("1e3", ".", money.AmountNotUnderstood),
        ("-5", ".", money.AmountNotUnderstood),
        ("€49.90", ".", money.AmountNotUnderstood),
        ("", ".", money.AmountNotUnderstood),
    ],
)
def test_amounts_that_read_two_ways_or_none_are_refused(typed, separator, error):
    with pytest.raises(error):
        money.parse_amount(typed, decimal_separator=separator)
