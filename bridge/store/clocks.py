"""SLA clocks: the open clock of each pair, and closed clocks kept for the report.

Rows hold the core's `Clock` (bridge.core.sla) with times as milliseconds, so a
clock read back equals the one saved up to sub-millisecond precision.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta

from bridge.core.sla import ESCALATION_WAITING, Clock, ClockState
from bridge.store.base import Executor, Row, SqlParam, from_ms, to_ms
from bridge.store.rows import (
    integer,
    integer_or_none,
    json_list,
    text,
    text_or_none,
    to_int,
    to_str,
)

_COLUMNS = (
    "clock_id, pair_id, therapist_id, policy, state, opened_at, first_event_id, first_kind, "
    "due_at, heads_up_at, escalate_at, steps_done, paused_since, resume_at, paused_ms, "
    "closed_at, closed_by, closing_event_id, response_working_ms, response_calendar_ms, met"
)
_ONE_MS = timedelta(milliseconds=1)


def _ms(value: datetime | None) -> int | None:
    return None if value is None else to_ms(value)


def _dur_ms(value: timedelta | None) -> int | None:
    return None if value is None else value // _ONE_MS


def _at(row: Row, column: str) -> datetime | None:
    value = integer_or_none(row, column)
    return None if value is None else from_ms(value)


def _dur(row: Row, column: str) -> timedelta | None:
    value = integer_or_none(row, column)
    return None if value is None else value * _ONE_MS


def _row(clock: Clock) -> tuple[SqlParam, ...]:
    return (
        clock.clock_id,
        clock.pair_id,
        clock.therapist_id,
        clock.policy,
        clock.state.value,
        to_ms(clock.opened_at),
        clock.first_event_id,
        clock.first_kind,
        to_ms(clock.due_at),
        _ms(clock.heads_up_at),
        _ms(clock.escalate_at),
        json.dumps(sorted(clock.steps_done)),
        _ms(clock.paused_since),
        _ms(clock.resume_at),
        _dur_ms(clock.paused_total),
        _ms(clock.closed_at),
        clock.closed_by,
        clock.closing_event_id,
        _dur_ms(clock.response_working),
        _dur_ms(clock.response_calendar),
        None if clock.met is None else int(clock.met),
    )


def _clock(row: Row) -> Clock:
    steps_done = json_list(text(row, "steps_done"), "steps_done")
    met = integer_or_none(row, "met")
    return Clock(
        pair_id=text(row, "pair_id"),
        clock_id=text(row, "clock_id"),
        therapist_id=text(row, "therapist_id"),
        policy=text(row, "policy"),
        opened_at=from_ms(integer(row, "opened_at")),
        first_event_id=text(row, "first_event_id"),
        first_kind=text(row, "first_kind"),
        due_at=from_ms(integer(row, "due_at")),
        heads_up_at=_at(row, "heads_up_at"),
        escalate_at=_at(row, "escalate_at"),
        steps_done=frozenset(to_str(step, "steps_done") for step in steps_done),
        state=ClockState(text(row, "state")),
        paused_since=_at(row, "paused_since"),
        resume_at=_at(row, "resume_at"),
        paused_total=integer(row, "paused_ms") * _ONE_MS,
        closed_at=_at(row, "closed_at"),
        closed_by=text_or_none(row, "closed_by"),
        closing_event_id=text_or_none(row, "closing_event_id"),
        response_working=_dur(row, "response_working_ms"),
        response_calendar=_dur(row, "response_calendar_ms"),
        met=None if met is None else bool(met),
    )


async def save(ex: Executor, clock: Clock) -> None:
    """Insert or update a clock (open, closed or cancelled) by its id.

    Opening a second clock for a pair that still has an open one raises
    `IntegrityError`: close or cancel the old one in the same transaction first.
    """
    placeholders = ", ".join("?" * len(_row(clock)))
    updates = ", ".join(
        f"{name} = excluded.{name}"
        for name in (c.strip() for c in _COLUMNS.split(","))
        if name != "clock_id"
    )
    await ex.execute(
        f"INSERT INTO sla_clocks ({_COLUMNS}) VALUES ({placeholders}) "
        f"ON CONFLICT (clock_id) DO UPDATE SET {updates}",
        *_row(clock),
    )


async def insert_many(ex: Executor, items: Iterable[Clock]) -> None:
    """Insert many new clocks in one statement (imports, benchmarks); an existing id raises."""
    rows = [_row(clock) for clock in items]
    if rows:
        placeholders = ", ".join("?" * len(rows[0]))
        await ex.executemany(f"INSERT INTO sla_clocks ({_COLUMNS}) VALUES ({placeholders})", rows)


async def get(ex: Executor, clock_id: str) -> Clock | None:
    """The clock with this id, in any state."""
    row = await ex.fetchrow(f"SELECT {_COLUMNS} FROM sla_clocks WHERE clock_id = ?", clock_id)
    return None if row is None else _clock(row)


async def get_open(ex: Executor, pair_id: str) -> Clock | None:
    """The pair's open clock, if any."""
    row = await ex.fetchrow(
        f"SELECT {_COLUMNS} FROM sla_clocks WHERE pair_id = ? AND state = 'open'", pair_id
    )
    return None if row is None else _clock(row)


async def list_open(
    ex: Executor, *, therapist_id: str | None = None, limit: int | None = None
) -> list[Clock]:
    """Open clocks, soonest due first; only one therapist's when `therapist_id` is given."""
    sql = f"SELECT {_COLUMNS} FROM sla_clocks WHERE state = 'open'"
    args: list[SqlParam] = []
    if therapist_id is not None:
        sql += " AND therapist_id = ?"
        args.append(therapist_id)
    sql += " ORDER BY due_at, pair_id"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(limit)
    return [_clock(row) for row in await ex.fetch(sql, *args)]


async def count_waiting_escalations(ex: Executor) -> int:
    """Open clocks whose escalation is due but has reached nobody yet (it is retried)."""
    # steps_done is a sorted JSON list of step names; the marker is one of its strings.
    value = await ex.fetchval(
        "SELECT COUNT(*) FROM sla_clocks WHERE state = 'open' AND steps_done LIKE ?",
        f'%"{ESCALATION_WAITING}"%',
    )
    return to_int(value, "count")


async def list_closed(
    ex: Executor, start: datetime, end: datetime, *, therapist_id: str | None = None
) -> list[Clock]:
    """Clocks closed by a reply with `start <= closed_at < end`, oldest first."""
    sql = (
        f"SELECT {_COLUMNS} FROM sla_clocks "
        "WHERE state = 'closed' AND closed_at >= ? AND closed_at < ?"
    )
    args: list[SqlParam] = [to_ms(start), to_ms(end)]
    if therapist_id is not None:
        sql += " AND therapist_id = ?"
        args.append(therapist_id)
    sql += " ORDER BY closed_at, clock_id"
    return [_clock(row) for row in await ex.fetch(sql, *args)]


async def reassign_open(ex: Executor, pair_id: str, therapist_id: str) -> bool:
    """Hand the pair's open clock to a new therapist (the pair was reassigned)."""
    changed = await ex.execute(
        "UPDATE sla_clocks SET therapist_id = ? WHERE pair_id = ? AND state = 'open'",
        therapist_id,
        pair_id,
    )
    return changed == 1
