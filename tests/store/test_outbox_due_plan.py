"""Finding the next due posts stays cheap with thousands of notices waiting for patients.

With 3,500 first-contact notices due for another look, SQLite's planner had checked each
candidate's room against every future row (through the attempt-time index) and sorted them
all: 3 s per batch of 50. The query now reads pending rows in leaving order and checks each
candidate's room through the room's own index.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.outbox import enqueue_content
from bridge.sealing import Sealer
from bridge.store import Database, outbox
from bridge.store.base import to_ms

SEALER = Sealer({"k1": bytes(range(32))}, "k1")
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


async def test_due_reads_in_leaving_order_and_checks_rooms_by_their_index(
    db: Database,
) -> None:
    if db.dialect != "sqlite":
        pytest.skip("the plan is SQLite's; PostgreSQL plans by its statistics")
    plan = " | ".join(
        str(row["detail"])
        for row in await db.fetch("EXPLAIN QUERY PLAN " + outbox.DUE_SQL, 0, 0, 50)
    )
    assert "USING INDEX outbox_pending_order" in plan
    assert "SEARCH e USING INDEX outbox_room_order (room_id=?)" in plan
    assert "TEMP B-TREE" not in plan  # nothing sorted: the index gives the order


async def test_many_waiting_notices_and_a_held_room_keep_their_order(db: Database) -> None:
    async with db.transaction() as tx:
        for n in range(300):  # welcomes waiting for patients who have not joined
            await enqueue_content(
                tx,
                SEALER,
                f"!r{n}",
                "m.room.message",
                {"body": "w"},
                f"w{n:03d}",
                "welcome",
                T0 + timedelta(milliseconds=n),
                await_member=f"@p{n}:hs",
            )
        for n in range(3):  # one room's posts, in the order they were accepted
            await enqueue_content(
                tx,
                SEALER,
                "!busy",
                "m.room.message",
                {"body": "b"},
                f"b{n}",
                "relay",
                T0 + timedelta(seconds=1, milliseconds=n),
            )
    now = to_ms(T0 + timedelta(minutes=1))
    first = await outbox.due(db, now, 50, SEALER)
    assert [i.txn_id for i in first] == [f"w{n:03d}" for n in range(50)]
    everything = await outbox.due(db, now, 1000, SEALER)
    assert [i.txn_id for i in everything][-3:] == ["b0", "b1", "b2"]
    # The busy room's first post waits out a retry: the ones after it are not due.
    await outbox.mark_retry(db, "b0", now + 60_000, "HomeserverUnavailable")
    still = [i.txn_id for i in await outbox.due(db, now, 1000, SEALER)]
    assert "b0" not in still and "b1" not in still and "b2" not in still
    assert len(still) == 300
