"""Fuzzing every form and query string (issue 7, "Bad input").

Hypothesis generates values for the admin forms (Add billing request, a site's Email
settings, Send a test email, Create client billing account, the agency's
notifications, Renew, the mode switch), the client's pay page and its "Ask for a new
link", and the filters and search of the Client billing listing and the agency's
overview. Whatever is sent: never an unhandled error; bad input is answered with an
error message and creates or changes nothing; what the user typed is shown again;
good input is accepted and stored as typed.

Each generated value carries what is known of it: surely bad (``BAD``), surely good
(``GOOD``) or anything (``ANY``, judged by the form). A form given a surely bad value
must refuse it, one given only surely good values must accept them. The form classes
take most examples (cheap); the pages take fewer, each a full request through the
admin (a page costs as much as a hundred form validations).

A page example runs in a transaction rolled back at its end; a form-class example
runs outside any, and is checked to write nothing. Examples per test (each checked to
have really run; the total is checked in ``tests/test_fuzz_webhooks.py``):

===============================================================  =====
test_billing_request_form_refuses_bad_and_keeps_good_values        600
test_add_billing_request_page                                       20
test_email_settings_form_refuses_bad_and_keeps_good_values         900
test_email_settings_page                                            20
test_send_a_test_email                                              40
test_connect_form_refuses_bad_and_keeps_good_values              1,600
test_connect_page                                                   20
test_notification_settings                                         120
test_mode_switch_and_mode_urls                                      60
test_renew_confirmation                                             25
test_pay_page_and_new_link_with_generated_tokens                   250
test_listing_and_overview_query_strings                             60
===============================================================  =====
This module                                                      3,715
===============================================================  =====

A form refused only for its hidden nonce (found here: it came back without a message
and failed again when resent) now says so and comes back with a fresh nonce.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from django.contrib.messages import constants as message_levels
from django.contrib.messages import get_messages
from django.core import mail
from django.core.signals import got_request_exception
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from hypothesis import assume, example, given
from hypothesis import strategies as st
from wagtail.models import ModelLogEntry

from tests.factories import (
    connect_ready_account,
    grant_billing,
    grant_email_settings,
    make_user,
    request_details,
)
from tests.test_fuzz_webhooks import (  # noqa: F401 (the autouse fixture counts here too)
    EXAMPLES,
    _counts_examples,
    fuzz,
)
from wagtail_client_billing import billing, money
from wagtail_client_billing.forms import STRIPE_COUNTRIES, BillingRequestForm, ConnectForm
from wagtail_client_billing.models import (
    AgencyBillingSettings,
    BillingRequest,
    OutgoingEmail,
    SiteEmailSettings,
    StripeConnection,
)
from wagtail_client_billing.views.email_settings import SiteEmailSettingsForm

pytestmark = pytest.mark.django_db

Status = BillingRequest.Status
ADD = reverse("wagtail_client_billing_requests:add")
INDEX = reverse("wagtail_client_billing_requests:index")
INDEX_RESULTS = reverse("wagtail_client_billing_requests:index_results")
OVERVIEW = reverse("wagtail_client_billing_requests:overview")
OVERVIEW_RESULTS = reverse("wagtail_client_billing_requests:overview_results")
EMAIL_SETTINGS = reverse("wagtail_client_billing_requests:email_settings")
TEST_EMAIL = reverse("wagtail_client_billing_requests:email_settings_test")
ACTION_TEST_EMAIL = "wagtail_client_billing.email_settings.test"
CONNECT = reverse("wagtail_client_billing_agency:connect")
NOTIFICATIONS = reverse("wagtail_client_billing_agency:notifications")
SWITCH_MODE = reverse("wagtail_client_billing_agency:switch_mode")
STORED_PASSWORD = "stored-secret-pw"

# Labelled values ------------------------------------------------------------------------

GOOD, BAD, ANY = "good", "bad", "any"
OMIT = None  # a field left out of the POST


def good(*values: Any) -> st.SearchStrategy:
    return st.sampled_from(values).map(lambda value: (value, GOOD))


def bad(*values: Any) -> st.SearchStrategy:
    return st.sampled_from(values).map(lambda value: (value, BAD))


def any_of(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return strategy.map(lambda value: (value, ANY))


def labelled(strategy: st.SearchStrategy, label: str) -> st.SearchStrategy:
    return strategy.map(lambda value: (value, label))


# Text that can be sent in a form (no lone surrogates: they cannot be encoded).
TEXT = st.text(max_size=30)
LOWER = "abcdefghijklmnopqrstuvwxyz"
# Tails that stay after stripping: a header injection, a NUL, a space, a line separator.
TAILS = ("\r\nBcc: victim@evil.test", "\nX-Injected: 1", "\x00", " x", "\tx", "\u2028x")

EMAILS = st.one_of(
    good(
        "client@example.com",
        "a.b+c@sub.example.org",
        "x_y@xn--bcher-kva.example",
        "UPPER@EXAMPLE.COM",
        "o'brien@example.ie",
    ),
    labelled(
        st.builds(
            "{}@{}.{}".format,
            st.text(LOWER + "0123456789", min_size=1, max_size=20),
            st.text(LOWER, min_size=1, max_size=15),
            st.sampled_from(["com", "test", "fr", "museum"]),
        ),
        GOOD,
    ),
    bad(
        "",
        "not-an-email",
        "@example.com",
        "a@",
        "a@b",
        "a@@b.test",
        "a b@example.com",
        "é@example.com",
        "<a@b.test>",
        "a@b.test>",
        "a@-b.test",
        "a@" + "b" * 250 + ".com",
        "a@exa mple.com",
    ),
    st.builds(
        lambda address, tail: (address + tail, BAD),
        st.just("client@example.com"),
        st.sampled_from(TAILS[:-1]),
    ),
    # Django's EmailValidator reads "example.com\u2028x" as an internationalised domain.
    any_of(st.sampled_from(["client@example.com\u2028x", "client@example.com\r"])),
    any_of(TEXT),
)
OPTIONAL_EMAILS = st.one_of(EMAILS.filter(lambda value: value[0] != ""), good(""))

URLS = st.one_of(
    good(
        "https://acme.test/thanks/",
        "https://acme.test/cancel/?from=billing#top",
        "http://example.com/a?b=c",
        "https://bücher.example/pfad",
        "https://a.test:8443/x",
        "HTTPS://ACME.TEST/",
    ),
    bad(
        "",
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "data:text/html,<script>x</script>",
        "ftp://acme.test/",
        "/relative/",
        "mailto:a@b.test",
        "file:///etc/passwd",
        "vbscript:msgbox(1)",
        "http://",
        "https://",
        "https://acme.test/ space",
        "https://" + "a" * 2001 + ".test/",
        "https://acme.test/\x00",
    ),
    st.builds(
        lambda url, tail: (url + tail, BAD), st.just("https://acme.test/ok"), st.sampled_from(TAILS)
    ),
    any_of(TEXT | st.builds("{}{}".format, st.sampled_from(["https://", "http://", "//"]), TEXT)),
)

NONCES = st.one_of(
    labelled(st.text("0123456789abcdef", min_size=1, max_size=64), GOOD),
    bad("", "x" * 65, "a\x00b"),
    any_of(TEXT),
)

CURRENCY_CODES = sorted(money.CURRENCIES)


@dataclass(frozen=True)
class Amount:
    """A generated amount: the text sent, and what is known of it."""

    text: str
    label: str
    minor: int | None = None  # the amount in minor units, when it is surely good
    # "field": refused whatever the currency; "range": refused for this currency only.
    kind: str = "field"


# Strategies are built once, here: a strategy made inside a draw costs more than the draw.
NATURALS = st.integers(0, 2**40)
ODD_AMOUNTS = st.sampled_from(
    [
        "",
        "-5",
        "-0.50",
        "abc",
        "NaN",
        "sNaN",
        "-sNaN",
        "Infinity",
        "-Infinity",
        "49 90",
        "1,23,456",
        "1.234.56",
        "12,,5",
        "1 234.567,5",
        "€49.90",
        "4990 EUR",
        "0x10",
        "1e999999999",
        "1e-999999999",
        "9" * 17,
        "1e20",
        "12..5",
        ".",
        "+-1",
        "--1",
        "4\u00a049",
        "49.90\x00",
    ]
)
ANY_AMOUNTS = TEXT | st.decimals(allow_nan=True).map(str) | st.floats().map(repr)
AMOUNT_KINDS = st.sampled_from(["good"] * 4 + ["small", "large", "precise", "odd", "odd", "any"])
GOOD_AMOUNT_FORMS = st.sampled_from(["{:f}", " {:f} "])


def _between(low: int, high: int, n: int) -> int:
    return low + n % (high - low + 1)


@st.composite
def amounts(draw: st.DrawFn, currency: str | None) -> Amount:
    """An amount for ``currency`` (None: an unknown currency)."""
    info = money.CURRENCIES.get(currency or "")
    kind = draw(AMOUNT_KINDS)
    if info is None and kind in ("good", "small", "large", "precise"):
        kind = "any"
    n = draw(NATURALS)
    if kind == "good":  # a multiple of the currency's step between its limits
        minor = _between(-(-info.minimum // info.step), info.maximum // info.step, n) * info.step
        text = draw(GOOD_AMOUNT_FORMS).format(Decimal(minor).scaleb(-info.exponent))
        return Amount(text, GOOD, minor)
    if kind == "small":  # under the minimum (zero included)
        minor = _between(0, info.minimum - 1, n)
        minor -= minor % info.step
        return Amount(f"{Decimal(minor).scaleb(-info.exponent):f}", BAD, kind="range")
    if kind == "large":  # over the maximum
        minor = _between(info.maximum + 1, 10**15, n)
        return Amount(f"{Decimal(minor).scaleb(-info.exponent):f}", BAD, kind="range")
    if kind == "precise":  # one decimal more than the currency has
        minor = _between(info.minimum, info.maximum, n) * 10 + 1 + n % 9
        return Amount(f"{Decimal(minor).scaleb(-info.exponent - 1):f}", BAD, kind="range")
    if kind == "odd":
        return Amount(draw(ODD_AMOUNTS), BAD)
    return Amount(draw(ANY_AMOUNTS), ANY)


def post_data(fields: dict[str, tuple[Any, str]]) -> dict[str, str]:
    """The POST body: every field not left out."""
    return {name: value for name, (value, _) in fields.items() if value is not OMIT}


def surely_bad(fields: dict[str, tuple[Any, str]]) -> list[str]:
    return [name for name, (_, label) in fields.items() if label == BAD]


def all_good(fields: dict[str, tuple[Any, str]]) -> bool:
    return all(label == GOOD for _, label in fields.values())


ONE_IN_TEN = st.sampled_from([True] + [False] * 9)


def omittable(strategy: st.SearchStrategy, required: bool = True) -> st.SearchStrategy:
    """The field's values, or (one time in ten) the field left out: bad if required."""
    left_out = st.just((OMIT, BAD if required else GOOD))
    return ONE_IN_TEN.flatmap(lambda omitted: left_out if omitted else strategy)


