"""The admin index dashboard: 30 days of lifecycle outcomes as a server-drawn SVG, and counts.

The chart's rejected total and the reasons table below it count the same rows (lifecycle
requests that failed verification, in the same 30 days), so they always agree. Webhook
verification failures and requests that were never Connect calls are counted on lines of their
own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from django.core.cache import cache
from django.db.models import Q, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from lifecycle.admin import explain
from lifecycle.models import NOT_A_CONNECT_CALL
from tenants.models import Installation, LifecycleEvent

DAYS = 30
WIDTH, HEIGHT, PAD = 720, 180, 28
LIFECYCLE_EVENTS = ("installed", "uninstalled", "enabled", "disabled")


@dataclass(frozen=True)
class DayBar:
    day: date
    accepted: int
    rejected: int
    x: float
    width: float
    accepted_y: float
    accepted_h: float
    rejected_y: float
    rejected_h: float


def daily_counts(today: date, days: int = DAYS) -> list[tuple[date, int, int]]:
    """(day, accepted, rejected) lifecycle requests per day, oldest first, ``days`` days ending today."""
    start = today - timedelta(days=days - 1)
    rows = (
        LifecycleEvent.objects.filter(created_at__date__gte=start, event_type__in=LIFECYCLE_EVENTS)
        .exclude(NOT_A_CONNECT_CALL)
        .annotate(day=TruncDate("created_at"))
        .values("day", "outcome")
        .annotate(n=Sum("count"))
    )
    counts: dict[date, dict[str, int]] = {}
    for row in rows:
        counts.setdefault(row["day"], {})[row["outcome"]] = row["n"]
    return [
        (day, counts.get(day, {}).get("accepted", 0), counts.get(day, {}).get("rejected", 0))
        for day in (start + timedelta(days=i) for i in range(days))
    ]


def bars(series: list[tuple[date, int, int]]) -> tuple[list[DayBar], int]:
    """Stacked bar geometry (accepted below, rejected on top) scaled to the busiest day."""
    peak = max([a + r for _, a, r in series] + [1])
    slot = (WIDTH - 2 * PAD) / len(series)
    usable = HEIGHT - 2 * PAD
    result = []
    for i, (day, accepted, rejected) in enumerate(series):
        accepted_h = usable * accepted / peak
        rejected_h = usable * rejected / peak
        base = HEIGHT - PAD
        result.append(
            DayBar(
                day,
                accepted,
                rejected,
                x=PAD + i * slot + 1,
                width=max(slot - 2, 1),
                accepted_y=base - accepted_h,
                accepted_h=accepted_h,
                rejected_y=base - accepted_h - rejected_h,
                rejected_h=rejected_h,
            )
        )
    return result, peak


def _requests(rows: Any) -> int:
    """How many requests some audit rows stand for (a folded row counts each of its requests)."""
    return int(rows.aggregate(n=Sum("count"))["n"] or 0)


CACHE_SECONDS = 60


def context() -> dict[str, Any]:
    """Everything the dashboard template shows, computed at most once a minute (Django cache).

    Its aggregates scan 30 days of audit rows: seconds at millions of rows, so operators share
    one result for ``CACHE_SECONDS``.
    """
    try:
        cached = cache.get("connect:dashboard")
    except Exception:  # no cache: compute it
        cached = None
    if cached is not None:
        return cached
    fresh = compute()
    try:
        cache.set("connect:dashboard", fresh, CACHE_SECONDS)
    except Exception:  # noqa: S110 - shown all the same
        pass
    return fresh


def compute() -> dict[str, Any]:
    """Everything the dashboard template shows, from the database."""
    now = timezone.now()
    series = daily_counts(timezone.localdate(now))
    day_bars, peak = bars(series)
    since = now - timedelta(hours=24)
    window = LifecycleEvent.objects.filter(
        outcome=LifecycleEvent.Outcome.REJECTED, created_at__date__gte=series[0][0]
    )
    verification = window.exclude(NOT_A_CONNECT_CALL)
    by_reason = (
        verification.filter(event_type__in=LIFECYCLE_EVENTS)
        .values("reason")
        .annotate(n=Sum("count"), n_24h=Coalesce(Sum("count", filter=Q(created_at__gte=since)), 0))
        .order_by("-n", "reason")
    )
    return {
        "bars": day_bars,
        "peak": peak,
        "width": WIDTH,
        "height": HEIGHT,
        "pad": PAD,
        "baseline": HEIGHT - PAD,
        "first_day": series[0][0],
        "last_day": series[-1][0],
        "accepted_total": sum(a for _, a, _ in series),
        "rejected_total": sum(r for _, _, r in series),
        "installed_tenants": Installation.objects.filter(state=Installation.State.INSTALLED).count(),
        "suspended_tenants": Installation.objects.filter(suspended=True).count(),
        "rejections": [
            {
                "reason": row["reason"],
                "count": row["n"],
                "count_24h": row["n_24h"],
                "explanation": explain(row["reason"]),
            }
            for row in by_reason
        ],
        "webhook_rejections": _requests(verification.filter(event_type="webhook")),
        "not_connect_calls": _requests(window.filter(NOT_A_CONNECT_CALL)),
    }
