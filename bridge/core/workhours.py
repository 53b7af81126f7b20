"""Working time of a practice: weekly hours, holidays and closures in its time zone.

Opening hours are wall-clock times in the practice's time zone and are resolved to
UTC instants date by date, so a due time computed across a DST change lands on the
same wall-clock hour the practice means. Inside one working interval, time is
counted as elapsed (absolute) time: a calendar open around the clock counts exactly
like calendar time, and an interval that contains a DST change (only night hours
do) counts the hours that really pass. Every result is an aware UTC datetime.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import holidays as holidays_data

WindowClock = Literal["working", "calendar"]
HolidayTest = Container[date] | Callable[[date], bool]

#: Days without any working time after which a search gives up (a calendar that never opens).
MAX_CLOSED_DAYS = 3 * 366

_ZERO = timedelta(0)
_ONE_DAY = timedelta(days=1)
#: An interval ending at 00:00 ends at midnight at the end of its day.
_END_OF_DAY = time(0)


class NoWorkingTime(ValueError):
    """The calendar has no working time in the searched range."""


def as_utc(at: datetime) -> datetime:
    """Return `at` in UTC; refuse naive datetimes, which have no place in the core."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("naive datetime: pass a timezone-aware datetime")
    return at.astimezone(UTC)


def _normalize_weekly(
    weekly: Mapping[int, Sequence[tuple[time, time]]],
) -> dict[int, tuple[tuple[time, time], ...]]:
    out: dict[int, tuple[tuple[time, time], ...]] = {}
    for weekday, intervals in weekly.items():
        if weekday not in range(7):
            raise ValueError(f"weekday {weekday!r} is not 0 (Monday) .. 6 (Sunday)")
        ordered = sorted(intervals, key=lambda iv: iv[0])
        previous_end: time | None = None
        for start, end in ordered:
            if start.tzinfo is not None or end.tzinfo is not None:
                raise ValueError("opening hours are wall-clock times without tzinfo")
            if end != _END_OF_DAY and end <= start:
                raise ValueError(
                    f"interval {start}-{end} on weekday {weekday} ends before it starts"
                )
            if previous_end is not None and (previous_end == _END_OF_DAY or start < previous_end):
                raise ValueError(f"intervals overlap on weekday {weekday}")
            previous_end = end
        if ordered:
            out[weekday] = tuple(ordered)
    if not out:
        raise ValueError("weekly hours are empty: the practice would never open")
    return out


