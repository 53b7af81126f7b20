"""Working-time arithmetic: weekends, holidays, closures, DST both ways, two time zones."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bridge.core.workhours import NoWorkingTime, WorkingCalendar, calendar_from

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
OFFICE = {d: [(time(9), time(17))] for d in range(5)}  # Mon-Fri 09:00-17:00
SPLIT = {d: [(time(8), time(12)), (time(13), time(17))] for d in range(5)}
ALWAYS = {d: [(time(0), time(0))] for d in range(7)}  # around the clock
H = timedelta(hours=1)


def local(tz: ZoneInfo, y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=tz)


def berlin(*args: int) -> datetime:
    return local(BERLIN, *args)


def ny(*args: int) -> datetime:
    return local(NEW_YORK, *args)


BE = calendar_from("Europe/Berlin", OFFICE, country="DE", subdivision="BE")
BY = calendar_from("Europe/Berlin", OFFICE, country="DE", subdivision="BY")
US = calendar_from("America/New_York", OFFICE, country="US", subdivision="NY")
PLAIN = WorkingCalendar(BERLIN, OFFICE)


@pytest.mark.parametrize(
    ("cal", "arrival", "window", "expected"),
    [
        # same day, inside hours
        (PLAIN, berlin(2025, 6, 4, 10), 4 * H, berlin(2025, 6, 4, 14)),
        # filling the day exactly ends at closing, not at the next opening
        (PLAIN, berlin(2025, 6, 4, 9), 8 * H, berlin(2025, 6, 4, 17)),
        # carries over to the next morning
        (PLAIN, berlin(2025, 6, 4, 15), 4 * H, berlin(2025, 6, 5, 11)),
        # arrival before opening counts from the opening
        (PLAIN, berlin(2025, 6, 4, 6), 2 * H, berlin(2025, 6, 4, 11)),
        # arrival in the evening counts from the next morning
        (PLAIN, berlin(2025, 6, 4, 21), 2 * H, berlin(2025, 6, 5, 11)),
        # Friday afternoon skips the weekend
        (PLAIN, berlin(2025, 6, 6, 16), 4 * H, berlin(2025, 6, 9, 12)),
        # Saturday arrival counts from Monday
        (PLAIN, berlin(2025, 6, 7, 11), 3 * H, berlin(2025, 6, 9, 12)),
        # Easter: Good Friday and Easter Monday are holidays in Berlin
        (BE, berlin(2025, 4, 17, 16), 4 * H, berlin(2025, 4, 22, 12)),
        # 6 January is a holiday in Bavaria, not in Berlin (subdivisions matter)
        (BY, berlin(2025, 1, 3, 16), 4 * H, berlin(2025, 1, 7, 12)),
        (BE, berlin(2025, 1, 3, 16), 4 * H, berlin(2025, 1, 6, 12)),
        # spring forward in Berlin (30 March 2025): Monday noon is still noon local
        (PLAIN, berlin(2025, 3, 28, 16), 4 * H, berlin(2025, 3, 31, 12)),
        # fall back in Berlin (26 October 2025)
        (PLAIN, berlin(2025, 10, 24, 16), 4 * H, berlin(2025, 10, 27, 12)),
        # New York: spring forward 9 March 2025, fall back 2 November 2025
        (US, ny(2025, 3, 7, 15), 4 * H, ny(2025, 3, 10, 11)),
        (US, ny(2025, 10, 31, 15), 4 * H, ny(2025, 11, 3, 11)),
        # Thanksgiving (27 November 2025) in New York
        (US, ny(2025, 11, 26, 15), 4 * H, ny(2025, 11, 28, 11)),
        # a window longer than a week of working time
        (PLAIN, berlin(2025, 6, 2, 9), 48 * H, berlin(2025, 6, 9, 17)),
        # zero window: due on arrival
        (PLAIN, berlin(2025, 6, 7, 11), timedelta(0), berlin(2025, 6, 7, 11)),
    ],
)
def test_add_working_time(
    cal: WorkingCalendar, arrival: datetime, window: timedelta, expected: datetime
) -> None:
    due = cal.add_working_time(arrival, window)
    assert due == expected
    assert due.tzinfo is UTC
    # and the inverse: the working time between arrival and due is the window
    assert cal.working_time_between(arrival, due) == window


def test_dst_due_lands_on_the_same_wall_clock_hour() -> None:
    before = PLAIN.add_working_time(berlin(2025, 3, 27, 16), 4 * H)  # Thursday -> Friday
    after = PLAIN.add_working_time(berlin(2025, 3, 28, 16), 4 * H)  # Friday -> Monday (CEST)
    assert before.astimezone(BERLIN).hour == after.astimezone(BERLIN).hour == 12
    assert before.hour == 11  # 12:00 CET is 11:00 UTC
    assert after.hour == 10  # 12:00 CEST is 10:00 UTC


def test_split_day_skips_the_lunch_break() -> None:
    cal = WorkingCalendar(BERLIN, SPLIT)
    assert cal.add_working_time(berlin(2025, 6, 4, 11), 2 * H) == berlin(2025, 6, 4, 14)
    assert not cal.is_open(berlin(2025, 6, 4, 12, 30))
    assert cal.next_opening(berlin(2025, 6, 4, 12, 30)) == berlin(2025, 6, 4, 13)
    assert cal.working_time_between(berlin(2025, 6, 4, 0), berlin(2025, 6, 5, 0)) == 8 * H


def test_adjacent_intervals_are_one_opening() -> None:
    cal = WorkingCalendar(BERLIN, {0: [(time(8), time(12)), (time(12), time(16))]})
    monday_noon = berlin(2025, 6, 2, 12)
    assert cal.is_open(monday_noon)
    assert cal.next_opening(monday_noon) == monday_noon
    assert cal.add_working_time(berlin(2025, 6, 2, 10), 4 * H) == berlin(2025, 6, 2, 14)


def test_closures_close_the_practice() -> None:
    cal = WorkingCalendar(BERLIN, OFFICE, closures={date(2025, 6, 4), date(2025, 6, 5)})
    assert not cal.is_open(berlin(2025, 6, 4, 10))
    assert cal.next_opening(berlin(2025, 6, 3, 18)) == berlin(2025, 6, 6, 9)
    assert cal.add_working_time(berlin(2025, 6, 3, 15), 4 * H) == berlin(2025, 6, 6, 11)


def test_holidays_as_a_predicate() -> None:
    cal = WorkingCalendar(BERLIN, OFFICE, holidays=lambda d: d.day == 4)
    assert not cal.is_working_day(date(2025, 6, 4))
    assert cal.is_working_day(date(2025, 6, 5))


@pytest.mark.parametrize(
    ("at", "is_open", "next_opening"),
    [
        (berlin(2025, 6, 4, 9), True, berlin(2025, 6, 4, 9)),  # opening instant is open
        (berlin(2025, 6, 4, 16, 59), True, berlin(2025, 6, 4, 16, 59)),
        (berlin(2025, 6, 4, 17), False, berlin(2025, 6, 5, 9)),  # closing instant is closed
        (berlin(2025, 6, 4, 8, 59), False, berlin(2025, 6, 4, 9)),
        (berlin(2025, 6, 6, 17, 30), False, berlin(2025, 6, 9, 9)),  # Friday evening
        (berlin(2025, 6, 8, 23, 59), False, berlin(2025, 6, 9, 9)),  # Sunday night
    ],
)
def test_is_open_and_next_opening(at: datetime, is_open: bool, next_opening: datetime) -> None:
    assert PLAIN.is_open(at) is is_open
    assert PLAIN.next_opening(at) == next_opening


def test_around_the_clock_equals_calendar_time_across_dst() -> None:
    cal = WorkingCalendar(BERLIN, ALWAYS)
    # spring forward: the weekend of 29-30 March 2025 has 47 real hours
    assert cal.working_time_between(berlin(2025, 3, 29), berlin(2025, 3, 31)) == 47 * H
    # fall back: 25-26 October 2025 has 49
    assert cal.working_time_between(berlin(2025, 10, 25), berlin(2025, 10, 27)) == 49 * H
    start = berlin(2025, 3, 30, 0)
    # (aware arithmetic in one zone is wall-clock arithmetic: compare in UTC)
    assert cal.add_working_time(start, 3 * H) == start.astimezone(UTC) + 3 * H
    assert cal.add_working_time(start, 3 * H) == berlin(2025, 3, 30, 4)
    for at in (start, berlin(2025, 10, 26, 2, 30)):
        assert cal.due_at(at, 5 * H, "working") == cal.due_at(at, 5 * H, "calendar")


@pytest.mark.parametrize(
    ("tz", "day", "hours"),
    [
        # night hours 01:00-04:00 on the change day: the hours that really pass
        (BERLIN, date(2025, 3, 30), 2 * H),
        (BERLIN, date(2025, 10, 26), 4 * H),
        (NEW_YORK, date(2025, 3, 9), 2 * H),
        (NEW_YORK, date(2025, 11, 2), 4 * H),
    ],
)
def test_interval_containing_a_dst_change(tz: ZoneInfo, day: date, hours: timedelta) -> None:
    cal = WorkingCalendar(tz, {day.weekday(): [(time(1), time(4))]})
    start = datetime.combine(day, time(0), tzinfo=tz)
    assert cal.working_time_between(start, start + 24 * H) == hours
    assert cal.add_working_time(start, hours) == datetime.combine(day, time(4), tzinfo=tz)


def test_calendar_clock_is_plain_elapsed_time() -> None:
    arrival = berlin(2025, 3, 29, 22)
    assert PLAIN.due_at(arrival, 24 * H, "calendar") == arrival.astimezone(UTC) + 24 * H
    assert PLAIN.due_at(arrival, 24 * H, "calendar").astimezone(BERLIN).hour == 23
    assert PLAIN.elapsed(arrival, arrival - H, "calendar") == timedelta(0)


def test_working_time_between_partial_and_reversed() -> None:
    a, b = berlin(2025, 6, 6, 16), berlin(2025, 6, 9, 10)  # Friday 16:00 -> Monday 10:00
    assert PLAIN.working_time_between(a, b) == 2 * H
    assert PLAIN.working_time_between(b, a) == timedelta(0)
    assert PLAIN.elapsed(a, b, "working") == 2 * H


def test_refuses_naive_datetimes_and_bad_hours() -> None:
    with pytest.raises(ValueError, match="naive"):
        PLAIN.is_open(datetime(2025, 6, 4, 10))
    with pytest.raises(ValueError, match="ends before"):
        WorkingCalendar(BERLIN, {0: [(time(17), time(9))]})
    with pytest.raises(ValueError, match="overlap"):
        WorkingCalendar(BERLIN, {0: [(time(9), time(13)), (time(12), time(17))]})
    with pytest.raises(ValueError, match="weekday"):
        WorkingCalendar(BERLIN, {7: [(time(9), time(17))]})
    with pytest.raises(ValueError, match="empty"):
        WorkingCalendar(BERLIN, {})
    with pytest.raises(ValueError, match="negative"):
        PLAIN.add_working_time(berlin(2025, 6, 4, 10), -H)


def test_a_calendar_that_never_opens_says_so() -> None:
    cal = WorkingCalendar(BERLIN, OFFICE, holidays=lambda d: True)
    with pytest.raises(NoWorkingTime):
        cal.next_opening(berlin(2025, 6, 4, 10))
    assert not cal.is_open(berlin(2025, 6, 4, 10))
    assert cal.working_time_between(berlin(2025, 6, 1), berlin(2025, 7, 1)) == timedelta(0)
