"""Sync state: small key/value settings (the sync token) and the events already handled."""

from __future__ import annotations

from bridge.store.base import Executor
from bridge.store.rows import to_str_or_none

#: Key of the Matrix `next_batch` token in the kv table.
SYNC_TOKEN = "matrix.next_batch"


async def get_kv(ex: Executor, key: str) -> str | None:
    """The value stored under `key`, or None."""
    return to_str_or_none(await ex.fetchval("SELECT value FROM kv WHERE key = ?", key), "value")


async def set_kv(ex: Executor, key: str, value: str) -> None:
    """Store `value` under `key`, replacing any previous value."""
    await ex.execute(
        "INSERT INTO kv (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        key,
        value,
    )


async def set_kv_if_absent(ex: Executor, key: str, value: str) -> bool:
    """Store `value` under `key` unless something is there already; True if stored."""
    inserted = await ex.execute(
        "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", key, value
    )
    return inserted == 1


async def delete_kv(ex: Executor, key: str) -> bool:
    """Remove `key`; False if it was not there."""
    return await ex.execute("DELETE FROM kv WHERE key = ?", key) == 1


async def mark_processed(ex: Executor, event_id: str, room_id: str, now: int) -> bool:
    """Claim an event for handling; False if it was handled before.

    Call it in the same transaction as the effects of handling the event, so a
    crash either keeps both or neither.
    """
    inserted = await ex.execute(
        "INSERT INTO processed_events (event_id, room_id, seen_at) VALUES (?, ?, ?) "
        "ON CONFLICT (event_id) DO NOTHING",
        event_id,
        room_id,
        now,
    )
    return inserted == 1


async def is_processed(ex: Executor, event_id: str) -> bool:
    """Whether the event was handled already."""
    value = await ex.fetchval("SELECT 1 FROM processed_events WHERE event_id = ?", event_id)
    return value is not None


async def prune_processed(ex: Executor, before: int) -> int:
    """Forget events seen before `before`; return how many were forgotten."""
    return await ex.execute("DELETE FROM processed_events WHERE seen_at < ?", before)
