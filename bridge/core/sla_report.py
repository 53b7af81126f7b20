"""Response-time report per therapist or per policy from SLA clocks (`confidant sla report`).

Each response time counts in its own policy's clock: working time for a working-time
window, calendar time for a round-the-clock one; each row says which (`mixed` when a
therapist's pairs use both). A breach's lateness (reply time past due) counts the same way.
The median is the usual one (mean of the two middle values for an even count); the 90th
percentile is the nearest-rank value, so it is always a response time that really happened.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from bridge.core.sla import Clock, ClockState
from bridge.core.workhours import WindowClock, WorkingCalendar, as_utc

#: What the rows are per.
GroupBy = Literal["therapist", "policy"]

ALL = "(all)"
CSV_FIELDS = (
    "therapist_id",
    "replies",
    "median_seconds",
    "p90_seconds",
    "met_share",
    "breaches",
    "open_overdue",
    "clock",
    "late_seconds",
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
    #: The clock the times count in: "working", "calendar", or "mixed".
    clock: str = "working"
    #: How late each breach was (reply time past due), longest first.
    lateness: tuple[timedelta, ...] = ()

    @property
    def late_max(self) -> timedelta | None:
        """The latest reply past due, if any."""
        return self.lateness[0] if self.lateness else None


def nearest_rank(values: Sequence[timedelta], percentile: float) -> timedelta:
    """The nearest-rank percentile of non-empty `values` (0 < percentile <= 100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(percentile / 100 * len(ordered)))
    return ordered[rank - 1]


def _median(values: Sequence[timedelta]) -> timedelta:
    seconds = statistics.median(v.total_seconds() for v in values)
    return timedelta(seconds=seconds)


@dataclass(frozen=True, slots=True)
class _Counting:
    """How each clock's times count: its policy's clock, and the practice's hours."""

    clocks_of: Mapping[str, WindowClock]
    cal: WorkingCalendar | None

    def kind(self, clock: Clock) -> WindowClock:
        return self.clocks_of.get(clock.policy, "working")

    def response(self, clock: Clock) -> timedelta | None:
        if self.kind(clock) == "calendar":
            return clock.response_calendar
        return clock.response_working

    def lateness(self, clock: Clock) -> timedelta | None:
        if clock.met is not False or clock.closed_at is None:
            return None
        if self.kind(clock) == "working" and self.cal is not None:
            return self.cal.working_time_between(clock.due_at, clock.closed_at)
        return max(clock.closed_at - clock.due_at, timedelta(0))


def _clock_label(kinds: set[WindowClock]) -> str:
    if len(kinds) == 1:
        return next(iter(kinds))
    return "mixed" if kinds else "-"


def _row(
    key: str, closed: Sequence[Clock], overdue: Sequence[Clock], counting: _Counting
) -> TherapistStats:
    times = [t for c in closed if (t := counting.response(c)) is not None]
    late = [t for c in closed if (t := counting.lateness(c)) is not None]
    met = sum(1 for c in closed if c.met)
    return TherapistStats(
        therapist_id=key,
        replies=len(closed),
        median=_median(times) if times else None,
        p90=nearest_rank(times, 90) if times else None,
        met_share=met / len(closed) if closed else None,
        breaches=sum(1 for c in closed if c.met is False),
        open_overdue=len(overdue),
        clock=_clock_label({counting.kind(c) for c in (*closed, *overdue)}),
        lateness=tuple(sorted(late, reverse=True)),
    )


def summarize(
    clocks: Iterable[Clock],
    *,
    now: datetime | None = None,
    total: bool = True,
    clocks_of: Mapping[str, WindowClock] | None = None,
    cal: WorkingCalendar | None = None,
    by: GroupBy = "therapist",
) -> list[TherapistStats]:
    """Aggregate clocks into one row per therapist or policy (sorted), plus `(all)` if `total`.

    Closed clocks count as replies; with `now`, open clocks past due count as `open_overdue`.
    Cancelled clocks are left out. `clocks_of` maps a policy name to its window's clock
    (a policy not in it counts in working time), `cal` gives working-time lateness.
    """
    counting = _Counting(clocks_of or {}, cal)
    closed: dict[str, list[Clock]] = defaultdict(list)
    overdue: dict[str, list[Clock]] = defaultdict(list)
    at = as_utc(now) if now is not None else None
    for clock in clocks:
        key = clock.therapist_id if by == "therapist" else clock.policy
        if clock.state is ClockState.CLOSED:
            closed[key].append(clock)
        elif clock.state is ClockState.OPEN and at is not None and clock.due_at < at:
            overdue[key].append(clock)
    keys = sorted({*closed, *overdue})
    rows = [_row(k, closed.get(k, []), overdue.get(k, []), counting) for k in keys]
    if total and rows:
        every_closed = [c for k in sorted(closed) for c in closed[k]]
        every_overdue = [c for k in sorted(overdue) for c in overdue[k]]
        rows.append(_row(ALL, every_closed, every_overdue, counting))
    return rows


def _hours(value: timedelta | None) -> str:
    if value is None:
        return "-"
    minutes = round(value.total_seconds() / 60)
    return f"{minutes // 60}:{minutes % 60:02d}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def render_table(rows: Sequence[TherapistStats], *, heading: str = "therapist") -> str:
    """A plain-text table; durations as hours `H:MM` in each row's own clock."""
    header = [heading, "replies", "median", "p90", "met", "breaches", "open overdue", "clock"]
    header.append("max late")
    lines = [
        (
            r.therapist_id,
            str(r.replies),
            _hours(r.median),
            _hours(r.p90),
            _share(r.met_share),
            str(r.breaches),
            str(r.open_overdue),
            r.clock,
            _hours(r.late_max),
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


def render_csv(rows: Sequence[TherapistStats], *, key: str = "therapist_id") -> str:
    """CSV with durations in whole seconds, the met share as a fraction, and each breach's
    lateness in seconds (`;`-separated, longest first)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow((key, *CSV_FIELDS[1:]))
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
                r.clock,
                ";".join(str(round(t.total_seconds())) for t in r.lateness),
            ]
        )
    return buffer.getvalue()