CURRENCIES = st.one_of(
    good(*CURRENCY_CODES),
    good(*CURRENCY_CODES),
    good("eur", "jpy", "kwd", "isk", "usd"),
    bad("", "EUR", "eur ", "xyz", "e\x00ur", "euro", "€"),
    any_of(TEXT),
)
DESCRIPTIONS = omittable(
    st.one_of(
        labelled(
            st.text(min_size=1, max_size=80).filter(
                lambda text: text.split() and "\x00" not in text
            ),
            GOOD,
        ),
        bad("", "   ", "\t\r\n", "x" * 251, "a\x00b", "\x1f"),
        any_of(TEXT),
    )
)
BILLING_TYPES = omittable(
    st.one_of(
        good("one_time", "monthly", "yearly"),
        bad("", "weekly", "ONE_TIME", "one_time ", "0"),
        any_of(TEXT),
    )
)
REQUIRED_EMAILS, REQUIRED_URLS = omittable(EMAILS), omittable(URLS)
REQUIRED_NONCES = omittable(NONCES)


@st.composite
def billing_request_forms(draw: st.DrawFn) -> tuple[dict[str, tuple[Any, str]], Amount]:
    currency = draw(CURRENCIES)
    amount = draw(amounts(currency[0] if currency[1] == GOOD else None))
    fields = {
        "email": draw(REQUIRED_EMAILS),
        "currency": (OMIT, BAD) if draw(ONE_IN_TEN) else currency,
        "amount": (OMIT, BAD) if draw(ONE_IN_TEN) else (amount.text, amount.label),
        "description": draw(DESCRIPTIONS),
        "success_url": draw(REQUIRED_URLS),
        "cancel_url": draw(REQUIRED_URLS),
        "billing_type": draw(BILLING_TYPES),
        "nonce": draw(REQUIRED_NONCES),
    }
    return fields, amount


