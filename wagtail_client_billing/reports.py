"""Totals per currency, monthly paid amounts, latest payments: a few queries each."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from django.db.models import BigIntegerField, Case, Count, F, Q, QuerySet, Sum, When
from django.db.models.functions import TruncMonth
from django.utils import timezone

from .models import BillingRequest
from .money import format_money

Status = BillingRequest.Status
# Subscriptions that bring money (or still try to), and those whose last payment failed.
RECURRING = ("active", "trialing", "past_due")
AT_RISK = ("past_due", "unpaid")


@dataclass(frozen=True)
class Total:
    """Per currency: the amount net of refunds, what was refunded, how many requests."""

    currency: str
    amount: int
    count: int
    refunded: int = 0


def month_start(now: datetime | None = None) -> datetime:
    now = timezone.localtime(now or timezone.now())
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _totals(queryset: QuerySet, condition: Q) -> list[Total]:
    per_currency = queryset.filter(condition).values("currency").order_by("currency")
    rows = per_currency.annotate(  # index-only
        amount=Sum("amount"), refunded=Sum("refunded_amount"), count=Count("*")
    )
    return [
        Total(row["currency"], (row["amount"] or 0) - (row["refunded"] or 0), row["count"],
              row["refunded"] or 0)
        for row in rows
    ]  # fmt: skip


def totals(queryset: QuerySet, now: datetime | None = None) -> dict[str, list[Total]]:
    """Paid this month, pending now and expired this month, per currency (3 queries).

    Pending now: the links a client can still pay, not those past their expiry that the
    sweep is about to expire; each total reads only its own rows from an index (the month,
    the last day's pending links), so a table of a million costs what one of 100,000 does."""
    now = now or timezone.now()
    start = month_start(now)
    payable = Q(status=Status.PENDING, expires_at__gt=now)
    return {
        "paid_this_month": _totals(queryset, Q(status=Status.PAID, paid_at__gte=start)),
        "pending": _totals(queryset, payable),
        "expired_this_month": _totals(queryset, Q(status=Status.EXPIRED, expired_at__gte=start)),
    }


@dataclass(frozen=True)
class Recurring:
    """Per currency: the subscriptions' monthly revenue (MRR: a yearly one counts a twelfth),
    how many bring it, and how many are at risk (their last payment failed)."""

    currency: str
    amount: int
    count: int
    at_risk: int


def recurring(queryset: QuerySet) -> list[Recurring]:
    """Monthly recurring revenue and subscriptions at risk, per currency (1 query, from the
    partial index of live subscriptions)."""
    bringing, failing = Q(subscription_status__in=RECURRING), Q(subscription_status__in=AT_RISK)
    monthly = Case(
        When(billing_type="yearly", then=F("amount") / 12),
        default=F("amount"),
        output_field=BigIntegerField(),
    )
    live = queryset.filter(status=Status.PAID, subscription_status__in=RECURRING + AT_RISK)
    rows = (
        live.values("currency")
        .order_by("currency")
        .annotate(
            mrr=Sum(monthly, filter=bringing),
            count=Count("pk", filter=bringing),
            at_risk=Count("pk", filter=failing),
        )
    )
    return [Recurring(r["currency"], r["mrr"] or 0, r["count"], r["at_risk"]) for r in rows]


def latest_payments(queryset: QuerySet, limit: int = 5) -> list[BillingRequest]:
    """The most recent paid requests (1 query)."""
    paid = queryset.filter(status=Status.PAID, paid_at__isnull=False).select_related("site")
    return list(paid.order_by("-paid_at")[:limit])


def _month_index(day: date) -> int:
    return day.year * 12 + day.month - 1


def paid_per_month(
    queryset: QuerySet, months: int = 12, now: datetime | None = None
) -> dict[str, list[tuple[date, int]]]:
    """Paid amounts net of refunds per currency for each of the last ``months`` months (1
    query)."""
    end = month_start(now)
    first = _month_index(end.date()) - (months - 1)
    labels = [date((first + i) // 12, (first + i) % 12 + 1, 1) for i in range(months)]
    start = end.replace(year=labels[0].year, month=labels[0].month)
    paid = queryset.filter(status=Status.PAID, paid_at__gte=start).order_by()
    per_month = paid.annotate(month=TruncMonth("paid_at")).values("currency", "month")
    rows = per_month.annotate(amount=Sum(F("amount") - F("refunded_amount")))
    series: dict[str, list[int]] = {}
    for row in rows:
        month = row["month"]
        slot = _month_index(month.date() if isinstance(month, datetime) else month) - first
        if 0 <= slot < months:
            series.setdefault(row["currency"], [0] * months)[slot] += row["amount"] or 0
    return {
        currency: list(zip(labels, values, strict=True))
        for currency, values in sorted(series.items())
    }


def chart(
    series: dict[str, list[tuple[date, int]]], width: int = 480, height: int = 140
) -> dict[str, Any]:
    """Bar geometry for a server-rendered SVG of one currency's monthly paid amounts."""
    if not series:
        return {}
    currency, points = max(series.items(), key=lambda item: sum(v for _, v in item[1]))
    top = max((value for _, value in points), default=0) or 1
    slot = width / len(points)
    bars = []
    for index, (month, value) in enumerate(points):
        bar_height = round(value / top * (height - 20), 1)
        bars.append(
            {
                "x": round(index * slot + 2, 1),
                "y": round(height - 16 - bar_height, 1),
                "width": round(slot - 4, 1),
                "height": bar_height,
                "month": month,
                "label": format_money(value, currency),
            }
        )
    return {"currency": currency, "bars": bars, "width": width, "height": height}
