"""Timers: the durable side of scheduling; the scheduler's triggers are rebuilt from here.

A timer fires at most once: `mark_fired` succeeds only the first time, so the
caller that wins it sends the reminder and a restart does not send it again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.store.base import Executor, Row
from bridge.store.rows import integer, integer_or_none, json_object, text, text_or_none


@dataclass(frozen=True, slots=True)
class TimerRecord:
    """A stored timer."""

    timer_id: str
    kind: str
    pair_id: str | None
    due_at: int
    payload: dict[str, Any]
    fired_at: int | None


_COLUMNS = "timer_id, kind, pair_id, due_at, payload, fired_at"


def _record(row: Row) -> TimerRecord:
    return TimerRecord(
        timer_id=text(row, "timer_id"),
        kind=text(row, "kind"),
        pair_id=text_or_none(row, "pair_id"),
        due_at=integer(row, "due_at"),
        payload=json_object(text(row, "payload"), "payload"),
        fired_at=integer_or_none(row, "fired_at"),
    )


async def schedule(
    ex: Executor,
    *,
    timer_id: str,
    kind: str,
    due_at: int,
    pair_id: str | None = None,
    payload: Mapping[str, Any] | None = None,
) -> None:
    """Create or replace the timer `timer_id`.

    Scheduling a fired timer again at the same `due_at` leaves it fired (a replayed
    effect must not re-arm it); a different `due_at` arms it afresh.
    """
    await ex.execute(
        f"INSERT INTO timers ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, NULL) "
        "ON CONFLICT (timer_id) DO UPDATE SET kind = excluded.kind, "
        "pair_id = excluded.pair_id, payload = excluded.payload, "
        "fired_at = CASE WHEN timers.due_at = excluded.due_at THEN timers.fired_at ELSE NULL END, "
        "due_at = excluded.due_at",
        timer_id,
        kind,
        pair_id,
        due_at,
        json.dumps(dict(payload or {}), separators=(",", ":"), sort_keys=True),
    )


async def cancel(ex: Executor, timer_id: str) -> bool:
    """Delete the timer; False if there was none."""
    return await ex.execute("DELETE FROM timers WHERE timer_id = ?", timer_id) == 1


async def get(ex: Executor, timer_id: str) -> TimerRecord | None:
    """The timer with this id, fired or not."""
    row = await ex.fetchrow(f"SELECT {_COLUMNS} FROM timers WHERE timer_id = ?", timer_id)
    return None if row is None else _record(row)


async def get_pending(ex: Executor, due_before: int | None = None) -> list[TimerRecord]:
    """Every timer that has not fired, soonest first (overdue ones included).

    With `due_before` (ms), only those due before then.
    """
    if due_before is None:
        rows = await ex.fetch(
            f"SELECT {_COLUMNS} FROM timers WHERE fired_at IS NULL ORDER BY due_at, timer_id"
        )
    else:
        rows = await ex.fetch(
            f"SELECT {_COLUMNS} FROM timers WHERE fired_at IS NULL AND due_at < ? "
            "ORDER BY due_at, timer_id",
            due_before,
        )
    return [_record(row) for row in rows]


async def mark_fired(ex: Executor, timer_id: str, now: int) -> bool:
    """Claim the firing of a timer: True only the first time, False ever after (or if absent)."""
    changed = await ex.execute(
        "UPDATE timers SET fired_at = ? WHERE timer_id = ? AND fired_at IS NULL", now, timer_id
    )
    return changed == 1


async def prune_fired(ex: Executor, before: int) -> int:
    """Delete timers that fired before `before`; return how many."""
    return await ex.execute(
        "DELETE FROM timers WHERE fired_at IS NOT NULL AND fired_at < ?", before
    )