def _check_billing_request_form(form, fields, amount: Amount, require_https: bool) -> None:
    """The form refuses every surely bad value, accepts surely good ones, keeps input."""
    valid = form.is_valid()
    badly = set(surely_bad(fields))
    if require_https:
        badly |= {
            name
            for name in ("success_url", "cancel_url")
            if fields[name][1] == GOOD and not fields[name][0].lower().startswith("https://")
        }
    currency_ok = "currency" not in form.errors and fields["currency"][0] is not OMIT
    if amount.kind == "range" and not currency_ok and fields["amount"][0] is not OMIT:
        badly.discard("amount")  # its limits cannot be checked without a currency
    assert not (badly and valid), f"accepted although {sorted(badly)} are bad"
    assert badly <= set(form.errors), f"{sorted(badly - set(form.errors))} have no error"
    for name, errors in form.errors.items():
        assert errors and all(str(error).strip() for error in errors), name
    if all_good(fields) and not badly:
        assert valid, f"good values refused: {form.errors.as_data()}"
    if valid:
        data = form.cleaned_data
        assert data["email"] == fields["email"][0].strip()
        assert "\n" not in data["email"] and "\r" not in data["email"]
        assert data["description"] == " ".join(fields["description"][0].split())
        for name in ("success_url", "cancel_url"):
            assert data[name].lower().startswith("https://" if require_https else "http")
        minor = data["amount_minor"]
        info = money.CURRENCIES[data["currency"]]
        assert info.minimum <= minor <= info.maximum and minor % info.step == 0
        if amount.minor is not None:
            assert minor == amount.minor


@contextmanager
def form_alone(name: str) -> Iterator[None]:
    """One example of a form class on its own; counted if it passed.

    Validating a form must not write to the database: checked, so that there is
    nothing to roll back between examples (and no transaction to pay for).
    """
    writes: list[str] = []

    def watch(execute, sql, params, many, context):
        if sql.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE"):
            writes.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(watch):
        yield
    assert not writes, f"validating the form wrote: {writes}"
    EXAMPLES[name] += 1


@fuzz(600)
@given(form=billing_request_forms(), require_https=st.booleans())
def test_billing_request_form_refuses_bad_and_keeps_good_values(form, require_https):
    fields, amount = form
    with form_alone("test_billing_request_form_refuses_bad_and_keeps_good_values"):
        bound = BillingRequestForm(data=post_data(fields), require_https=require_https)
        _check_billing_request_form(bound, fields, amount, require_https)


# The admin pages ---------------------------------------------------------------------------


#: Each test's state before its first example, which every example starts from again.
BASELINES: dict[str, dict[str, list]] = {}


@pytest.fixture(autouse=True)
def _fresh_baseline() -> None:
    BASELINES.clear()


class Example:
    """One running example: the state it started from, and the SQL writes it made."""

    def __init__(self, name: str) -> None:
        if name not in BASELINES:
            BASELINES[name] = state()
        self.name, self.before, self.writes = name, BASELINES[name], 0

    def count_writes(self, execute, sql, params, many, context):
        if sql.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE"):
            self.writes += 1
        return execute(sql, params, many, context)

    def assert_unchanged(self) -> None:
        """Nothing changed: no mail, and the database as it was.

        A request that wrote nothing (an UPDATE of the session aside, which the state
        leaves out) cannot have changed the database: the state is read again only
        after writes, and for one example in ten.
        """
        assert mail.outbox == []
        if self.writes or EXAMPLES[self.name] % 10 == 0:
            assert state() == self.before


@contextmanager
def isolated(name: str) -> Iterator[Example]:
    """One example, in a transaction rolled back at its end; counted if it passed."""
    mail.outbox.clear()
    # The test's own rollback, not the app's transaction: marked as Django marks a test
    # case's, so the app may call Stripe inside it (stripe_api refuses real ones).
    rollback = transaction.atomic()
    rollback._from_testcase = True
    with rollback:
        example = Example(name)
        with connection.execute_wrapper(example.count_writes):
            yield example
        transaction.set_rollback(True)
    mail.outbox.clear()
    EXAMPLES[name] += 1