class WorkingCalendar:
    """Weekly opening hours in a time zone, minus holidays and extra closure dates.

    Args:
        tz: the practice's time zone.
        weekly: weekday (0 = Monday .. 6 = Sunday) to wall-clock intervals `(start, end)`,
            half-open; an `end` of `time(0)` means midnight at the end of the day.
        holidays: dates on which the practice is closed: any container of dates
            (a `holidays` calendar works) or a predicate.
        closures: extra closure dates.
    """

    __slots__ = ("_closures", "_holidays", "_weekly", "tz")

    def __init__(
        self,
        tz: ZoneInfo,
        weekly: Mapping[int, Sequence[tuple[time, time]]],
        holidays: HolidayTest = frozenset(),
        closures: Iterable[date] = frozenset(),
    ) -> None:
        self.tz = tz
        self._weekly = _normalize_weekly(weekly)
        self._holidays = holidays
        self._closures = frozenset(closures)

    def __repr__(self) -> str:
        return f"WorkingCalendar(tz={self.tz.key!r}, weekdays={sorted(self._weekly)})"

    # ------------------------------------------------------------ days and intervals

    def is_working_day(self, day: date) -> bool:
        """Whether `day` has opening hours and is neither a holiday nor a closure."""
        if day.weekday() not in self._weekly or day in self._closures:
            return False
        if callable(self._holidays):
            return not self._holidays(day)
        return day not in self._holidays

    def _day_intervals(self, day: date) -> Iterator[tuple[datetime, datetime]]:
        """The working intervals of one local date as UTC instants."""
        if not self.is_working_day(day):
            return
        for start, end in self._weekly[day.weekday()]:
            a = datetime.combine(day, start, tzinfo=self.tz).astimezone(UTC)
            end_day = day + _ONE_DAY if end == _END_OF_DAY else day
            b = datetime.combine(end_day, end, tzinfo=self.tz).astimezone(UTC)
            # A bound inside a DST gap can resolve past the other bound: nothing to count.
            if b > a:
                yield a, b

    def _intervals(
        self, start: datetime, end: datetime | None = None
    ) -> Iterator[tuple[datetime, datetime]]:
        """Working intervals from `start` on, clipped to it, in order; bounded by `end` if given."""
        # Start a day early: the previous local day may still be open at `start`.
        day = start.astimezone(self.tz).date() - _ONE_DAY
        last_day = end.astimezone(self.tz).date() if end is not None else None
        closed_days = 0
        while last_day is None or day <= last_day:
            found = False
            for a, b in self._day_intervals(day):
                if b <= start:
                    continue
                if end is not None and a >= end:
                    return
                found = True
                yield max(a, start), b
            closed_days = 0 if found else closed_days + 1
            if last_day is None and closed_days > MAX_CLOSED_DAYS:
                raise NoWorkingTime(f"no working time within {MAX_CLOSED_DAYS} days of {start}")
            day += _ONE_DAY

    # ------------------------------------------------------------ queries

    def is_open(self, at: datetime) -> bool:
        """Whether the practice is open at the instant `at`."""
        at = as_utc(at)
        for a, _ in self._intervals(at, at + timedelta(microseconds=1)):
            return a == at
        return False

    def next_opening(self, at: datetime) -> datetime:
        """The first instant at or after `at` when the practice is open (`at` itself if open)."""
        at = as_utc(at)
        for a, _ in self._intervals(at):
            return a
        raise NoWorkingTime(f"no working time after {at}")  # pragma: no cover - _intervals raises

    def add_working_time(self, start: datetime, duration: timedelta) -> datetime:
        """The earliest instant by which `duration` of working time has passed since `start`.

        Time out of hours does not count; a result that fills an interval exactly is that
        interval's closing instant, not the next opening.
        """
        start = as_utc(start)
        if duration < _ZERO:
            raise ValueError("duration must not be negative")
        if duration == _ZERO:
            return start
        remaining = duration
        for a, b in self._intervals(start):
            span = b - a
            if remaining <= span:
                return a + remaining
            remaining -= span
        raise NoWorkingTime(f"no working time after {start}")  # pragma: no cover

    def working_time_between(self, a: datetime, b: datetime) -> timedelta:
        """Working time in `[a, b)`; zero when `b` is not after `a`."""
        a, b = as_utc(a), as_utc(b)
        total = _ZERO
        if b <= a:
            return total
        for start, end in self._intervals(a, b):
            total += min(end, b) - start
        return total

    def due_at(self, arrival: datetime, window: timedelta, clock: WindowClock) -> datetime:
        """When a reply to a message arriving at `arrival` is due, for a window of either clock."""
        if clock == "working":
            return self.add_working_time(arrival, window)
        if window < _ZERO:
            raise ValueError("window must not be negative")
        return as_utc(arrival) + window

    def elapsed(self, a: datetime, b: datetime, clock: WindowClock) -> timedelta:
        """Time from `a` to `b` as the given clock counts it (never negative)."""
        if clock == "working":
            return self.working_time_between(a, b)
        return max(as_utc(b) - as_utc(a), _ZERO)


def calendar_from(
    tz: str,
    weekly: Mapping[int, Sequence[tuple[time, time]]],
    *,
    country: str | None = None,
    subdivision: str | None = None,
    closures: Iterable[date] = (),
) -> WorkingCalendar:
    """Build a calendar with public holidays from the `holidays` package's data.

    `country` is an ISO 3166-1 code ("DE"), `subdivision` the package's subdivision code
    ("BE"); without a country only `closures` close the practice.
    """
    days_off: HolidayTest = frozenset()
    if country is not None:
        days_off = holidays_data.country_holidays(country, subdiv=subdivision)
    return WorkingCalendar(ZoneInfo(tz), weekly, days_off, closures)
