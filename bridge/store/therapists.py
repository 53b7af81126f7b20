"""Therapists: their desk room, e-mail, supervisor and cover while away."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.store.base import Executor, Row
from bridge.store.rows import integer, integer_or_none, text, text_or_none


@dataclass(frozen=True, slots=True)
class TherapistRecord:
    """A stored therapist."""

    user_id: str
    desk_room_id: str | None
    email: str | None
    supervisor_id: str | None
    away_until: int | None
    cover_id: str | None
    created_at: int


_COLUMNS = "user_id, desk_room_id, email, supervisor_id, away_until, cover_id, created_at"


def _record(row: Row) -> TherapistRecord:
    return TherapistRecord(
        user_id=text(row, "user_id"),
        desk_room_id=text_or_none(row, "desk_room_id"),
        email=text_or_none(row, "email"),
        supervisor_id=text_or_none(row, "supervisor_id"),
        away_until=integer_or_none(row, "away_until"),
        cover_id=text_or_none(row, "cover_id"),
        created_at=integer(row, "created_at"),
    )


async def upsert(
    ex: Executor,
    user_id: str,
    *,
    now: int,
    email: str | None = None,
    supervisor_id: str | None = None,
) -> None:
    """Add a therapist or update their e-mail and supervisor (desk room and cover are kept)."""
    await ex.execute(
        f"INSERT INTO therapists ({_COLUMNS}) VALUES (?, NULL, ?, ?, NULL, NULL, ?) "
        "ON CONFLICT (user_id) DO UPDATE SET "
        "email = excluded.email, supervisor_id = excluded.supervisor_id",
        user_id,
        email,
        supervisor_id,
        now,
    )


async def get(ex: Executor, user_id: str) -> TherapistRecord | None:
    """The therapist with this Matrix user id."""
    row = await ex.fetchrow(f"SELECT {_COLUMNS} FROM therapists WHERE user_id = ?", user_id)
    return None if row is None else _record(row)


async def get_by_desk_room(ex: Executor, room_id: str) -> TherapistRecord | None:
    """The therapist whose desk room this is."""
    row = await ex.fetchrow(f"SELECT {_COLUMNS} FROM therapists WHERE desk_room_id = ?", room_id)
    return None if row is None else _record(row)


async def list_therapists(ex: Executor) -> list[TherapistRecord]:
    """Every therapist, by user id."""
    rows = await ex.fetch(f"SELECT {_COLUMNS} FROM therapists ORDER BY user_id")
    return [_record(row) for row in rows]


async def set_desk_room(ex: Executor, user_id: str, room_id: str | None) -> bool:
    """Record (or clear) the therapist's desk room. False if no such therapist."""
    changed = await ex.execute(
        "UPDATE therapists SET desk_room_id = ? WHERE user_id = ?", room_id, user_id
    )
    return changed == 1


async def set_away(
    ex: Executor, user_id: str, away_until: int | None, cover_id: str | None
) -> bool:
    """Mark the therapist away until a time with a covering colleague, or back (None, None)."""
    changed = await ex.execute(
        "UPDATE therapists SET away_until = ?, cover_id = ? WHERE user_id = ?",
        away_until,
        cover_id,
        user_id,
    )
    return changed == 1


async def remove(ex: Executor, user_id: str) -> bool:
    """Delete the therapist row (their pairs are kept and must be reassigned or removed)."""
    return await ex.execute("DELETE FROM therapists WHERE user_id = ?", user_id) == 1