@pytest.fixture
def unhandled() -> Iterator[list[BaseException]]:
    """Exceptions no view handled (the client answers them as 500s)."""
    errors: list[BaseException] = []

    def record(sender, **kwargs):
        errors.append(sys.exc_info()[1])

    got_request_exception.connect(record, weak=False, dispatch_uid="fuzz-forms")
    yield errors
    got_request_exception.disconnect(dispatch_uid="fuzz-forms")


@pytest.fixture(autouse=True)
def _quiet(caplog) -> None:
    """Thousands of refused requests: keep their log lines out of the report."""
    for name in ("django", "django-q", "wagtail_client_billing"):
        caplog.set_level(logging.CRITICAL, logger=name)


@pytest.fixture
def stripe_timeout():
    return 5


def client_of(user) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


@pytest.fixture
def editor(sites) -> Client:
    """An editor who may bill for Acme only, and edit its email settings."""
    user = make_user("acme-editor")
    grant_billing(user, sites[0])
    grant_email_settings(user, sites[0])
    return client_of(user)


@pytest.fixture
def boss(db) -> Client:
    AgencyBillingSettings.load()  # made on first use (by any admin page): make it now
    user = make_user("boss", superuser=True)
    user.email = "boss@agency.test"
    user.save(update_fields=["email"])
    return client_of(user)


def state() -> dict[str, list]:
    """What a form could create or change."""
    return {
        "requests": list(
            BillingRequest.objects.order_by("pk").values_list(
                "pk",
                "status",
                "email",
                "amount",
                "currency",
                "form_nonce",
                "expired_at",
                "client_asked_at",
                "paid_at",
            )
        ),
        "connections": list(StripeConnection.objects.order_by("pk").values()),
        "email_settings": list(SiteEmailSettings.objects.order_by("pk").values()),
        "agency": list(AgencyBillingSettings.objects.values()),
        "log": list(ModelLogEntry.objects.order_by("pk").values_list("pk", "action")),
        "notifications": list(
            OutgoingEmail.objects.exclude(kind__in=("request", "reminder"))
            .order_by("pk")
            .values_list("pk", "key")
        ),
        "mail": [(message.subject, tuple(message.to)) for message in mail.outbox],
    }


def at_stripe(simulator) -> int:
    """How many objects the simulated Stripe holds (sessions, accounts, links...)."""
    return len(simulator.engine.store.records)


def send(client: Client, method: str, url: str, unhandled: list, data: Any = None, **extra):
    # Messages not shown yet wait in a cookie: an example must not see the last one's.
    client.cookies.pop("messages", None)
    unhandled.clear()
    response = getattr(client, method)(url, data, **extra)
    assert not unhandled, f"unhandled exception: {unhandled[0]!r}"
    assert response.status_code < 500, response.status_code
    return response


def page_of(response) -> str:
    return response.content.decode()


def assert_errors_shown(response, form) -> None:
    """A 200 page showing every error of the form, its hidden fields' included (a form
    refused for its nonce says so above the fields and comes back with a fresh one)."""
    assert response.status_code == 200
    page = page_of(response)
    assert form.errors, "refused without an error"
    if "nonce" in form.errors:
        assert form["nonce"].value(), "the form came back without a fresh nonce"
    for errors in form.errors.values():
        for error in errors:
            assert escape(error) in page, error


def assert_typed_values_kept(response, data: dict[str, str], names: tuple[str, ...]) -> None:
    """The text fields show again what was typed."""
    page = page_of(response)
    for name in names:
        value = data.get(name, "")
        if value.strip() and "\x00" not in value:  # Django drops the NUL ones
            assert f'value="{escape(value)}"' in page, (name, value)


def message_levels_of(response) -> list[int]:
    return [message.level for message in get_messages(response.wsgi_request)]


@pytest.fixture
def ready(stripe, sites):
    return connect_ready_account(stripe)


@fuzz(20)
@given(form=billing_request_forms())
def test_add_billing_request_page(
    editor, sites, ready, stripe, unhandled, form, django_capture_on_commit_callbacks
):
    fields, amount = form
    data = post_data(fields)
    acme = sites[0]
    with isolated("test_add_billing_request_page") as example:
        stripe_before = at_stripe(stripe)
        with django_capture_on_commit_callbacks(execute=True):
            response = send(editor, "post", f"{ADD}?site={acme.pk}", unhandled, data)
        bound = BillingRequestForm(data=data)
        _check_billing_request_form(bound, fields, amount, require_https=False)
        if response.status_code == 302:  # sent: stored as typed, one email
            assert bound.is_valid()
            old = [row[0] for row in example.before["requests"]]
            (created,) = BillingRequest.objects.exclude(pk__in=old)
            cleaned = bound.cleaned_data
            assert (created.email, created.amount, created.currency, created.description) == (
                cleaned["email"],
                cleaned["amount_minor"],
                cleaned["currency"],
                cleaned["description"],
            )
            assert (created.success_url, created.cancel_url, created.billing_type) == (
                cleaned["success_url"],
                cleaned["cancel_url"],
                cleaned["billing_type"],
            )
            assert created.status == Status.PENDING and created.site == acme
            assert [message.to for message in mail.outbox] == [[cleaned["email"]]]
            return
        # Refused (by the form, or by Stripe): said so, typed values kept, nothing made.
        assert response.status_code == 200
        form_shown = response.context["form"]
        assert_errors_shown(response, form_shown)
        assert_typed_values_kept(
            response, data, ("email", "amount", "description", "success_url", "cancel_url")
        )
        example.assert_unchanged()
        if not bound.is_valid():
            assert at_stripe(stripe) == stripe_before, "Stripe was asked about a bad form"


