"""Fuzzing the Stripe webhook endpoint (issue 7, "Bad input").

Hypothesis throws generated requests at ``POST /billing/stripe/webhook/`` and checks
that the endpoint never answers with an unhandled error, never changes anything
without a valid ``Stripe-Signature``, and, with a valid one, changes only what the
event legitimately means.

Each example runs inside its own transaction, rolled back at its end, so examples do
not leak into each other (the endpoint is non-atomic: that transaction is the only
thing undoing its writes, and the comparison is made before the rollback). The state
compared is the billing requests (status, paid_at...), the Stripe connections, the
stored webhook events, the audit log, the notifications and the outgoing mail.

Examples per test (every test checks, when it ends, that it really ran that many;
``test_the_fuzz_suite_runs_at_least_10000_examples`` adds up what ran in both modules):

=========================================================  ======
test_bodies_without_a_valid_signature_change_nothing        2,600
test_bad_signatures_over_genuine_events_change_nothing      3,200
test_validly_signed_events_change_only_what_they_mean         500
=========================================================  ======
This module                                                 6,300
tests/test_fuzz_forms.py                                    3,715
Total                                                      10,015
=========================================================  ======

Run with ``--hypothesis-show-statistics`` to see Hypothesis's own counts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.core.signals import got_request_exception
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from wagtail.log_actions import log
from wagtail.models import ModelLogEntry

from tests.factories import make_site, make_user, outbox_emails
from tests.test_webhooks import LIVE_SECRET, SECRET, URL, sign
from wagtail_client_billing import billing, connections
from wagtail_client_billing.models import (
    AgencyBillingSettings,
    BillingRequest,
    OutgoingEmail,
    StripeConnection,
    WebhookEvent,
)

pytestmark = pytest.mark.django_db

Status = BillingRequest.Status
EVENT = WebhookEvent.Status
CONFIGURED_SECRETS = (SECRET, LIVE_SECRET)

# Counting ---------------------------------------------------------------------------

#: Examples each test must run / did run in this session (read by the total's test).
TARGETS: dict[str, int] = {}
EXAMPLES: Counter[str] = Counter()
#: Wall-clock and CPU seconds each test took (fixtures included), for the summary.
SECONDS: dict[str, tuple[float, float]] = {}


def fuzz(examples: int) -> Callable:
    """Hypothesis settings for a fuzz test that must really run ``examples`` examples.

    ``max_examples`` is only a maximum: Hypothesis stops early when a strategy runs out
    of new values, so ``_counts_examples`` checks the count the test body reached.
    """

    def decorate(test: Callable) -> Callable:
        TARGETS[test.__name__] = examples
        return settings(
            max_examples=examples,
            deadline=None,  # timings vary with the database and the machine's load
            database=None,  # nothing saved or replayed: every run (and CI) starts afresh
            # The fixtures build the world once per test; each example rolls back to it.
            suppress_health_check=[
                HealthCheck.function_scoped_fixture,
                HealthCheck.too_slow,
                HealthCheck.data_too_large,
                HealthCheck.large_base_example,
            ],
        )(test)

    return decorate


@pytest.fixture(autouse=True)
def _counts_examples(request: pytest.FixtureRequest) -> Iterator[None]:
    name = request.node.originalname
    EXAMPLES[name] = 0
    failed = request.session.testsfailed
    started, cpu = time.perf_counter(), time.process_time()
    yield
    SECONDS[name] = (time.perf_counter() - started, time.process_time() - cpu)
    if name in TARGETS and request.session.testsfailed == failed:  # (a failure stops early)
        assert EXAMPLES[name] >= TARGETS[name], (
            f"{name} ran {EXAMPLES[name]} examples, fewer than its {TARGETS[name]}"
        )


# The world the requests are thrown at ------------------------------------------------

SESSIONS = {
    "pending": "cs_test_pending",
    "overdue": "cs_test_overdue",  # pending, past its expires_at (the sweep is late)
    "processing": "cs_test_processing",  # pending, a delayed payment under way
    "expired": "cs_test_expired",
    "deleted": "cs_test_deleted",
    "paid": "cs_test_paid",
    "live": "cs_live_pending",
}
SUBSCRIPTIONS = ("sub_paid_monthly", "sub_past_due")
ACCOUNT = "acct_agency"  # linked in test mode, ready
LIVE_ACCOUNT = "acct_agency_live"  # linked in live mode, onboarding
GONE_ACCOUNT = "acct_gone"  # unlinked
ACCOUNTS = (ACCOUNT, LIVE_ACCOUNT, GONE_ACCOUNT, "acct_other")
SEEN_EVENT = "evt_seen_before"  # stored and processed
FAILED_EVENT = "evt_failed_before"  # stored and failed: a redelivery applies it again
ADMIN_EMAIL = "boss@agency.test"


def snapshot() -> dict[str, list]:
    """Everything a webhook could change, in a comparable form."""
    return {
        "requests": list(
            BillingRequest.objects.order_by("pk").values_list(
                "pk",
                "status",
                "paid_at",
                "expired_at",
                "deleted_at",
                "payment_state",
                "late_payment",
                "subscription_id",
                "subscription_status",
                "client_asked_at",
                "checkout_session_id",
                "mode",
            )
        ),
        # The clients' billing emails: no webhook changes them.
        "emails": list(
            OutgoingEmail.objects.filter(kind__in=("request", "reminder"))
            .order_by("pk")
            .values_list("pk", "key", "status")
        ),
        "connections": list(
            StripeConnection.objects.order_by("pk").values_list(
                "pk",
                "mode",
                "account_id",
                "details_submitted",
                "charges_enabled",
                "payouts_enabled",
                "requirements_due",
                "disabled_reason",
                "refreshed_at",
                "onboarded_at",
                "unlinked_at",
            )
        ),
        "events": list(
            WebhookEvent.objects.order_by("pk").values_list(
                "pk", "stripe_id", "type", "status", "attempts", "note", "error", "processed_at"
            )
        ),
        "log": list(ModelLogEntry.objects.order_by("pk").values_list("pk", "action", "object_id")),
        "notifications": list(
            OutgoingEmail.objects.exclude(kind__in=("request", "reminder"))
            .order_by("pk")
            .values_list("pk", "key", "kind", "billing_request_id")
        ),
        "settings": list(AgencyBillingSettings.objects.values_list("pk", "active_mode")),
        "mail": [(message.subject, tuple(message.to)) for message in mail.outbox],
    }


class World:
    """The fixture's rows, a client, and the per-example isolation."""

    def __init__(self, name: str, client: Client, requests: dict[str, BillingRequest]) -> None:
        self.name, self.client, self.requests = name, client, requests
        self.baseline: dict[str, list] = {}
        self.unhandled: list[BaseException] = []
        self.statements = self.checks = 0

    def __repr__(self) -> str:  # what Hypothesis prints for a failing example
        return "world"

    @contextmanager
    def example(self) -> Iterator[None]:
        """One example: in a transaction rolled back at its end, counted if it passed."""
        self.unhandled.clear()
        mail.outbox.clear()
        with transaction.atomic():
            yield
            transaction.set_rollback(True)
        mail.outbox.clear()
        EXAMPLES[self.name] += 1

    def post(self, body: bytes, signature: str | None, content_type: str, method: str = "POST"):
        """Send one request; count the SQL statements it ran (``self.statements``)."""
        extra = {} if signature is None else {"HTTP_STRIPE_SIGNATURE": signature}
        self.statements = 0
        with connection.execute_wrapper(self._count_statement):
            response = self.client.generic(method, URL, body, content_type=content_type, **extra)
        assert not self.unhandled, f"unhandled exception: {self.unhandled[0]!r}"
        assert response.status_code != 500 or response.get("Content-Type") == (
            "application/json"
        ), "a 500 that is not the endpoint's own 'failed' answer"
        return response

    def _count_statement(self, execute, sql, params, many, context):
        self.statements += 1
        return execute(sql, params, many, context)

    def assert_unchanged(self) -> None:
        """Nothing changed: no mail, and the database as before the example.

        The full snapshot costs more than a refused request; a request that ran no SQL
        at all cannot have changed the database, so its snapshot is taken only every
        so often (which also watches for writes through some other connection).
        """
        assert mail.outbox == []
        self.checks += 1
        if self.statements or self.checks % 20 == 1:
            assert snapshot() == self.baseline


