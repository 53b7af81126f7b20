"""Response-time report per therapist from closed SLA clocks (`confidant sla report`).

Response times are in working time. The median is the usual one (mean of the two
middle values for an even count); the 90th percentile is the nearest-rank value, so
it is always a response time that really happened.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bridge.core.sla import Clock, ClockState
from bridge.core.workhours import as_utc

ALL = "(all)"
CSV_FIELDS = (
    "therapist_id",
    "replies",
    "median_seconds",
    "p90_seconds",
    "met_share",
    "breaches",
    "open_overdue",
)


@dataclass(frozen=True, slots=True)
class TherapistStats:
    """One row of the report."""

    therapist_id: str
    replies: int
    median: timedelta | None
    p90: timedelta | None
    #: Share of replies within the due time (0..1); None without replies.
    met_share: float | None
    #: Replies after the due time.
    breaches: int
    #: Clocks still open and past due at the report's `now`.
    open_overdue: int = 0


def nearest_rank(values: Sequence[timedelta], percentile: float) -> timedelta:
    """The nearest-rank percentile of non-empty `values` (0 < percentile <= 100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(percentile / 100 * len(ordered)))
    return ordered[rank - 1]


def _median(values: Sequence[timedelta]) -> timedelta:
    seconds = statistics.median(v.total_seconds() for v in values)
    return timedelta(seconds=seconds)


def _row(therapist_id: str, closed: Sequence[Clock], overdue: int) -> TherapistStats:
    times = [c.response_working for c in closed if c.response_working is not None]
    met = sum(1 for c in closed if c.met)
    return TherapistStats(
        therapist_id=therapist_id,
        replies=len(closed),
        median=_median(times) if times else None,
        p90=nearest_rank(times, 90) if times else None,
        met_share=met / len(closed) if closed else None,
        breaches=sum(1 for c in closed if c.met is False),
        open_overdue=overdue,
    )


def summarize(
    clocks: Iterable[Clock],
    *,
    now: datetime | None = None,
    total: bool = True,
) -> list[TherapistStats]:
    """Aggregate clocks into one row per therapist (sorted), plus an `(all)` row if `total`.

    Closed clocks count as replies; with `now`, open clocks past due count as `open_overdue`.
    Cancelled clocks are left out.
    """
    closed: dict[str, list[Clock]] = defaultdict(list)
    overdue: dict[str, int] = defaultdict(int)
    at = as_utc(now) if now is not None else None
    for clock in clocks:
        if clock.state is ClockState.CLOSED:
            closed[clock.therapist_id].append(clock)
        elif clock.state is ClockState.OPEN and at is not None and clock.due_at < at:
            overdue[clock.therapist_id] += 1
    rows = [_row(t, closed.get(t, []), overdue.get(t, 0)) for t in sorted({*closed, *overdue})]
    if total and rows:
        everything = [c for t in sorted(closed) for c in closed[t]]
        rows.append(_row(ALL, everything, sum(overdue.values())))
    return rows


def _hours(value: timedelta | None) -> str:
    if value is None:
        return "-"
    minutes = round(value.total_seconds() / 60)
    return f"{minutes // 60}:{minutes % 60:02d}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def render_table(rows: Sequence[TherapistStats]) -> str:
    """A plain-text table; durations as working hours `H:MM`."""
    header = ("therapist", "replies", "median", "p90", "met", "breaches", "open overdue")
    lines = [
        (
            r.therapist_id,
            str(r.replies),
            _hours(r.median),
            _hours(r.p90),
            _share(r.met_share),
            str(r.breaches),
            str(r.open_overdue),
        )
        for r in rows
    ]
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines, strict=True)]

    def fmt(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *(fmt(line) for line in lines)]) + "\n"


def render_csv(rows: Sequence[TherapistStats]) -> str:
    """CSV with durations in whole seconds and the met share as a fraction."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for r in rows:
        writer.writerow(
            [
                r.therapist_id,
                r.replies,
                "" if r.median is None else round(r.median.total_seconds()),
                "" if r.p90 is None else round(r.p90.total_seconds()),
                "" if r.met_share is None else f"{r.met_share:.4f}",
                r.breaches,
                r.open_overdue,
            ]
        )
    return buffer.getvalue()