# Email settings ----------------------------------------------------------------------------

HOSTS = st.one_of(
    good("smtp.acme.test", "127.0.0.1", "[::1]", "mail", "smtp-relay.example.com"),
    bad(
        "smtp .acme.test",
        "smtp.acme.test\r\nX-Evil: 1",
        "-smtp.test",
        "smtp_acme.test",
        "smtp.exämple.test",
        "smtp.acme.test/",
        "user@smtp.test",
        "x" * 256,
        "smtp\x00.test",
        "[::1",
    ),
    any_of(TEXT),
)
PORTS = st.one_of(
    labelled(st.integers(1, 65535).map(str), GOOD),
    good(""),  # needed with Custom SMTP only (below)
    bad("0", "-1", "65536", "99999999999999999999", "abc", "1e3", "25.5", "0x19"),
    any_of(TEXT),
)


CLEAN_TEXT = labelled(TEXT.filter(lambda text: "\x00" not in text), GOOD)
SETTINGS_FIELDS = {
    "host": omittable(st.one_of(HOSTS, good("")), required=False),
    "port": omittable(PORTS, required=False),
    "username": omittable(st.one_of(CLEAN_TEXT, bad("x" * 256, "user\x00")), required=False),
    "password": omittable(st.one_of(CLEAN_TEXT, bad("pass\x00word")), required=False),
    "security": omittable(
        st.one_of(
            good("starttls", "ssl", "none"),
            bad("", "tls", "STARTTLS", "smoke-signals"),
        )
    ),
    "from_email": omittable(OPTIONAL_EMAILS, required=False),
    "reply_to": omittable(OPTIONAL_EMAILS, required=False),
}
CHECKBOXES = st.sampled_from([("on", GOOD), (OMIT, GOOD)])


@st.composite
def email_settings_forms(draw: st.DrawFn, has_password: bool) -> dict[str, tuple[Any, str]]:
    fields = {"custom_smtp": draw(CHECKBOXES)}
    fields.update((name, draw(strategy)) for name, strategy in SETTINGS_FIELDS.items())
    if has_password:
        fields["clear_password"] = draw(CHECKBOXES)
    if fields["custom_smtp"][0]:  # a custom server needs a host, a port and a From address
        for name in ("host", "from_email"):
            if not (fields[name][0] or "").strip():
                fields[name] = (fields[name][0], BAD)
        if not fields["port"][0]:  # left out or blank (" 25 " is a port: Django strips)
            fields["port"] = (fields["port"][0], BAD)
    return fields


def _check_email_settings_form(form, fields) -> None:
    valid = form.is_valid()
    badly = set(surely_bad(fields))
    assert not (badly and valid), f"accepted although {sorted(badly)} are bad"
    assert badly <= set(form.errors), f"{sorted(badly - set(form.errors))} have no error"
    for name, errors in form.errors.items():
        assert errors and all(str(error).strip() for error in errors), name
    if all_good(fields):
        assert valid, f"good values refused: {form.errors.as_data()}"
    if valid:
        data = form.cleaned_data
        for name in ("from_email", "reply_to", "host"):
            assert "\n" not in data[name] and "\r" not in data[name]
        assert 1 <= data["port"] <= 65535


@fuzz(900)
@given(fields=email_settings_forms(has_password=False))
def test_email_settings_form_refuses_bad_and_keeps_good_values(sites, fields):
    with form_alone("test_email_settings_form_refuses_bad_and_keeps_good_values"):
        instance = SiteEmailSettings(site=sites[0])
        _check_email_settings_form(
            SiteEmailSettingsForm(data=post_data(fields), instance=instance), fields
        )


@pytest.fixture
def stored_settings(sites) -> SiteEmailSettings:
    stored = SiteEmailSettings(
        site=sites[0], custom_smtp=False, host="smtp.acme.test", from_email="billing@acme.test"
    )
    stored.set_password(STORED_PASSWORD)
    stored.save()
    return stored


PASSWORD_INPUT = re.compile(r"<input[^>]*type=\"password\"[^>]*>")


@fuzz(20)
@given(fields=email_settings_forms(has_password=True))
def test_email_settings_page(editor, sites, stored_settings, unhandled, fields):
    data = post_data(fields)
    acme = sites[0]
    with isolated("test_email_settings_page") as example:
        form = SiteEmailSettingsForm(data=data, instance=SiteEmailSettings.objects.get(site=acme))
        _check_email_settings_form(form, fields)
        response = send(editor, "post", f"{EMAIL_SETTINGS}?site={acme.pk}", unhandled, data)
        if response.status_code == 302:
            assert form.is_valid()
            saved = SiteEmailSettings.objects.get(site=acme)
            for name in (
                "custom_smtp",
                "host",
                "port",
                "username",
                "security",
                "from_email",
                "reply_to",
            ):
                assert getattr(saved, name) == form.cleaned_data[name], name
            # The stored password belongs to its server: another one drops it.
            same_server = all(
                form.cleaned_data[name] == getattr(stored_settings, name)
                for name in SiteEmailSettings.SERVER_FIELDS
            )
            expected = data.get("password") or (
                "" if data.get("clear_password") or not same_server else STORED_PASSWORD
            )
            assert saved.get_password() == expected
            return
        assert_errors_shown(response, response.context["form"])
        assert_typed_values_kept(response, data, ("host", "username", "from_email", "reply_to"))
        # The password is never shown back, neither the stored one nor the one typed.
        for tag in PASSWORD_INPUT.findall(page_of(response)):
            assert "value=" not in tag
        assert STORED_PASSWORD not in page_of(response)
        example.assert_unchanged()


