"""Live sessions: scheduled sessions of a pair, and the pair's running `!video` call.

The database is the source of truth: a session's reminder, start and end are rows in
`timers` (kinds `session.*`), so they fire after a restart; `armed` tells the running
bridge whether it has armed the triggers of a session the command line added.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bridge.store.base import Executor, Row, to_ms
from bridge.store.rows import integer, integer_or_none, text, text_or_none, to_str_or_none


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A stored session (times in ms since the epoch)."""

    session_id: str
    pair_id: str
    kind: str  # "video" | "text"
    starts_at: int
    ends_at: int
    meeting: str | None
    status: str  # "scheduled" | "cancelled"
    created_by: str
    created_at: int
    cancelled_at: int | None
    armed: bool


_COLUMNS = (
    "session_id, pair_id, kind, starts_at, ends_at, meeting, status, created_by, created_at,"
    " cancelled_at, armed"
)


def _record(row: Row) -> SessionRecord:
    return SessionRecord(
        session_id=text(row, "session_id"),
        pair_id=text(row, "pair_id"),
        kind=text(row, "kind"),
        starts_at=integer(row, "starts_at"),
        ends_at=integer(row, "ends_at"),
        meeting=text_or_none(row, "meeting"),
        status=text(row, "status"),
        created_by=text(row, "created_by"),
        created_at=integer(row, "created_at"),
        cancelled_at=integer_or_none(row, "cancelled_at"),
        armed=bool(integer(row, "armed")),
    )


async def add(ex: Executor, record: SessionRecord) -> bool:
    """Store a new session; False when its id exists already (a replayed command)."""
    changed = await ex.execute(
        f"INSERT INTO live_sessions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (session_id) DO NOTHING",
        record.session_id,
        record.pair_id,
        record.kind,
        record.starts_at,
        record.ends_at,
        record.meeting,
        record.status,
        record.created_by,
        record.created_at,
        record.cancelled_at,
        1 if record.armed else 0,
    )
    return changed == 1


async def get(ex: Executor, session_id: str) -> SessionRecord | None:
    row = await ex.fetchrow(
        f"SELECT {_COLUMNS} FROM live_sessions WHERE session_id = ?", session_id
    )
    return None if row is None else _record(row)


async def list_for_pair(
    ex: Executor, pair_id: str, *, ending_after: int | None = None
) -> list[SessionRecord]:
    """The pair's scheduled (not cancelled) sessions, soonest first."""
    rows = await ex.fetch(
        f"SELECT {_COLUMNS} FROM live_sessions WHERE pair_id = ? AND status = 'scheduled'"
        " AND ends_at > ? ORDER BY starts_at, session_id",
        pair_id,
        ending_after if ending_after is not None else -1,
    )
    return [_record(row) for row in rows]


async def cancel(ex: Executor, session_id: str, now_ms: int) -> bool:
    """Cancel a scheduled session; False when it was not scheduled."""
    changed = await ex.execute(
        "UPDATE live_sessions SET status = 'cancelled', cancelled_at = ?"
        " WHERE session_id = ? AND status = 'scheduled'",
        now_ms,
        session_id,
    )
    return changed == 1


async def unarmed(ex: Executor) -> list[SessionRecord]:
    """Sessions whose timers the running bridge has not armed yet (added by the CLI)."""
    rows = await ex.fetch(f"SELECT {_COLUMNS} FROM live_sessions WHERE armed = 0")
    return [_record(row) for row in rows]


async def mark_armed(ex: Executor, session_id: str) -> None:
    await ex.execute("UPDATE live_sessions SET armed = 1 WHERE session_id = ?", session_id)


async def live_session(ex: Executor, pair_id: str, now: datetime) -> bool:
    """Tell whether a scheduled session of the pair is running at `now`.

    While one runs, the SLA opens no clock: patient and therapist are talking live.
    """
    moment = to_ms(now)
    found = await ex.fetchval(
        "SELECT session_id FROM live_sessions WHERE pair_id = ? AND status = 'scheduled'"
        " AND starts_at <= ? AND ends_at > ? LIMIT 1",
        pair_id,
        moment,
        moment,
    )
    return found is not None


# ---------------------------------------------------------------- `!video` calls


async def current_call(ex: Executor, pair_id: str) -> str | None:
    """The meeting name of the pair's running `!video` call, or None."""
    value = await ex.fetchval("SELECT meeting FROM video_calls WHERE pair_id = ?", pair_id)
    return to_str_or_none(value, "meeting")


async def start_call(ex: Executor, pair_id: str, meeting: str, started_by: str, now_ms: int) -> str:
    """Record the pair's call; returns the meeting in force (an existing call is kept)."""
    await ex.execute(
        "INSERT INTO video_calls (pair_id, meeting, started_by, started_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (pair_id) DO NOTHING",
        pair_id,
        meeting,
        started_by,
        now_ms,
    )
    current = await current_call(ex, pair_id)
    assert current is not None
    return current


async def end_call(ex: Executor, pair_id: str) -> str | None:
    """Forget the pair's call; returns its meeting name, or None when there was none."""
    meeting = await current_call(ex, pair_id)
    if meeting is not None:
        await ex.execute("DELETE FROM video_calls WHERE pair_id = ?", pair_id)
    return meeting
