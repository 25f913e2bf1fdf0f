"""The admin index dashboard: 30 days of lifecycle outcomes as a server-drawn SVG, and counts.

The chart's rejected total and the reasons table below it count the same rows (lifecycle
requests that failed verification, in the same 30 days), so they always agree. Webhook
verification failures and requests that were never Connect calls are counted on lines of their
own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from time import monotonic
from typing import Any, cast

from django.core.cache import cache
from django.db.models import Case, Sum, Value, When
from django.db.models.functions import ExtractMinute, Floor, Trunc, TruncDate
from django.utils import timezone

from audit.admin import explain
from audit.models import NOT_A_CONNECT_CALL, AuditTally, AuditTallyMark, LifecycleEvent
from tenants.conf import tenant_settings
from tenants.models import Installation

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
    return _series(Counts.since(_midnight(today - timedelta(days=days - 1))), today, days)


def _series(counts: Counts, today: date, days: int) -> list[tuple[date, int, int]]:
    start = today - timedelta(days=days - 1)
    per_day = counts.lifecycle_per_day()
    return [
        (day, per_day.get((day, "accepted"), 0), per_day.get((day, "rejected"), 0))
        for day in (start + timedelta(days=i) for i in range(days))
    ]


def _midnight(day: date) -> datetime:
    """The start of ``day`` in the current time zone, as an aware datetime."""
    return timezone.make_aware(datetime.combine(day, time.min))


# --- Tallies: closed quarter hours counted once, so no page scans 30 days of rows -------------

BUCKET = timedelta(minutes=15)
# Past AUDIT_FOLD_SECONDS, a margin for rows whose created_at was taken just before they commit.
CLOSE_MARGIN = timedelta(seconds=60)
KIND = Case(
    When(NOT_A_CONNECT_CALL, then=Value("not_connect")),
    When(event_type__in=LIFECYCLE_EVENTS, then=Value("lifecycle")),
    When(event_type="webhook", then=Value("webhook")),
    default=Value("other"),
)


def quarter_floor(moment: datetime) -> datetime:
    """The start of the UTC quarter hour holding ``moment`` (every time zone's midnight is one)."""
    moment = moment.astimezone(UTC)
    return moment.replace(minute=moment.minute - moment.minute % 15, second=0, microsecond=0)


def closed_until(now: datetime) -> datetime:
    """Quarter hours before this are closed: none of their rows can still be written or folded into."""
    return quarter_floor(now - timedelta(seconds=tenant_settings.AUDIT_FOLD_SECONDS) - CLOSE_MARGIN)


def tally(now: datetime, budget: float | None = None) -> datetime:
    """Count the closed quarter hours of the last 31 days not yet counted; return how far tallies go.

    A day at a time, each one ``GROUP BY`` over an index range on ``created_at``: all of 31 days
    the first time, then the few minutes since the last call. With ``budget`` (seconds), it
    stops after the day that exceeds it, and the returned mark may lie before
    :func:`closed_until`. Idempotent and safe to run concurrently: a closed quarter hour always
    counts the same, rows already tallied are skipped by the unique constraint, and the mark
    only moves forward.
    """
    until = closed_until(now)
    horizon = quarter_floor(now - timedelta(days=DAYS + 1))
    mark = AuditTallyMark.objects.filter(pk=1).values_list("tallied_until", flat=True).first()
    start = horizon if mark is None else max(mark, horizon)
    if mark is not None and start >= until:
        return mark
    deadline = None if budget is None else monotonic() + budget
    while start < until:
        end = min(start + timedelta(days=1), until)
        _tally_range(start, end)
        start = end
        if deadline is not None and monotonic() >= deadline:
            break  # at least one day per call
    AuditTally.objects.filter(bucket__lt=horizon).delete()
    return start


def _tally_range(start: datetime, end: datetime) -> None:
    """Count the rows created in [start, end) (quarter hours, closed) and move the mark to ``end``."""
    rows = (
        LifecycleEvent.objects.filter(created_at__gte=start, created_at__lt=end)
        .annotate(
            hour=Trunc("created_at", "hour", tzinfo=UTC),
            quarter=Floor(ExtractMinute("created_at", tzinfo=UTC) / 15),
            kind=KIND,
        )
        .values("hour", "quarter", "kind", "outcome", "reason")
        .annotate(n=Sum("count"))
        .order_by()
    )
    tallies = [
        AuditTally(
            bucket=row["hour"] + int(row["quarter"]) * BUCKET,
            kind=row["kind"],
            outcome=row["outcome"],
            reason=row["reason"],
            requests=row["n"],
        )
        for row in rows
    ]
    AuditTally.objects.bulk_create(tallies, batch_size=500, ignore_conflicts=True)
    AuditTallyMark.objects.get_or_create(pk=1, defaults={"tallied_until": end})
    AuditTallyMark.objects.filter(pk=1, tallied_until__lt=end).update(tallied_until=end)


@dataclass(frozen=True)
class Counts:
    """Requests counted from ``start`` on: tallies of closed quarter hours, live rows after them."""

    start: datetime
    until: datetime  # tallies end here; live rows start here

    @classmethod
    def since(cls, start: datetime, tallied_until: datetime | None = None) -> Counts:
        """Counts from ``start``, tallying first unless told how far tallies go."""
        until = tally(timezone.now()) if tallied_until is None else tallied_until
        return cls(start, max(until, quarter_floor(start)))

    def _parts(self, start: datetime | None = None) -> list[tuple[Any, str, str]]:
        """(rows, time field, count field) whose sums together cover [start, now)."""
        start = start or self.start
        first_whole = quarter_floor(start) + (BUCKET if start != quarter_floor(start) else timedelta(0))
        live = LifecycleEvent.objects.annotate(kind=KIND)
        edge = min(first_whole, self.until)
        return [
            (AuditTally.objects.filter(bucket__gte=first_whole, bucket__lt=self.until), "bucket", "requests"),
            (live.filter(created_at__gte=start, created_at__lt=edge), "created_at", "count"),
            (live.filter(created_at__gte=max(self.until, start)), "created_at", "count"),
        ]

    def lifecycle_per_day(self) -> dict[tuple[date, str], int]:
        """{(local day, outcome): requests} of lifecycle calls."""
        result: dict[tuple[date, str], int] = {}
        for rows, moment, number in self._parts():
            grouped = (
                rows.filter(kind="lifecycle")
                .annotate(day=TruncDate(moment))
                .values("day", "outcome")
                .annotate(n=Sum(number))
                .order_by()
            )
            for row in grouped:
                key = (row["day"], row["outcome"])
                result[key] = result.get(key, 0) + int(row["n"])
        return result

    def rejected_by_reason(self, kind: str, start: datetime | None = None) -> dict[str, int]:
        """{reason: requests} rejected among ``kind`` calls (from ``start``, default the window's)."""
        result: dict[str, int] = {}
        for rows, _, number in self._parts(start):
            grouped = (
                rows.filter(kind=kind, outcome=LifecycleEvent.Outcome.REJECTED)
                .values("reason")
                .annotate(n=Sum(number))
                .order_by()
            )
            for row in grouped:
                result[row["reason"]] = result.get(row["reason"], 0) + int(row["n"])
        return result


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


CACHE_SECONDS = 60
# Seconds of tallying one render may spend: a first render over a long history (about 9 s for
# 5 million rows in 31 days on PostgreSQL) finishes over several renders, well within any
# worker timeout.
TALLY_BUDGET = 3.0


def context() -> dict[str, Any]:
    """Everything the dashboard template shows, computed at most once a minute (Django cache)."""
    try:
        cached = cache.get("connect:dashboard")
    except Exception:  # no cache: compute it
        cached = None
    if cached is not None:
        return cast(dict[str, Any], cached)
    fresh = compute()
    if fresh.get("counting"):
        return fresh  # not cached: the next render goes on counting
    try:
        cache.set("connect:dashboard", fresh, CACHE_SECONDS)
    except Exception:  # noqa: S110 - shown all the same
        pass
    return fresh


def compute() -> dict[str, Any]:
    """Everything the dashboard template shows, from the tallies and the last minutes' rows.

    While older quarter hours are still to be tallied (the first renders over a long history),
    ``{"counting": True, "tallied_until": ..., "days_left": ...}`` instead.
    """
    now = timezone.now()
    today = timezone.localdate(now)
    tallied_until = tally(now, budget=TALLY_BUDGET)
    if tallied_until < (closed := closed_until(now)):
        days_left = (closed - tallied_until).days + 1
        return {"counting": True, "tallied_until": tallied_until, "days_left": days_left}
    counts = Counts.since(_midnight(today - timedelta(days=DAYS - 1)), tallied_until)
    series = _series(counts, today, DAYS)
    day_bars, peak = bars(series)
    by_reason = counts.rejected_by_reason("lifecycle")
    last_day = counts.rejected_by_reason("lifecycle", start=now - timedelta(hours=24))
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
                "reason": reason,
                "count": n,
                "count_24h": last_day.get(reason, 0),
                "explanation": explain(reason),
            }
            for reason, n in sorted(by_reason.items(), key=lambda item: (-item[1], item[0]))
        ],
        "webhook_rejections": sum(counts.rejected_by_reason("webhook").values()),
        "not_connect_calls": sum(counts.rejected_by_reason("not_connect").values()),
    }