@fuzz(40)
@given(to=EMAILS)
def test_send_a_test_email(editor, sites, unhandled, to):
    address, label = to
    with isolated("test_send_a_test_email") as example:
        response = send(
            editor, "post", f"{TEST_EMAIL}?site={sites[0].pk}", unhandled, {"to": address}
        )
        assert response.status_code == 302
        levels = message_levels_of(response)
        if message_levels.SUCCESS in levels:
            assert label != BAD
            (message,) = mail.outbox
            assert message.to == [address.strip()]
            assert "\n" not in message.to[0] and "\r" not in message.to[0]
        else:
            assert label != GOOD
            assert levels == [message_levels.ERROR]
            # A send that was tried and failed stays in the audit log (failed sends count
            # towards the per-minute limit, issue 10); apart from it, nothing changed.
            tried = ModelLogEntry.objects.filter(action=ACTION_TEST_EMAIL)
            if tried.exists():
                assert tried.get().data["error"]
                tried.delete()
                SiteEmailSettings.objects.filter(site=sites[0]).delete()
            example.assert_unchanged()


# Create client billing account, notifications, modes ------------------------------------


CONNECT_FIELDS = {
    "test_mode": CHECKBOXES,
    "country": omittable(
        st.one_of(
            good(*STRIPE_COUNTRIES),
            bad("", "KP", "fr", "FRA", "F", "F\x00"),
            any_of(TEXT),
        )
    ),
    "privacy_policy_url": omittable(URLS),
    "terms_of_service_url": omittable(URLS),
    "nonce": omittable(
        st.one_of(
            labelled(st.text("0123456789abcdef", min_size=1, max_size=32), GOOD),
            bad("", "\x00"),
        )
    ),
}


@st.composite
def connect_forms(draw: st.DrawFn) -> dict[str, tuple[Any, str]]:
    fields = {name: draw(strategy) for name, strategy in CONNECT_FIELDS.items()}
    if not fields["test_mode"][0]:  # live mode: https only
        for name in ("privacy_policy_url", "terms_of_service_url"):
            value, label = fields[name]
            if label == GOOD and not value.lower().startswith("https://"):
                fields[name] = (value, BAD)
    return fields


def _check_connect_form(form, fields) -> None:
    valid = form.is_valid()
    badly = set(surely_bad(fields))
    assert not (badly and valid), f"accepted although {sorted(badly)} are bad"
    assert badly <= set(form.errors), f"{sorted(badly - set(form.errors))} have no error"
    if all_good(fields):
        assert valid, f"good values refused: {form.errors.as_data()}"
    if valid and not form.cleaned_data["test_mode"]:
        assert form.cleaned_data["privacy_policy_url"].lower().startswith("https://")
        assert form.cleaned_data["terms_of_service_url"].lower().startswith("https://")


@fuzz(1_600)
@given(fields=connect_forms())
def test_connect_form_refuses_bad_and_keeps_good_values(db, fields):
    with form_alone("test_connect_form_refuses_bad_and_keeps_good_values"):
        _check_connect_form(ConnectForm(data=post_data(fields)), fields)


@fuzz(20)
@given(fields=connect_forms())
def test_connect_page(boss, stripe, unhandled, fields):
    data = post_data(fields)
    with isolated("test_connect_page") as example:
        stripe_before = at_stripe(stripe)
        response = send(boss, "post", CONNECT, unhandled, data)
        form = ConnectForm(data=data)
        _check_connect_form(form, fields)
        if response.status_code == 302:  # off to Stripe's onboarding, the account stored
            assert form.is_valid() and form.cleaned_data["test_mode"]
            connection = StripeConnection.objects.get(mode="test")
            assert connection.country == form.cleaned_data["country"]
            assert connection.privacy_policy_url == form.cleaned_data["privacy_policy_url"]
            assert response["Location"].startswith(stripe.url)
            return
        assert_errors_shown(response, response.context["form"])
        assert_typed_values_kept(response, data, ("privacy_policy_url", "terms_of_service_url"))
        example.assert_unchanged()
        if not form.is_valid():
            assert at_stripe(stripe) == stripe_before, "Stripe was asked about a bad form"


@fuzz(120)
@given(
    notify=st.booleans(),
    recipients=st.lists(st.one_of(OPTIONAL_EMAILS, good("  ")), max_size=4),
    separator=st.sampled_from(["\n", "\r\n", ",", ", ", " ,\n"]),
)
def test_notification_settings(boss, unhandled, notify, recipients, separator):
    data = {"notification_recipients": separator.join(value for value, _ in recipients)}
    if notify:
        data["notify_payments"] = "on"
    with isolated("test_notification_settings") as example:
        response = send(boss, "post", NOTIFICATIONS, unhandled, data)
        assert response.status_code == 302
        levels = message_levels_of(response)
        settings_row = AgencyBillingSettings.load()
        if message_levels.SUCCESS in levels:
            assert all(label != BAD for _, label in recipients)
            lines = data["notification_recipients"].replace(",", "\n").splitlines()
            expected = "\n".join(line.strip() for line in lines if line.strip())
            assert settings_row.notification_recipients == expected
            assert settings_row.notify_payments == notify
        else:
            assert not all(label == GOOD for _, label in recipients)
            assert levels and set(levels) == {message_levels.ERROR}
            example.assert_unchanged()


MODES = st.one_of(
    st.sampled_from(["test", "live", "", "TEST", "tes", "live ", "..", "%00"]),
    TEXT.filter(lambda text: "/" not in text),
)
#: The mode URLs and the methods each answers (Stripe's refresh URL is a GET too).
MODE_URLS = {
    "unlink": ("get", "post"),
    "onboard": ("get", "post"),
    "refresh": ("get", "post"),
    "return": ("get",),
    "status": ("post",),
    "webhook": ("post",),
}


