"""SLA clocks in the store, on SQLite and PostgreSQL: save, load, list, report range."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bridge.core.model import Kind, Pair
from bridge.core.sla import (
    Away,
    Clock,
    ClockState,
    SlaPolicy,
    on_patient_message,
    on_therapist_message,
    therapist_away,
)
from bridge.core.sla_report import summarize
from bridge.core.workhours import WorkingCalendar
from bridge.store import Database, IntegrityError, clocks, pairs

CAL = WorkingCalendar(ZoneInfo("Europe/Berlin"), {d: [(time(9), time(17))] for d in range(5)})
POLICY = SlaPolicy(
    window=timedelta(hours=4),
    heads_up_before=timedelta(hours=1),
    escalate_after=timedelta(hours=2),
    supervisors=("@sup:example.org",),
)
WED_10 = datetime(2025, 6, 4, 8, tzinfo=UTC)  # 10:00 in Berlin
H = timedelta(hours=1)
T0_MS = 1_748_000_000_000


async def _pair(db: Database, patient: str, therapist: str = "@doc:example.org") -> Pair:
    record = await pairs.create(
        db, patient_id=patient, therapist_id=therapist, now=T0_MS, room_id=f"!{patient[1:4]}:x"
    )
    assert record.room_id is not None
    return Pair(record.pair_id, patient, therapist, record.room_id, label=record.label)


def _open(pair: Pair, at: datetime, event_id: str = "$e1") -> Clock:
    clock, _ = on_patient_message(None, pair, POLICY, CAL, Kind.TEXT, event_id, at)
    assert clock is not None
    return clock


async def test_open_clock_round_trips(db: Database) -> None:
    pair = await _pair(db, "@pat:example.org")
    clock = _open(pair, WED_10)
    clock = replace(clock, steps_done=frozenset({"heads_up"}))
    await clocks.save(db, clock)
    assert await clocks.get_open(db, pair.pair_id) == clock
    assert await clocks.get(db, clock.clock_id) == clock
    # saving the same clock again (a replayed decision) is an update, not a second row
    await clocks.save(db, clock)
    assert await db.fetchval("SELECT COUNT(*) FROM sla_clocks") == 1


async def test_paused_clock_round_trips(db: Database) -> None:
    pair = await _pair(db, "@pat:example.org")
    clock = _open(pair, WED_10)
    paused, _ = therapist_away(clock, POLICY, CAL, Away(until=WED_10 + 26 * H), WED_10 + H)
    assert paused is not None and paused.is_paused
    paused = replace(paused, paused_total=timedelta(minutes=90))
    await clocks.save(db, paused)
    assert await clocks.get_open(db, pair.pair_id) == paused


async def test_closing_keeps_the_clock_with_its_response_time(db: Database) -> None:
    pair = await _pair(db, "@pat:example.org")
    clock = _open(pair, WED_10)
    await clocks.save(db, clock)
    closed, _ = on_therapist_message(
        clock, POLICY, CAL, Kind.TEXT, "$r1", pair.therapist_id, WED_10 + 5 * H
    )
    assert closed is not None
    await clocks.save(db, closed)
    assert await clocks.get_open(db, pair.pair_id) is None
    stored = await clocks.get(db, clock.clock_id)
    assert stored == closed
    assert stored is not None
    assert stored.state is ClockState.CLOSED
    assert stored.met is False
    assert stored.response_working == 5 * H


async def test_one_open_clock_per_pair(db: Database) -> None:
    pair = await _pair(db, "@pat:example.org")
    await clocks.save(db, _open(pair, WED_10, "$e1"))
    with pytest.raises(IntegrityError):
        await clocks.save(db, _open(pair, WED_10 + H, "$e2"))


async def test_list_open_by_due_and_by_therapist(db: Database) -> None:
    a = await _pair(db, "@pa:example.org")
    b = await _pair(db, "@pb:example.org", therapist="@other:example.org")
    c = await _pair(db, "@pc:example.org")
    late = _open(a, WED_10 + 2 * H)
    early = _open(b, WED_10)
    middle = _open(c, WED_10 + H)
    for clock in (late, early, middle):
        await clocks.save(db, clock)
    closed, _ = on_therapist_message(middle, POLICY, CAL, Kind.TEXT, "$r", "@doc", WED_10 + 2 * H)
    assert closed is not None
    await clocks.save(db, closed)
    assert await clocks.list_open(db) == [early, late]
    assert await clocks.list_open(db, therapist_id="@doc:example.org") == [late]
    assert await clocks.list_open(db, limit=1) == [early]


async def test_closed_clocks_in_a_range_feed_the_report(db: Database) -> None:
    saved: list[Clock] = []
    for i, reply_after in enumerate([1, 3, 6]):
        pair = await _pair(db, f"@p{i}:example.org")
        clock = _open(pair, WED_10 + i * 24 * H)
        closed, _ = on_therapist_message(
            clock,
            POLICY,
            CAL,
            Kind.TEXT,
            f"$r{i}",
            pair.therapist_id,
            clock.opened_at + reply_after * H,
        )
        assert closed is not None
        await clocks.save(db, closed)
        saved.append(closed)
    first_two = await clocks.list_closed(db, WED_10, WED_10 + 40 * H)
    assert first_two == saved[:2]
    everything = await clocks.list_closed(db, WED_10, WED_10 + 100 * H)
    assert everything == saved
    assert await clocks.list_closed(db, WED_10, WED_10 + 100 * H, therapist_id="@x") == []
    (row, _total) = summarize(everything)
    assert (row.replies, row.breaches, row.median) == (3, 1, 3 * H)


async def test_reassign_open(db: Database) -> None:
    pair = await _pair(db, "@pat:example.org")
    await clocks.save(db, _open(pair, WED_10))
    assert await clocks.reassign_open(db, pair.pair_id, "@new:example.org")
    stored = await clocks.get_open(db, pair.pair_id)
    assert stored is not None and stored.therapist_id == "@new:example.org"
    assert not await clocks.reassign_open(db, "nope", "@new:example.org")


async def test_insert_many_writes_every_clock(db: Database) -> None:
    first = await _pair(db, "@ann:example.org")
    second = await _pair(db, "@bob:example.org")
    opened = [_open(first, WED_10), _open(second, WED_10 + H, "$e2")]
    await clocks.insert_many(db, opened)
    await clocks.insert_many(db, [])
    assert await clocks.list_open(db) == opened
    with pytest.raises(IntegrityError):
        await clocks.insert_many(db, opened[:1])


async def test_escalations_waiting_for_a_supervisor_are_counted(db: Database) -> None:
    first = _open(await _pair(db, "@ann:example.org"), WED_10)
    second = _open(await _pair(db, "@ben:example.org"), WED_10, "$e2")
    await clocks.save(db, first)
    await clocks.save(db, replace(second, steps_done=frozenset({"breached", "escalation_waiting"})))
    assert await clocks.count_waiting_escalations(db) == 1
    await clocks.save(db, replace(second, state=ClockState.CANCELLED))
    assert await clocks.count_waiting_escalations(db) == 0
