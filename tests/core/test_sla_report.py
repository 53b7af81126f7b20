"""The per-therapist response-time report."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta

import pytest

from bridge.core.sla import Clock, ClockState
from bridge.core.sla_report import (
    ALL,
    TherapistStats,
    nearest_rank,
    render_csv,
    render_table,
    summarize,
)
from bridge.core.workhours import WorkingCalendar

T0 = datetime(2025, 6, 2, 9, tzinfo=UTC)
M = timedelta(minutes=1)


def closed(therapist: str, minutes: int, met: bool, n: int = 0) -> Clock:
    return Clock(
        pair_id=f"p{n}",
        clock_id=f"c{therapist}{n}",
        therapist_id=therapist,
        policy="default",
        opened_at=T0,
        first_event_id=f"$e{n}",
        first_kind="text",
        due_at=T0 + 240 * M,
        state=ClockState.CLOSED,
        closed_at=T0 + minutes * M,
        response_working=minutes * M,
        response_calendar=minutes * M,
        met=met,
    )


@pytest.mark.parametrize(
    ("values", "percentile", "expected"),
    [
        ([5], 90, 5),
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90, 9),
        ([10, 1, 9, 2, 8, 3, 7, 4, 6, 5, 11], 90, 10),
        ([3, 1, 2], 50, 2),
        ([1, 2], 90, 2),
    ],
)
def test_nearest_rank(values: list[int], percentile: float, expected: int) -> None:
    assert nearest_rank([v * M for v in values], percentile) == expected * M


def test_summarize_per_therapist_and_total() -> None:
    clocks = [
        closed("@b", 30, True, 1),
        closed("@a", 60, True, 2),
        closed("@a", 120, True, 3),
        closed("@a", 300, False, 4),
        closed("@a", 90, True, 5),
    ]
    rows = summarize(clocks)
    assert [r.therapist_id for r in rows] == ["@a", "@b", ALL]
    a, b, total = rows
    assert a == TherapistStats("@a", 4, 105 * M, 300 * M, 0.75, 1, 0, "working", (60 * M,))
    assert b == TherapistStats("@b", 1, 30 * M, 30 * M, 1.0, 0, 0)
    assert total.replies == 5
    assert total.median == 90 * M
    assert total.breaches == 1


def test_open_and_cancelled_clocks() -> None:
    late_open = replace(closed("@a", 0, False, 1), state=ClockState.OPEN, met=None)
    cancelled = replace(closed("@a", 10, True, 2), state=ClockState.CANCELLED)
    not_yet_due = replace(late_open, due_at=T0 + 10_000 * M)
    now = T0 + 300 * M
    rows = summarize([late_open, cancelled, not_yet_due], now=now)
    assert rows[0] == TherapistStats("@a", 0, None, None, None, 0, 1)
    # without `now` open clocks are not looked at
    assert summarize([late_open, cancelled]) == []


def test_render_table() -> None:
    rows = summarize([closed("@a", 61, True, 1), closed("@a", 300, False, 2)], total=False)
    text = render_table(rows)
    lines = text.splitlines()
    assert lines[0].split() == [
        "therapist",
        "replies",
        "median",
        "p90",
        "met",
        "breaches",
        "open",
        "overdue",
        "clock",
        "max",
        "late",
    ]
    assert lines[2].split() == ["@a", "2", "3:00", "5:00", "50%", "1", "0", "working", "1:00"]


def test_render_csv_round_trips() -> None:
    rows = summarize([closed("@a", 60, True, 1), closed("@b", 30, False, 2)])
    parsed = list(csv.DictReader(io.StringIO(render_csv(rows))))
    assert [r["therapist_id"] for r in parsed] == ["@a", "@b", ALL]
    assert parsed[0]["median_seconds"] == "3600"
    assert parsed[1]["met_share"] == "0.0000"
    assert parsed[2]["replies"] == "2"
    empty = list(
        csv.DictReader(io.StringIO(render_csv([TherapistStats("@c", 0, None, None, None, 0, 2)])))
    )
    assert empty[0]["median_seconds"] == "" and empty[0]["open_overdue"] == "2"


def test_calendar_policy_counts_calendar_time_and_how_late() -> None:
    # The case: a 3-minute round-the-clock window answered at night after 5 minutes.
    night = datetime(2025, 6, 2, 22, tzinfo=UTC)
    urgent = replace(
        closed("@a", 0, False, 1),
        policy="urgent",
        opened_at=night,
        due_at=night + 3 * M,
        closed_at=night + 5 * M,
        response_working=timedelta(0),
        response_calendar=5 * M,
    )
    office = closed("@a", 60, True, 2)
    cal = WorkingCalendar(UTC, {d: [(time(9), time(17))] for d in range(5)})
    clocks_of = {"urgent": "calendar", "default": "working"}
    (row,) = summarize([urgent], total=False, clocks_of=clocks_of, cal=cal)
    assert (row.replies, row.median, row.p90, row.met_share, row.breaches) == (
        1,
        5 * M,
        5 * M,
        0.0,
        1,
    )
    assert row.clock == "calendar" and row.lateness == (2 * M,)
    mixed = summarize([urgent, office], clocks_of=clocks_of, cal=cal)
    assert [r.clock for r in mixed] == ["mixed", "mixed"]
    by_policy = summarize([urgent, office], clocks_of=clocks_of, cal=cal, by="policy")
    assert [(r.therapist_id, r.clock, r.median) for r in by_policy] == [
        ("default", "working", 60 * M),
        ("urgent", "calendar", 5 * M),
        (ALL, "mixed", timedelta(seconds=1950)),
    ]
    parsed = list(csv.DictReader(io.StringIO(render_csv(by_policy, key="policy"))))
    assert parsed[1]["policy"] == "urgent" and parsed[1]["late_seconds"] == "120"
    assert "policy" in render_table(by_policy, heading="policy").splitlines()[0]