def _request(site, session_key: str, **fields: Any) -> BillingRequest:
    now = timezone.now()
    values = {
        "site": site,
        "email": f"{session_key}@client.test",
        "currency": "eur",
        "amount": 4990,
        "description": f"Request {session_key}",
        "success_url": "https://acme.test/thanks/",
        "cancel_url": "https://acme.test/cancel/",
        "mode": "test",
        "account_id": ACCOUNT,
        "checkout_session_id": SESSIONS[session_key],
        "checkout_url": f"https://checkout.stripe.test/{SESSIONS[session_key]}",
        "expires_at": now + timedelta(hours=23),
        **fields,
    }
    request = BillingRequest.objects.create(**values)
    outbox_emails([request], status=OutgoingEmail.Status.SENT)
    return request


@pytest.fixture
def world(request, db, settings, caplog) -> Iterator[World]:
    """Two sites, a ready test-mode account, requests in every state, stored events."""
    settings.WAGTAIL_CLIENT_BILLING = {
        **settings.WAGTAIL_CLIENT_BILLING,
        "STRIPE_LIVE_WEBHOOK_SECRET": LIVE_SECRET,
    }
    # Thousands of refused requests: keep their log lines out of the report.
    for name in ("django", "django-q", "wagtail_client_billing"):
        caplog.set_level(logging.CRITICAL, logger=name)

    acme = make_site("acme.test", "Acme Plumbing")
    make_site("bakery.test", "Rue Haute Bakery")
    boss = make_user("boss", superuser=True)
    boss.email = ADMIN_EMAIL
    boss.save(update_fields=["email"])
    AgencyBillingSettings.load()  # notify_payments is on by default
    ready = {"details_submitted": True, "charges_enabled": True, "payouts_enabled": True}
    test_connection = StripeConnection.objects.create(
        mode="test", account_id=ACCOUNT, country="FR", onboarded_at=timezone.now(), **ready
    )
    StripeConnection.objects.create(mode="live", account_id=LIVE_ACCOUNT, country="FR")
    StripeConnection.objects.create(
        mode="test", account_id=GONE_ACCOUNT, country="FR", unlinked_at=timezone.now()
    )

    past = timezone.now() - timedelta(hours=2)
    requests = {
        "pending": _request(acme, "pending"),
        "overdue": _request(acme, "overdue", expires_at=past),
        "processing": _request(
            acme, "processing", payment_state=BillingRequest.PaymentState.PROCESSING
        ),
        "expired": _request(acme, "expired", status=Status.EXPIRED, expired_at=past),
        "deleted": _request(acme, "deleted", status=Status.DELETED, deleted_at=past),
        "paid": _request(
            acme,
            "paid",
            status=Status.PAID,
            paid_at=past,
            billing_type="monthly",
            subscription_id=SUBSCRIPTIONS[0],
            subscription_status="active",
        ),
        "live": _request(acme, "live", mode="live", account_id=LIVE_ACCOUNT),
    }
    requests["past_due"] = _request(
        acme,
        "pending",
        checkout_session_id="cs_test_past_due",
        status=Status.PAID,
        paid_at=past,
        billing_type="yearly",
        subscription_id=SUBSCRIPTIONS[1],
        subscription_status="past_due",
    )
    log(requests["paid"], billing.ACTION_PAID, data={"source": "setup"})
    log(test_connection, connections.ACTION_ONBOARDED, data={"account": ACCOUNT})
    seen = {"id": SEEN_EVENT, "object": "event", "type": "checkout.session.completed"}
    WebhookEvent.objects.create(
        stripe_id=SEEN_EVENT,
        type=seen["type"],
        account=ACCOUNT,
        payload=seen,
        status=EVENT.PROCESSED,
        attempts=1,
        processed_at=past,
    )
    failed = {
        "id": FAILED_EVENT,
        "object": "event",
        "type": "invoice.paid",
        "livemode": False,
        "data": {"object": {"id": "in_1"}},
        "account": ACCOUNT,
    }
    WebhookEvent.objects.create(
        stripe_id=FAILED_EVENT,
        type=failed["type"],
        account=ACCOUNT,
        payload=failed,
        status=EVENT.FAILED,
        attempts=1,
        error="Traceback (most recent call last): ...",
    )

    world = World(
        name=request.node.originalname,
        # Stripe sends no CSRF token; answer errors as responses, not as exceptions.
        client=Client(enforce_csrf_checks=True, raise_request_exception=False),
        requests=requests,
    )
    world.baseline = snapshot()

    def unhandled(sender, request=None, **kwargs):
        world.unhandled.append(sys.exc_info()[1])

    got_request_exception.connect(unhandled, weak=False, dispatch_uid="fuzz-webhooks")
    yield world
    got_request_exception.disconnect(dispatch_uid="fuzz-webhooks")
    # Every example rolled back: the world is as it was.
    assert snapshot() == world.baseline