@fuzz(60)
@given(
    mode=MODES,
    where=st.sampled_from([*MODE_URLS, "switch"]),
    method=st.sampled_from(["get", "post"]),
)
def test_mode_switch_and_mode_urls(boss, stripe, unhandled, mode, where, method):
    # The real modes' URLs act on the account: their own tests cover them.
    assume(where == "switch" or mode not in ("test", "live"))
    with isolated("test_mode_switch_and_mode_urls") as example:
        if where == "switch":
            response = send(boss, "post", SWITCH_MODE, unhandled, {"mode": mode})
            assert response.status_code == 302
            active = AgencyBillingSettings.load().active_mode
            if mode in ("test", "live"):
                assert active == mode
            else:
                assert message_levels_of(response) == [message_levels.ERROR]
                example.assert_unchanged()
            return
        url = f"/admin/client-billing/account/{quote(mode, safe='')}/{where}/"
        response = send(boss, method, url, unhandled)
        # No such mode: no URL without one (404), else the method is refused (405) or the
        # mode is (404: no account is linked in a mode that does not exist).
        if mode and method not in MODE_URLS[where]:
            assert response.status_code == 405
        else:
            assert response.status_code == 404
        example.assert_unchanged()


# Renew ------------------------------------------------------------------------------------


@pytest.fixture
def renewables(editor, sites, ready):
    """An expired (renewable), a pending and a paid request of Acme."""

    made = []
    for email in ("expired@client.test", "pending@client.test", "paid@client.test"):
        made.append(
            billing.create_request(
                site=sites[0],
                details=request_details(email=email),
            )
        )
    billing.mark_expired(made[0].pk, source="test")
    billing.mark_paid(made[2], source="test")
    return [BillingRequest.objects.get(pk=request.pk) for request in made]


@fuzz(25)
@given(
    which=st.sampled_from([0, 1, 2, "other"]),
    method=st.sampled_from(["get", "post", "post"]),
    nonce=st.one_of(st.none(), TEXT, st.sampled_from(["\x00", "x" * 5000, "renew-1"])),
)
@example(which=0, method="post", nonce="\x00")
@example(which=0, method="post", nonce="é" * 100)
def test_renew_confirmation(editor, renewables, unhandled, which, method, nonce):
    pk = renewables[which].pk if which != "other" else 10**12
    url = reverse("wagtail_client_billing_requests:renew", args=[pk])
    with isolated("test_renew_confirmation") as example:
        data = {} if nonce is None else {"nonce": nonce}
        response = send(editor, method, url, unhandled, data)
        if which == "other":
            assert response.status_code == 404
            example.assert_unchanged()
            return
        if method == "get":
            assert response.status_code == 200
            example.assert_unchanged()
            return
        assert response.status_code == 302
        new = BillingRequest.objects.exclude(pk__in=[request.pk for request in renewables])
        levels = message_levels_of(response)
        if which == 0 and message_levels.SUCCESS in levels:  # renewed: one new request
            (renewed,) = new
            original = renewables[0]
            assert (renewed.email, renewed.amount, renewed.status) == (
                original.email,
                original.amount,
                Status.PENDING,
            )
            assert renewed.form_nonce == ((nonce or "").replace("\x00", "")[:64] or None)
        else:  # not renewable (or Stripe refused): said so, nothing made
            assert message_levels.ERROR in levels
            assert not new.exists()
            example.assert_unchanged()


# The client's pay page ------------------------------------------------------------------


@pytest.fixture
def payable(sites):
    """Requests of Acme in every state, made directly (the pay page never calls Stripe),
    on a linked account (a request whose account is gone has a page of its own)."""
    now = timezone.now()
    StripeConnection.objects.create(mode="test", account_id="acct_fuzz", charges_enabled=True)
    made = {}
    for key, fields in {
        "pending": {},
        "overdue": {"expires_at": now - timedelta(minutes=5)},
        "paid": {"status": Status.PAID, "paid_at": now},
        "expired": {"status": Status.EXPIRED, "expired_at": now},
        "deleted": {"status": Status.DELETED, "deleted_at": now},
    }.items():
        made[key] = BillingRequest.objects.create(
            site=sites[0],
            email=f"{key}@client.test",
            currency="eur",
            amount=4990,
            description="Maintenance",
            success_url="https://acme.test/ok/",
            cancel_url="https://acme.test/no/",
            account_id="acct_fuzz",
            checkout_session_id=f"cs_test_{key}",
            checkout_url=f"https://checkout.stripe.test/c/pay/cs_test_{key}",
            expires_at=fields.pop("expires_at", now + timedelta(hours=20)),
            **fields,
        )
    SiteEmailSettings.objects.create(site=sites[0], reply_to="office@acme.test")
    return made


def _mutations(token: str) -> list[str]:
    mutated = [
        token[:-1],
        token + "x",
        token.upper(),
        token.swapcase(),
        f" {token}",
        f"{token}\x00",
        token[::-1],
        token[:10],
        token + "/",
        "x" + token[1:],
    ]
    return [value for value in mutated if value != token]


ODD_TOKENS = st.sampled_from(
    [
        "%00",
        "\x00",
        "..",
        ".",
        "a" * 5000,
        "é",
        "𝄞",
        "null",
        "' OR 1=1 --",
        "<script>",
        "\r\n",
        "%2e%2e",
        "?x=1",
        "#",
    ]
)


