"""Events waiting for their room key, on SQLite and PostgreSQL: held, listed, released."""

from __future__ import annotations

from typing import Any

from bridge.store import Database, Executor, open_database, pending

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
ROOM = "!pair:example.org"
PATIENT = "@pat:example.org"


def source(event_id: str, ts: int) -> dict[str, Any]:
    return {
        "type": "m.room.encrypted",
        "room_id": ROOM,
        "event_id": event_id,
        "sender": PATIENT,
        "origin_server_ts": ts,
        "content": {
            "algorithm": "m.megolm.v1.aes-sha2",
            "ciphertext": "AwgAEnAc...",
            "device_id": "PATDEVICE",
            "sender_key": "curve",
            "session_id": "session",
        },
    }


async def hold(db: Executor, event_id: str, ts: int, now: int) -> int:
    return await pending.hold(
        db,
        event_id=event_id,
        room_id=ROOM,
        sender=PATIENT,
        origin_ts=ts,
        source=source(event_id, ts),
        now=now,
    )


async def test_a_held_event_comes_back_as_it_was_stored(db: Database) -> None:
    assert await hold(db, "$a", T0 - 500, T0) == T0
    (row,) = await pending.list_pending(db)
    assert row == pending.PendingEvent(
        event_id="$a",
        room_id=ROOM,
        sender=PATIENT,
        origin_ts=T0 - 500,
        source=source("$a", T0 - 500),
        first_seen_at=T0,
    )
    assert await pending.get(db, "$a") == row
    assert await pending.get(db, "$nope") is None
    assert await pending.count(db) == 1


async def test_holding_again_keeps_the_first_sighting(db: Database) -> None:
    await hold(db, "$a", T0, T0)
    # A replayed sync, or the standby after a takeover, sees the event later.
    assert await hold(db, "$a", T0, T0 + 45_000) == T0
    (row,) = await pending.list_pending(db)
    assert row.first_seen_at == T0
    assert await pending.count(db) == 1


async def test_events_are_listed_oldest_first_and_released_once(db: Database) -> None:
    await hold(db, "$late", T0 + 2, T0 + 2_000)
    await hold(db, "$first", T0, T0)
    await hold(db, "$second", T0 + 1, T0)
    assert [r.event_id for r in await pending.list_pending(db)] == ["$first", "$second", "$late"]
    assert await pending.release(db, "$second")
    assert not await pending.release(db, "$second")
    assert [r.event_id for r in await pending.list_pending(db)] == ["$first", "$late"]
    assert await pending.count(db) == 2


async def test_held_events_survive_a_reopen(db_url: str) -> None:
    first = await open_database(db_url)
    try:
        async with first.transaction() as tx:
            await pending.hold(
                tx,
                event_id="$a",
                room_id=ROOM,
                sender=PATIENT,
                origin_ts=T0,
                source=source("$a", T0),
                now=T0,
            )
    finally:
        await first.close()
    again = await open_database(db_url)
    try:
        (row,) = await pending.list_pending(again)
        assert row.event_id == "$a" and row.first_seen_at == T0
    finally:
        await again.close()


async def test_a_rolled_back_hold_leaves_nothing(db: Database) -> None:
    class Boom(Exception):
        pass

    try:
        async with db.transaction() as tx:
            await hold(tx, "$a", T0, T0)
            raise Boom
    except Boom:
        pass
    assert await pending.list_pending(db) == []