# Strategies ---------------------------------------------------------------------------

# Strategies are kept cheap: generating an example must cost less than answering it.
TEXT = st.text(max_size=24)
# Long and far-from-ASCII strings, without generating megabytes choice by choice.
HUGE_TEXT = st.builds(
    lambda piece, times: piece * times,
    st.text(min_size=1, max_size=4) | st.sampled_from(["é", "𝄞", "\u202e", "\ufeff", "%00"]),
    st.integers(500, 5_000),
)
# A JSON array nested n levels deep, a number of n digits (see ``encode``).
DEEP = st.sampled_from([50, 700, 5_000, 100_000]).map("@@deep:{}@@".format) | st.sampled_from(
    [20, 400, 5_000]
).map("@@digits:{}@@".format)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and Infinity too: Python's json writes and reads them
    | TEXT
    | st.sampled_from(["", "\x00", "\ud800", "null", "acct_", "cs_test_pending", "\r\nX: y"])
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=5,
)
JUNK = JSON_VALUES | HUGE_TEXT | DEEP

EVENT_IDS = st.integers(0, 2**64).map("evt_{:x}".format)
# Now and then the id of an event already stored: a duplicate, or a failed one's retry.
SOME_EVENT_IDS = st.tuples(st.sampled_from([SEEN_EVENT, FAILED_EVENT] + [""] * 14), EVENT_IDS).map(
    lambda pair: pair[0] or pair[1]
)
EVENT_TYPES = (
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "account.updated",
    "account.application.deauthorized",
    "invoice.paid",
    "charge.refunded",
)


