"""The dashboard's pure parts: the queue's reading of a clock, and the SVG charts."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bridge.core.sla import ESCALATION_WAITING, Clock, SlaPolicy, Step
from bridge.core.workhours import WorkingCalendar
from bridge.web.dashboard_queue import human_span, next_step, queue_item
from bridge.web.dashboard_svg import Series, bar_chart, line_chart, nice_max

LONDON = ZoneInfo("Europe/London")
CAL = WorkingCalendar(LONDON, {d: [(time(9), time(17))] for d in range(5)})
POLICY = SlaPolicy(
    window=timedelta(hours=4),
    heads_up_before=timedelta(hours=1),
    escalate_after=timedelta(hours=2),
    reminder_grace=timedelta(0),
)
# Tuesday 1 December 2026, 12:00 in London (UTC in winter).
NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _clock(due: datetime, done: frozenset[str] = frozenset(), **kw: object) -> Clock:
    return Clock(
        pair_id="p1",
        clock_id="c1",
        therapist_id="@t:hs",
        policy="default",
        opened_at=due - timedelta(hours=4),
        first_event_id="$e",
        first_kind="text",
        due_at=due,
        heads_up_at=due - timedelta(hours=1),
        escalate_at=due + timedelta(hours=2),
        steps_done=done,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("span", "text"),
    [
        (timedelta(minutes=45), "45 min"),
        (timedelta(hours=2, minutes=5), "2 h 05 min"),
        (timedelta(days=3, hours=4, minutes=59), "3 d 4 h"),
        (timedelta(seconds=-5), "0 min"),
    ],
)
def test_human_span(span: timedelta, text: str) -> None:
    assert human_span(span) == text


def test_on_time_clock_shows_its_heads_up_next() -> None:
    item = queue_item(
        _clock(NOON + timedelta(hours=3)), POLICY, CAL, NOON, label="7F3A", therapist="Dr O"
    )
    assert (item.overdue_by, item.next_step, item.next_at, item.held_until) == (
        "",
        "heads-up",
        "14:00",
        "",
    )
    assert item.due == "15:00"


def test_overdue_clock_says_by_how_long_and_what_comes_next() -> None:
    clock = _clock(NOON - timedelta(hours=1, minutes=30), frozenset({"heads_up", "due"}))
    item = queue_item(clock, POLICY, CAL, NOON, label="7F3A", therapist="Dr O")
    assert item.overdue_by == "1 h 30 min"
    assert item.next_step == "escalation" and item.next_at == "12:30" and not item.held_until


def test_step_after_closing_is_held_until_the_next_opening() -> None:
    # Due at 16:30, escalation two hours later (18:30): the practice is closed then.
    clock = _clock(datetime(2026, 12, 1, 16, 30, tzinfo=UTC), frozenset({"heads_up", "due"}))
    item = queue_item(
        clock, POLICY, CAL, datetime(2026, 12, 1, 17, 0, tzinfo=UTC), label="A", therapist="T"
    )
    assert item.next_step == "escalation"
    # Held steps leave a few minutes after the opening, spread by when they fell due.
    assert item.held_until.startswith("Wed 02 Dec 09:0") and item.held_until == item.next_at


def test_step_whose_time_passed_at_night_waits_for_the_morning() -> None:
    clock = _clock(datetime(2026, 12, 1, 16, 0, tzinfo=UTC), frozenset({"heads_up"}))
    night = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
    item = queue_item(clock, POLICY, CAL, night, label="A", therapist="T")
    assert item.next_step == "reminder" and item.held_until.startswith("09:0")


def test_any_time_policy_is_never_held() -> None:
    policy = SlaPolicy(
        window=timedelta(hours=4), escalate_after=timedelta(hours=2), escalate_during="any_time"
    )
    clock = _clock(datetime(2026, 12, 1, 16, 30, tzinfo=UTC), frozenset({"heads_up", "due"}))
    item = queue_item(
        clock, policy, CAL, datetime(2026, 12, 1, 17, 0, tzinfo=UTC), label="A", therapist="T"
    )
    assert item.held_until == "" and item.next_at == "18:30"


def test_escalation_that_reached_nobody_and_patient_flags() -> None:
    clock = _clock(NOON - timedelta(hours=3), frozenset({"heads_up", "due", ESCALATION_WAITING}))
    item = queue_item(
        clock, POLICY, CAL, NOON, label="A", therapist="T", joined=False, consent_state="pending"
    )
    assert item.escalation_waiting and item.never_joined and item.consent_pending


def test_paused_clock_has_no_next_time() -> None:
    clock = _clock(NOON + timedelta(hours=3), paused_since=NOON - timedelta(minutes=5))
    item = queue_item(clock, POLICY, CAL, NOON, label="A", therapist="T")
    assert item.paused and item.next_at == ""


def test_an_open_escalated_clock_says_so() -> None:
    clock = _clock(NOON - timedelta(hours=3), frozenset({"heads_up", "due", "escalation"}))
    item = queue_item(clock, POLICY, CAL, NOON, label="A", therapist="T")
    assert item.escalated_at == "11:00" and not item.escalation_waiting and item.next_step == ""
    assert item.overdue_by == "3 h 00 min"


def test_next_step_skips_done_and_unscheduled_steps() -> None:
    clock = _clock(NOON, frozenset({"heads_up", "due", "escalation"}))
    assert next_step(clock) is None
    assert next_step(_clock(NOON, frozenset({"heads_up"}))) is Step.DUE


@pytest.mark.parametrize(
    ("value", "top"), [(0, 1), (0.7, 1), (3, 5), (12, 20), (24, 25), (90, 100)]
)
def test_nice_max(value: float, top: float) -> None:
    assert nice_max(value) == top


def _points(svg: str) -> list[list[tuple[float, float]]]:
    return [
        [tuple(float(n) for n in p.split(",")) for p in m.split()]  # type: ignore[misc]
        for m in re.findall(r'<polyline[^>]*points="([^"]+)"', svg)
    ]


def test_line_chart_draws_the_known_points() -> None:
    svg = line_chart(
        "Reply time", ["w1", "w2", "w3"], [Series("median", [1, 2, 4])], unit=" h", y_max=4
    )
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert 'data-values="1 2 4"' in svg
    # Plot area: x 48..628, y 26..218 (192 px high): 1 h of 4 is 48 px above the axis.
    assert _points(svg) == [[(48.0, 170.0), (338.0, 122.0), (628.0, 26.0)]]
    assert "<title>w3: 4 h</title>" in svg


def test_missing_values_break_the_line() -> None:
    svg = line_chart("x", ["a", "b", "c", "d"], [Series("s", [1, None, 2, 3])], y_max=4)
    lines = _points(svg)
    assert len(lines) == 2 and len(lines[0]) == 1 and len(lines[1]) == 2
    assert 'data-values="1  2 3"' in svg


def test_text_is_escaped() -> None:
    svg = line_chart("<b>", ["<w>"], [Series('a"b', [1])])
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "&lt;w&gt;" in svg and "a&quot;b" in svg


def test_bar_chart_bars_have_the_known_heights() -> None:
    svg = bar_chart("Breaches", ["w1", "w2"], Series("breaches", [0, 2]), y_max=4)
    heights = [float(h) for h in re.findall(r'<rect[^>]*height="([\d.]+)"><title>', svg)]
    assert heights == [0.0, 96.0]
    assert 'data-values="0 2"' in svg


async def test_report_rows_are_kept_longer_for_past_weeks() -> None:
    from bridge.web.dashboard_cache import PAST_FOR, PRESENT_FOR, ReportCache

    ticks = [0.0]
    cache = ReportCache(clock=lambda: ticks[0])
    calls: list[str] = []

    def compute(name: str):  # type: ignore[no-untyped-def]
        async def run() -> list:  # type: ignore[type-arg]
            calls.append(name)
            return []

        return run

    now = datetime(2026, 12, 1, tzinfo=UTC)
    past = (now - timedelta(days=14), now - timedelta(days=7), "therapist")
    present = (now - timedelta(days=7), now + timedelta(days=1), "therapist")
    for _ in range(2):
        await cache.rows(past, now, compute("past"))
        await cache.rows(present, now, compute("present"))
    assert calls == ["past", "present"]
    ticks[0] = PRESENT_FOR + 1
    await cache.rows(past, now, compute("past"))
    await cache.rows(present, now, compute("present"))
    assert calls == ["past", "present", "present"]
    ticks[0] = PAST_FOR + 1
    await cache.rows(past, now, compute("past"))
    assert calls[-1] == "past"


def test_bars_stay_between_the_axes() -> None:
    svg = bar_chart("b", [f"w{i}" for i in range(12)], Series("s", [3.0] * 12))
    xs = [float(x) for x in re.findall(r'<rect x="([\d.]+)" y=', svg)]
    widths = [float(w) for w in re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="([\d.]+)"', svg)]
    assert (
        len(xs) == 12 and min(xs) > 48 and max(x + w for x, w in zip(xs, widths, strict=True)) < 628
    )