@dataclass(frozen=True)
class Token:
    """Which token to send: a real one, a real one mutated, an odd one or any text."""

    kind: str
    pick: int
    text: str

    def resolve(self, real: dict[str, str]) -> tuple[str, str | None]:
        """The token, and the key of the request it is (None: none)."""
        keys = sorted(real)
        key = keys[self.pick % len(keys)]
        if self.kind == "real":
            return real[key], key
        if self.kind == "mutated":
            mutations = _mutations(real[key])
            token = mutations[self.pick // len(keys) % len(mutations)]
        else:
            token = self.text
        return token, next((key for key, value in real.items() if value == token), None)


TOKENS = st.one_of(
    st.builds(Token, st.sampled_from(["real", "mutated"]), NATURALS, st.just("")),
    st.builds(Token, st.just("odd"), st.just(0), ODD_TOKENS),
    st.builds(Token, st.just("any"), st.just(0), TEXT),
)


@fuzz(250)
@given(
    token=TOKENS,
    method=st.sampled_from(["get", "get", "post"]),
    host=st.sampled_from(["acme.test", "acme.test", "bakery.test", "testserver"]),
)
def test_pay_page_and_new_link_with_generated_tokens(
    client, sites, payable, unhandled, token, method, host, django_capture_on_commit_callbacks
):
    client.raise_request_exception = False
    token, key = token.resolve({key: request.token for key, request in payable.items()})
    path = f"/billing/pay/{quote(token, safe='')}/" + ("new-link/" if method == "post" else "")
    with isolated("test_pay_page_and_new_link_with_generated_tokens") as example:
        with django_capture_on_commit_callbacks(execute=True):
            response = send(client, method, path, unhandled, HTTP_HOST=host)
        if key is None:
            # Not found; a "/" in the token may reach the new-link URL, which is POST only.
            assert response.status_code == 404 or (
                "/" in token and method == "get" and response.status_code == 405
            ), response.status_code
            example.assert_unchanged()
            if response.status_code == 404 and "/" not in token and token:
                assert "Payment link not found" in page_of(response)
            return
        request = payable[key]
        if host != "acme.test" and method == "get":  # each link lives on its own site
            assert response.status_code == 302
            assert response["Location"] == request.get_payment_url()
            example.assert_unchanged()
            return
        if method == "get":
            expected = {
                "pending": 302,
                "overdue": 410,
                "paid": 200,
                "expired": 410,
                "deleted": 410,
            }[key]
            assert response.status_code == expected
            example.assert_unchanged()
            return
        # "Ask for a new link": back to the page; overdue becomes Expired; expired and
        # deleted requests tell the site once (a notification, an email to its Reply-to).
        assert response.status_code == 302
        assert response["Location"] == request.get_payment_path()
        request.refresh_from_db()
        if key == "overdue":
            assert request.status == Status.EXPIRED
        else:
            assert request.status == payable[key].status
        if key in ("overdue", "expired", "deleted"):
            assert request.client_asked_at is not None
            assert [message.to for message in mail.outbox] == [["office@acme.test"]]
        else:
            example.assert_unchanged()


@pytest.mark.parametrize("path", ["/billing/pay/%00/", "/billing/pay/abc%00def/new-link/"])
def test_a_nul_in_a_pay_link_token_is_not_found(client, payable, unhandled, path):
    """Not generated: the NUL the fuzz test above found. PostgreSQL cannot compare text
    with a NUL in it, so the token lookup answered 500 to anyone; the views now refuse
    anything that is not a token's shape before asking the database."""
    client.raise_request_exception = False
    method = client.post if path.endswith("new-link/") else client.get
    response = method(path, HTTP_HOST="acme.test")
    assert not unhandled, unhandled
    assert response.status_code == 404


# The listing and the overview ------------------------------------------------------------

FILTER_KEYS = (
    "q",
    "status",
    "billing_type",
    "currency",
    "created_at_after",
    "created_at_before",
    "site",
    "ordering",
    "p",
    "export",
    "per_page",
)
FILTER_VALUES = st.one_of(
    st.sampled_from(
        [
            "",
            "paid",
            "pending",
            "deleted",
            "expired",
            "PAID",
            "monthly",
            "eur",
            "EUR",
            "xyz",
            "2026-01-31",
            "2026-02-30",
            "31/01/2026",
            "0001-01-01",
            "9999-12-31",
            "99999-01-01",
            "-1",
            "0",
            "1",
            "2",
            "3",
            "99999999999999999999",
            "1e3",
            "-created_at",
            "amount",
            "-amount",
            "site__site_name",
            "password",
            "__str__",
            "csv",
            "xlsx",
            "pdf",
            "\x00",
            "%",
            "_",
            "'",
            '"',
            "\\",
            "é",
            "𝄞",
            "a" * 3000,
        ]
    ),
    TEXT,
)


QUERY_STRINGS = st.lists(
    st.tuples(st.sampled_from(FILTER_KEYS) | st.text(max_size=10), FILTER_VALUES), max_size=6
)


@fuzz(60)
@given(
    params=QUERY_STRINGS,
    view=st.sampled_from(
        [
            "index_results",
            "index_results",
            "overview_results",
            "overview_results",
            "index",
            "overview",
        ]
    ),
)
def test_listing_and_overview_query_strings(editor, boss, payable, sites, unhandled, params, view):
    url = {
        "index": INDEX,
        "index_results": INDEX_RESULTS,
        "overview": OVERVIEW,
        "overview_results": OVERVIEW_RESULTS,
    }[view]
    client = editor if view.startswith("index") else boss
    with isolated("test_listing_and_overview_query_strings") as example:
        response = send(client, "get", f"{url}?{urlencode(params)}", unhandled)
        sites_asked = [value for key, value in params if key == "site"]
        if response.status_code == 404:
            # Only a listing asked for a site the editor cannot bill for, or a page past
            # the end.
            assert (
                view.startswith("index") and sites_asked or any(key == "p" for key, _ in params)
            ), params
        else:
            assert response.status_code == 200, response.status_code
        example.assert_unchanged()