def weighted(*choices: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    """One of the strategies, each as often as its weight (``st.one_of`` drops repeats)."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


# Data objects come from pools of Stripe-shaped objects (one choice each, which keeps
# generation cheap); the mutations of ``stripe_events`` then put junk anywhere in them.
OMIT = object()
ODD_VALUES = (None, "", 0, 42, True, [], {}, ["paid"], {"id": None}, "PAID", "x" * 300, "\x00")


def _pool(**values: tuple) -> list[dict[str, Any]]:
    """Every combination of ``values`` (OMIT leaves the key out)."""
    objects: list[dict[str, Any]] = [{}]
    for key, choices in values.items():
        objects = [
            {**obj, key: choice} if choice is not OMIT else obj
            for obj in objects
            for choice in choices
        ]
    return objects


SESSION_IDS = (*SESSIONS.values(), "cs_test_past_due", "cs_test_unknown")
SESSION_OBJECTS = st.sampled_from(
    _pool(
        id=(*SESSION_IDS, OMIT, None, 7, ["cs_test_pending"], {"id": "cs_test_pending"}),
        object=("checkout.session",),
        payment_status=("paid", "unpaid", "no_payment_required", OMIT, *ODD_VALUES[:9]),
        subscription=(
            OMIT,
            None,
            "sub_new",
            {"id": "sub_new"},
            SUBSCRIPTIONS[0],
            7,
            ["x"],
            {"id": ["x"]},
            "s" * 300,
        ),
    )
)
SUBSCRIPTION_OBJECTS = st.sampled_from(
    _pool(
        id=(*SUBSCRIPTIONS, "sub_unknown", OMIT, None, 5, [SUBSCRIPTIONS[0]]),
        object=("subscription",),
        status=("active", "past_due", "canceled", "unpaid", OMIT, *ODD_VALUES),
    )
)
ACCOUNT_OBJECTS = st.sampled_from(
    _pool(
        id=(*ACCOUNTS, OMIT, None, 1),
        object=("account",),
        charges_enabled=(True, False, OMIT, "yes", None),
        details_submitted=(True, False, OMIT),
        payouts_enabled=(True, OMIT, 0),
        requirements=(
            OMIT,
            None,
            {},
            [],
            "due",
            {"currently_due": [], "past_due": [], "disabled_reason": None},
            {"currently_due": ["external_account"], "disabled_reason": "requirements.past_due"},
            {"currently_due": 3, "past_due": "x", "disabled_reason": ["r"]},
            {"currently_due": [None, 1, {"a": []}], "disabled_reason": "r" * 300},
        ),
    )
)
DATA_OBJECTS = (
    SESSION_OBJECTS
    | SUBSCRIPTION_OBJECTS
    | ACCOUNT_OBJECTS
    | st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3)
)
OBJECTS_OF = {
    family: weighted((3, objects), (1, DATA_OBJECTS))  # mostly the right kind
    for family, objects in (
        ("checkout", SESSION_OBJECTS),
        ("customer", SUBSCRIPTION_OBJECTS),
        ("account", ACCOUNT_OBJECTS),
    )
}
EVENT_ACCOUNTS = st.sampled_from([ACCOUNT, ACCOUNT, ACCOUNT, *ACCOUNTS, None])
LIVEMODES = st.sampled_from([False, False, False, True])
API_VERSIONS = st.sampled_from(["2025-03-31.basil", "2019-02-19", None])
MUTATIONS = st.sampled_from([0, 0, 0, 1, 2, 3])  # half the events well formed
# A key to mutate: an existing one (by its index) or any other.
MUTATED_KEYS = st.integers(0, 99) | st.text(max_size=6)
MUTATED_VALUES = JUNK | st.sampled_from(ODD_VALUES)


@st.composite
def stripe_events(draw: st.DrawFn, mutate: bool = True) -> tuple[dict[str, Any], bool]:
    """A Stripe-shaped event and whether it is well formed (no field mutated)."""
    event_type = draw(st.sampled_from(EVENT_TYPES))
    objects = OBJECTS_OF.get(event_type.split(".")[0], DATA_OBJECTS)
    event: dict[str, Any] = {
        "id": draw(SOME_EVENT_IDS),
        "object": "event",
        "api_version": draw(API_VERSIONS),
        "created": 1_760_000_000,
        "data": {"object": dict(draw(objects))},
        "livemode": draw(LIVEMODES),
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
    account = draw(EVENT_ACCOUNTS)
    if account is not None:
        event["account"] = account
    well_formed = True
    for _ in range(draw(MUTATIONS) if mutate else 0):
        well_formed = False
        target = event
        if draw(st.booleans()) and isinstance(event.get("data"), dict):
            if isinstance(event["data"].get("object"), dict):
                target = event["data"]["object"]
        key = draw(MUTATED_KEYS)
        if isinstance(key, int):
            key = sorted(target)[key % len(target)] if target else ""
        if draw(st.booleans()):
            target.pop(key, None)
        else:
            target[key] = draw(MUTATED_VALUES)
    return event, well_formed


MARKS = re.compile(r'"@@(deep|digits):([0-9]+)@@"')


def encode(event: Any, *, ascii_only: bool = True, indent: int | None = 2) -> bytes:
    """JSON bytes as Stripe sends them, with the marks expanded: ``"@@deep:N@@"`` into an
    array nested N deep, ``"@@digits:N@@"`` into an N-digit number (too much for
    ``json.dumps`` itself)."""

    def expand(mark: re.Match) -> str:
        size = int(mark[2])
        return "[" * size + "]" * size if mark[1] == "deep" else "9" * size

    text = MARKS.sub(expand, json.dumps(event, ensure_ascii=ascii_only, indent=indent))
    return text.encode("utf-8", "surrogatepass")


@st.composite
def event_bodies(draw: st.DrawFn) -> bytes:
    event, _ = draw(stripe_events())
    return encode(event, ascii_only=draw(st.booleans()), indent=draw(st.sampled_from([None, 2])))


# Any bytes, any JSON, Stripe-shaped events (the next test sends only those), other
# encodings, deep nesting, huge values.
BODIES = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda value: json.dumps(value).encode(), JSON_VALUES),
    event_bodies(),
    st.builds(
        lambda text, codec: text.encode(codec, "replace"),
        TEXT,
        st.sampled_from(["utf-8", "utf-16", "utf-32", "latin-1", "utf-8-sig"]),
    ),
    st.builds(lambda depth: b"[" * depth + b"]" * depth, st.integers(0, 100_000)),
    st.builds(lambda text: json.dumps({"id": text}).encode(), HUGE_TEXT),
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=latin-1",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "",
    ]
)
HEX = st.text(alphabet="0123456789abcdef", min_size=0, max_size=70)


def _near_miss_secrets() -> st.SearchStrategy:
    near = [SECRET[:-1], SECRET + "x", SECRET.upper(), "whsec_", "", " " + SECRET, "whsec_live"]
    # HMAC pads keys with NUL bytes: "key" and "key\0" sign alike; such a "wrong"
    # secret is the right one.
    return (st.sampled_from(near) | st.text(max_size=30)).filter(
        lambda secret: secret.rstrip("\x00") not in CONFIGURED_SECRETS
    )


@dataclass(frozen=True)
class Header:
    """How to make a ``Stripe-Signature`` that is not valid for the body it goes with."""

    kind: str
    secret: str = SECRET
    offset: int = 0
    text: str = ""
    parts: tuple[tuple[str, str], ...] = ()
    other_body: bytes = b""
    count: int = 0

    def render(self, body: bytes) -> str | None:
        now = int(time.time())
        if self.kind == "missing":
            return None
        if self.kind == "raw":
            return self.text
        if self.kind == "parts":
            return ",".join(f"{key}={value}" for key, value in self.parts)
        if self.kind == "wrong secret":
            return sign(body, self.secret, now + self.offset)
        if self.kind == "stale":
            return sign(body, SECRET, now + self.offset)
        if self.kind == "other body":
            other = self.other_body if self.other_body != body else body + b"\n"
            return sign(other, self.secret, now + self.offset)
        valid = sign(body, self.secret, now + self.offset)
        timestamp, signature = valid.split(",v1=")
        if self.kind == "v0 only":
            return f"{timestamp},v0={signature}"
        if self.kind == "other t":
            return f"t={now + self.offset + self.count},v1={signature}"
        if self.kind == "mangled":
            return f"{timestamp},v1={self.text}"
        if self.kind == "many wrong":  # as many MACs as secrets being rolled, none right
            wrong = [hashlib.sha256(str(n).encode()).hexdigest() for n in range(self.count)]
            return ",".join([timestamp, *(f"v1={value}" for value in wrong)])
        raise AssertionError(self.kind)


def _mangled(signature_text: st.SearchStrategy) -> st.SearchStrategy:
    return st.builds(
        Header, kind=st.just("mangled"), text=signature_text, offset=st.integers(-250, 60)
    )


HEADERS = st.one_of(
    st.just(Header("missing")),
    st.builds(Header, kind=st.just("raw"), text=st.text(max_size=120) | HUGE_TEXT),
    st.builds(
        Header,
        kind=st.just("parts"),
        parts=st.lists(
            st.tuples(
                st.sampled_from(["t", "v1", "v0", "v2", "t ", " v1", "V1"]) | st.text(max_size=4),
                HEX | st.integers().map(str) | st.text(max_size=20),
            ),
            max_size=8,
        ).map(tuple),
    ),
    st.builds(
        Header,
        kind=st.just("wrong secret"),
        secret=_near_miss_secrets(),
        offset=st.integers(-250, 600),
    ),
    st.builds(Header, kind=st.just("stale"), offset=st.integers(-(10**10), -302)),
    st.builds(
        Header,
        kind=st.just("other body"),
        secret=st.sampled_from(CONFIGURED_SECRETS),
        other_body=st.binary(max_size=50).map(lambda extra: b"{}" + extra),
        offset=st.integers(-250, 600),
    ),
    st.builds(Header, kind=st.just("v0 only"), offset=st.integers(-250, 60)),
    st.builds(
        Header,
        kind=st.just("other t"),
        offset=st.integers(-250, 60),
        count=st.integers(-(10**6), 10**6).filter(bool),
    ),
    _mangled(HEX.filter(lambda text: len(text) != 64)),
    _mangled(st.binary(min_size=32, max_size=32).map(bytes.hex)),  # a wrong MAC
    _mangled(st.text(min_size=1, max_size=70)),  # anything, unicode included
    st.builds(
        Header, kind=st.just("many wrong"), count=st.integers(0, 300), offset=st.integers(-250, 60)
    ),
)


# Without a valid signature: nothing happens -------------------------------------------


#: Why a body without a valid signature is refused: never for its content (not JSON, not
#: an event...), which must not be looked at before the signature is verified.
UNSIGNED = (
    "Missing Stripe-Signature header.",
    "Invalid or expired Stripe-Signature.",
    "The webhook body is not UTF-8.",
    "The webhook body is too large",
)


def _assert_refused_and_unchanged(world: World, response, reasons=UNSIGNED) -> None:
    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"].startswith(reasons), response.content[:300]
    world.assert_unchanged()


@fuzz(2_600)
@given(body=BODIES, header=HEADERS, content_type=CONTENT_TYPES)
@example(body=b"x" * (3 * 1024 * 1024), header=Header("missing"), content_type="text/plain")
@example(body=b"{}", header=Header("mangled", text="é" * 64), content_type="application/json")
def test_bodies_without_a_valid_signature_change_nothing(world, body, header, content_type):
    with world.example():
        signature = header.render(body)
        _assert_refused_and_unchanged(world, world.post(body, signature, content_type))


def _genuine_events() -> st.SearchStrategy:
    """Well-formed events that would change something if they were accepted."""
    completed = {"object": "checkout.session", "payment_status": "paid", "status": "complete"}
    candidates = [
        ("checkout.session.completed", {**completed, "id": SESSIONS["pending"]}, ACCOUNT, False),
        ("checkout.session.completed", {**completed, "id": SESSIONS["expired"]}, ACCOUNT, False),
        (
            "checkout.session.async_payment_succeeded",
            {"id": SESSIONS["processing"]},
            ACCOUNT,
            False,
        ),
        ("checkout.session.expired", {"id": SESSIONS["overdue"]}, ACCOUNT, False),
        ("checkout.session.completed", {**completed, "id": SESSIONS["live"]}, LIVE_ACCOUNT, True),
        (
            "customer.subscription.updated",
            {"id": SUBSCRIPTIONS[0], "object": "subscription", "status": "past_due"},
            ACCOUNT,
            False,
        ),
        (
            "account.application.deauthorized",
            {"id": "ca_1", "object": "application"},
            ACCOUNT,
            False,
        ),
        (
            "account.updated",
            {"id": ACCOUNT, "object": "account", "charges_enabled": False},
            ACCOUNT,
            False,
        ),
    ]
    return st.builds(
        lambda candidate, event_id: {
            "id": event_id,
            "object": "event",
            "api_version": "2025-03-31.basil",
            "created": int(time.time()),
            "type": candidate[0],
            "data": {"object": candidate[1]},
            "account": candidate[2],
            "livemode": candidate[3],
        },
        st.sampled_from(candidates),
        EVENT_IDS,
    )


@fuzz(3_200)
@given(
    event=_genuine_events(),
    header=HEADERS,
    content_type=CONTENT_TYPES,
    indent=st.sampled_from([None, 2]),
)
@example(
    event={
        "id": "evt_1",
        "object": "event",
        "type": "checkout.session.completed",
        "livemode": True,
        "account": LIVE_ACCOUNT,
        "data": {"object": {"id": SESSIONS["live"], "payment_status": "paid"}},
    },
    header=Header("wrong secret", secret="whsec_live"),
    content_type="application/json",
    indent=2,
)
def test_bad_signatures_over_genuine_events_change_nothing(
    world, event, header, content_type, indent
):
    body = encode(event, indent=indent)
    with world.example():
        signature = header.render(body)
        _assert_refused_and_unchanged(world, world.post(body, signature, content_type))


def test_a_live_event_signed_with_the_test_secret_is_refused(world):
    # Not generated: the rule that a leaked test secret cannot forge a live payment.
    event = {
        "id": "evt_live_forged",
        "object": "event",
        "type": "checkout.session.completed",
        "livemode": True,
        "account": LIVE_ACCOUNT,
        "data": {"object": {"id": SESSIONS["live"], "payment_status": "paid"}},
    }
    body = encode(event)
    with world.example():
        forged = world.post(body, sign(body), "application/json")
        live_only = "A live-mode event must be signed with a live-mode secret."
        _assert_refused_and_unchanged(world, forged, live_only)
    with world.example():
        response = world.post(body, sign(body, LIVE_SECRET), "application/json")
        assert response.status_code == 200
        assert BillingRequest.objects.get(checkout_session_id=SESSIONS["live"]).status == "paid"


# With a valid signature: only what the event means --------------------------------------

PAID_BY = {"checkout.session.async_payment_succeeded"}
SESSION_TYPES = {
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
}
SUBSCRIPTION_TYPES = {"customer.subscription.updated", "customer.subscription.deleted"}


def _rows(state: dict[str, list], table: str) -> dict[Any, tuple]:
    return {row[0]: row for row in state[table]}


def _changed(before: dict[str, list], after: dict[str, list], table: str) -> dict[Any, tuple]:
    """Rows of ``table`` that are new or differ, by pk, with their old row (or None)."""
    old = _rows(before, table)
    assert set(old) <= set(_rows(after, table)), f"{table}: rows disappeared"
    return {pk: old.get(pk) for pk, row in _rows(after, table).items() if old.get(pk) != row}


REQUEST_FIELDS = (
    "pk",
    "status",
    "paid_at",
    "expired_at",
    "deleted_at",
    "payment_state",
    "late_payment",
    "subscription_id",
    "subscription_status",
    "client_asked_at",
    "checkout_session_id",
    "mode",
)


def _as_dict(row: tuple) -> dict[str, Any]:
    return dict(zip(REQUEST_FIELDS, row, strict=True))


def _check_request_change(event: dict, payload: dict, old: dict, new: dict) -> str:
    """Assert that one billing request changed as ``payload`` means; return the action."""
    obj = payload["data"]["object"]
    kind = payload["type"]
    mode = "live" if payload["livemode"] else "test"
    assert new["mode"] == mode, "an event of the other mode changed a request"
    changed = {key for key in new if new[key] != old[key]}
    if kind in SUBSCRIPTION_TYPES:
        assert old["subscription_id"] == obj.get("id")
        status = obj.get("status") or ""
        assert changed == {"subscription_status"}
        assert new["subscription_status"] == (status if isinstance(status, str) else str(status))
        return ""
    assert kind in SESSION_TYPES, f"{kind} changed a billing request"
    assert isinstance(obj.get("id"), str) and old["checkout_session_id"] == obj["id"]
    paid = kind in PAID_BY or (
        kind == "checkout.session.completed"
        and obj.get("payment_status") in ("paid", "no_payment_required")
    )
    if paid:
        assert old["status"] != Status.PAID and new["status"] == Status.PAID
        assert new["paid_at"] is not None and new["payment_state"] == ""
        assert new["late_payment"] == (old["status"] != Status.PENDING)
        assert changed <= {
            "status",
            "paid_at",
            "payment_state",
            "late_payment",
            "subscription_id",
            "subscription_status",
        }
        return billing.ACTION_PAID
    assert old["status"] == Status.PENDING, "a final request changed"
    if kind == "checkout.session.completed":
        assert new["payment_state"] == BillingRequest.PaymentState.PROCESSING
        assert changed <= {"payment_state", "subscription_id"}
        return ""
    if kind == "checkout.session.async_payment_failed":
        assert changed == {"payment_state"}
        assert new["payment_state"] == BillingRequest.PaymentState.FAILED
        return billing.ACTION_PAYMENT_FAILED
    assert kind == "checkout.session.expired"
    assert changed == {"status", "expired_at"} and new["status"] == Status.EXPIRED
    return billing.ACTION_EXPIRED


def _check_consistent(world: World, event: Any, response, after: dict[str, list]) -> str:
    """The changes after an accepted event are the ones it means; return its outcome."""
    before = world.baseline
    assert response.status_code in (200, 500), response.content[:300]
    answer = response.json()
    assert answer["id"] == event["id"]
    stored = WebhookEvent.objects.get(stripe_id=event["id"])
    assert answer["status"] == (EVENT.FAILED if response.status_code == 500 else stored.status)
    changed_events = _changed(before, after, "events")
    assert set(changed_events) <= {stored.pk}
    if event["id"] == SEEN_EVENT:  # a duplicate: acknowledged, nothing else
        assert response.status_code == 200 and answer["status"] == EVENT.PROCESSED
        assert after == before
        return "duplicate"
    if response.status_code == 500:
        assert stored.status == EVENT.FAILED and stored.error.startswith("Traceback")
    # What is applied is the stored payload (a redelivery of a failed event reuses it).
    payload = stored.payload
    requests = _changed(before, after, "requests")
    changed_connections = _changed(before, after, "connections")
    notifications = _changed(before, after, "notifications")
    assert _changed(before, after, "emails") == {}
    new_log = [_rows(after, "log")[pk] for pk in _changed(before, after, "log")]
    if stored.status != EVENT.PROCESSED:
        assert not (requests or changed_connections or notifications or new_log), stored.status
        assert after["mail"] == before["mail"]
        return f"{stored.status}: {stored.note}" if stored.note else stored.status
    mode = "live" if payload["livemode"] else "test"
    expected_log: Counter[tuple[str, str]] = Counter()
    for pk, old_row in requests.items():
        assert old_row is not None, "a webhook created a billing request"
        new = _as_dict(_rows(after, "requests")[pk])
        action = _check_request_change(event, payload, _as_dict(old_row), new)
        if action:
            expected_log[(action, str(pk))] += 1
    if changed_connections:
        assert payload["type"] in ("account.updated", "account.application.deauthorized")
        (pk,) = changed_connections
        connection = StripeConnection.objects.get(pk=pk)
        assert connection.mode == mode and connection.account_id == payload.get("account")
        if payload["type"] == "account.application.deauthorized":
            assert connection.unlinked_at is not None
            expected_log[(connections.ACTION_UNLINK, str(pk))] += 1
        else:
            assert payload["data"]["object"].get("id") == connection.account_id
            if connection.onboarded_at and not changed_connections[pk][9]:
                expected_log[(connections.ACTION_ONBOARDED, str(pk))] += 1
    assert Counter((action, object_id) for _, action, object_id in new_log) == expected_log
    # Notifications: one per request that became paid or newly past due; each mailed.
    for pk in notifications:
        _, key, kind, request_id = _rows(after, "notifications")[pk]
        new = _as_dict(_rows(after, "requests")[request_id])
        if kind == OutgoingEmail.Kind.PAID:
            assert key == f"paid-{request_id}" and new["status"] == Status.PAID
        else:
            assert kind == OutgoingEmail.Kind.PAYMENT_FAILED
            assert new["subscription_status"] == "past_due"
            assert _as_dict(requests[request_id])["subscription_status"] != "past_due"
    assert len(after["mail"]) - len(before["mail"]) == len(notifications)
    assert all(to == (ADMIN_EMAIL,) for _, to in after["mail"])
    return "processed" if (requests or changed_connections) else "processed, no change"


@dataclass(frozen=True)
class Signing:
    secret: str
    offset: int
    extra: tuple[str, ...]  # more entries after the valid one (rotation, v0...)

    def header(self, body: bytes) -> str:
        return ",".join([sign(body, self.secret, int(time.time()) + self.offset), *self.extra])


SIGNINGS = st.builds(
    Signing,
    secret=st.sampled_from(CONFIGURED_SECRETS),
    offset=st.integers(-250, 3600),  # Stripe's verifier accepts timestamps from the future
    extra=st.lists(
        st.builds(
            "{}={}".format,
            st.sampled_from(["v1", "v0", "x"]),
            st.binary(max_size=32).map(bytes.hex),
        ),
        max_size=3,
    ).map(tuple),
)
OUTCOMES: Counter[str] = Counter()
UNSTORABLE = re.compile(rb"\\u0000|\\u[dD][89a-fA-F]|NaN|Infinity|\[{40}|[0-9]{4301}")


def plain(body: bytes) -> bool:
    """Valid UTF-8 with nothing a database may refuse to store as JSON."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not UNSTORABLE.search(body)


def _event(obj: dict[str, Any], **fields: Any) -> tuple[dict[str, Any], bool]:
    """A checkout.session.completed event (for the explicit examples)."""
    event = {
        "id": "evt_explicit",
        "object": "event",
        "type": "checkout.session.completed",
        "livemode": False,
        "account": ACCOUNT,
        "data": {"object": obj},
        **fields,
    }
    return event, False


PAID = {"id": SESSIONS["pending"], "payment_status": "paid"}


def signed(event: tuple[dict[str, Any], bool], secret: str = SECRET) -> dict[str, Any]:
    """The arguments of an explicit example: ``event`` signed now with ``secret``."""
    return {
        "event": event,
        "signing": Signing(secret, 0, ()),
        "ascii_only": True,
        "indent": None,
        "content_type": "application/json",
    }


@fuzz(500)
@given(
    event=stripe_events(),
    signing=SIGNINGS,
    ascii_only=st.booleans(),
    indent=st.sampled_from([None, 2]),
    content_type=CONTENT_TYPES,
)
# What Stripe never sends but a signed body may hold: not JSON, not storable...
@example(**signed(_event({"id": float("inf")})))
@example(**signed(_event({**PAID, "x": "@@deep:100000@@"})))
@example(**signed(_event({**PAID, "x": "@@deep:700@@"})))
@example(**signed(_event(PAID, type="\ud800")))
@example(**signed(_event(PAID, account="acct_\ud800")))
@example(**signed(_event({**PAID, "x": "\x00"})))
@example(**signed(_event({**PAID, "x": "\ud800"}, api_version="\udfff")))
@example(**signed(_event({**PAID, "x": "@@digits:5000@@"})))
# ...and the event it means, signed with the right secret for its mode or not.
@example(**signed(_event(PAID)))
@example(**signed(_event(PAID, livemode=True, account=LIVE_ACCOUNT)))
@example(**signed(_event(PAID, livemode=True, account=LIVE_ACCOUNT), LIVE_SECRET))
def test_validly_signed_events_change_only_what_they_mean(
    world, event, signing, ascii_only, indent, content_type, django_capture_on_commit_callbacks
):
    event, well_formed = event
    try:
        body = encode(event, ascii_only=ascii_only, indent=indent)
    except UnicodeEncodeError:  # a lone surrogate cannot be sent unescaped
        body = encode(event, indent=indent)
    with world.example():
        # Run what a commit would (notifications and their emails), inside the example.
        with django_capture_on_commit_callbacks(execute=True):
            response = world.post(body, signing.header(body), content_type)
        after = snapshot()
        live_forged = event.get("livemode") is True and signing.secret != LIVE_SECRET
        if response.status_code == 400:
            assert after == world.baseline
            # Refused although validly signed: only a bad shape, a forged live event, or
            # what the database cannot store (NUL, NaN, lone surrogates, deep nesting).
            assert not plain(body) or not well_formed or live_forged, "a genuine event refused"
            assert "Stripe-Signature" not in response.json()["error"], "signed, yet refused"
            OUTCOMES["400"] += 1
        else:
            assert not live_forged, "a live event signed with the test secret was accepted"
            OUTCOMES[_check_consistent(world, event, response, after).split(":")[0]] += 1


def test_the_fuzz_suite_runs_at_least_10000_examples(capsys):
    """At least 10,000 examples ran in this session, as counted by the examples themselves
    (not the targets the decorators declare); print what ran."""
    from tests import test_fuzz_forms  # registers its tests' targets

    assert test_fuzz_forms.EXAMPLES is EXAMPLES
    with capsys.disabled():
        print("\nFuzz examples (target / run in this session):")
        for name, target in TARGETS.items():
            wall, cpu = SECONDS.get(name, (0, 0))
            print(f"  {name}: {target} / {EXAMPLES.get(name, 0)} ({wall:.1f} s, cpu {cpu:.1f} s)")
        print(f"  total: {sum(TARGETS.values())} / {sum(EXAMPLES.values())}")
        if OUTCOMES:
            print(f"  validly signed events: {dict(OUTCOMES)}")
    not_run = sorted(set(TARGETS) - set(EXAMPLES))
    if not_run:  # deselected (-k), or run by another xdist worker: nothing to count here
        pytest.skip(f"counts only after every fuzz test ran in this process; not run: {not_run}")
    assert sum(EXAMPLES[name] for name in TARGETS) >= 10_000
