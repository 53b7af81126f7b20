"""Pending events: encrypted room events that wait for their room key, kept durably.

The sync loop holds an event here before it saves a sync token past it, so an event
whose key has not arrived yet survives a restart or a standby's takeover on the same
database. The row goes once the service has committed the event, decrypted or, after
the grace period, as undecryptable; the service dedupes by event id, so a crash between
that commit and `release` hands nothing over twice.

What is at rest: `source` is the event as the homeserver delivered it, reduced to the
Megolm ciphertext and its routing fields (type, room id, sender, event id, origin time,
and the cleartext `m.relates_to` the homeserver sees anyway). No plaintext is stored:
the ciphertext opens only with its Megolm room key, which lives in the bot's crypto store
(nio's, in the data directory), not in these tables. The routing metadata is what the
homeserver itself keeps about every event; it is acceptable at rest here for the same
reason it is in processed_events and the audit chain.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.store.base import Executor, Row
from bridge.store.rows import integer, json_object, text, to_int, to_int_or_none


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """One event waiting for its key; `first_seen_at` is wall-clock ms, from any instance."""

    event_id: str
    room_id: str
    sender: str
    origin_ts: int
    source: dict[str, Any]
    first_seen_at: int


_COLUMNS = "event_id, room_id, sender, origin_ts, source, first_seen_at"


def _record(row: Row) -> PendingEvent:
    return PendingEvent(
        event_id=text(row, "event_id"),
        room_id=text(row, "room_id"),
        sender=text(row, "sender"),
        origin_ts=integer(row, "origin_ts"),
        source=json_object(text(row, "source"), "source"),
        first_seen_at=integer(row, "first_seen_at"),
    )


async def hold(
    ex: Executor,
    *,
    event_id: str,
    room_id: str,
    sender: str,
    origin_ts: int,
    source: Mapping[str, Any],
    now: int,
) -> int:
    """Keep an event until it is released; return when it was first seen.

    Holding an event again (a replayed sync, another instance) keeps the first row, so
    the grace period is never restarted.
    """
    await ex.execute(
        f"INSERT INTO pending_events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (event_id) DO NOTHING",
        event_id,
        room_id,
        sender,
        origin_ts,
        json.dumps(dict(source), sort_keys=True, separators=(",", ":")),
        now,
    )
    first_seen = await ex.fetchval(
        "SELECT first_seen_at FROM pending_events WHERE event_id = ?", event_id
    )
    return to_int(first_seen, "first_seen_at")


async def list_pending(ex: Executor) -> list[PendingEvent]:
    """Every event still waiting, oldest first (the order they will be handed over)."""
    rows = await ex.fetch(
        f"SELECT {_COLUMNS} FROM pending_events ORDER BY first_seen_at, origin_ts, event_id"
    )
    return [_record(row) for row in rows]


async def get(ex: Executor, event_id: str) -> PendingEvent | None:
    """One waiting event, or None."""
    row = await ex.fetchrow(f"SELECT {_COLUMNS} FROM pending_events WHERE event_id = ?", event_id)
    return None if row is None else _record(row)


async def release(ex: Executor, event_id: str) -> bool:
    """Forget an event once it was handed over and committed; False if it was not held."""
    return await ex.execute("DELETE FROM pending_events WHERE event_id = ?", event_id) == 1


async def count(ex: Executor) -> int:
    """How many events wait for their key."""
    value = await ex.fetchval("SELECT COUNT(*) FROM pending_events")
    return to_int_or_none(value) or 0
