"""The outbox sends several rooms at once and keeps each room's posts in order.

A scripted sender stands in for the homeserver: each send waits on an event the test
releases, so the test sees which posts are in flight together.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.outbox import OutboxWorker, enqueue_content
from bridge.sealing import Sealer
from bridge.store import Database, outbox
from bridge.store.outbox import OutboxStatus

SEALER = Sealer({"k1": bytes(range(32))}, "k1")
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=1)


class ScriptedSender:
    """Records the order of sends and how many were in flight at once."""

    def __init__(self, *, fail: dict[str, Exception] | None = None) -> None:
        self.fail = fail or {}
        self.order: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.gate = asyncio.Event()

    async def send(
        self, room_id: str, event_type: str, content: dict[str, Any], txn_id: str
    ) -> str:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.gate.wait()
            if txn_id in self.fail:
                raise self.fail[txn_id]
            self.order.append(txn_id)
            return f"$ev-{txn_id}"
        finally:
            self.in_flight -= 1

    async def member_ready(self, room_id: str, user_id: str) -> bool:
        return True

    async def reachable(self) -> bool:
        return False


async def queue(db: Database, rows: list[tuple[str, str]]) -> None:
    async with db.transaction() as tx:
        for n, (room_id, txn_id) in enumerate(rows):
            await enqueue_content(
                tx,
                SEALER,
                room_id,
                "m.room.message",
                {"msgtype": "m.notice", "body": txn_id},
                txn_id,
                "test",
                T0 + timedelta(milliseconds=n),
            )


async def drain_when_all_waiting(worker: OutboxWorker, sender: ScriptedSender, n: int) -> int:
    task = asyncio.create_task(worker.drain())
    for _ in range(200):
        if sender.in_flight >= n:
            break
        await asyncio.sleep(0.01)
    sender.gate.set()
    return await task


async def test_rooms_go_out_together_and_each_in_its_order(db: Database) -> None:
    rows = [(f"!r{room}", f"t{room}-{n}") for n in range(3) for room in range(5)]
    await queue(db, rows)
    sender = ScriptedSender()
    worker = OutboxWorker(db, SEALER, sender, rooms_in_flight=4, clock=lambda: NOW)

    sent = await drain_when_all_waiting(worker, sender, 4)

    assert sent == 15
    assert sender.most_in_flight == 4  # bounded by the lanes, more than one
    for room in range(5):
        mine = [t for t in sender.order if t.startswith(f"t{room}-")]
        assert mine == [f"t{room}-0", f"t{room}-1", f"t{room}-2"]
    assert await outbox.depth(db) == 0


async def test_a_failed_post_holds_its_room_only(db: Database) -> None:
    await queue(db, [("!a", "a0"), ("!a", "a1"), ("!b", "b0"), ("!b", "b1")])
    sender = ScriptedSender(fail={"a0": RuntimeError("refused")})
    worker = OutboxWorker(db, SEALER, sender, clock=lambda: NOW)

    sent = await drain_when_all_waiting(worker, sender, 2)

    assert sent == 2 and sender.order == ["b0", "b1"]
    a0 = await outbox.get(db, "a0")
    a1 = await outbox.get(db, "a1")
    assert a0 is not None and a0.status == OutboxStatus.PENDING and a0.attempts == 1
    assert a1 is not None and a1.status == OutboxStatus.PENDING and a1.attempts == 0
    # a1 is not due while a0 waits out its backoff: the room's order holds.
    assert [i.txn_id for i in await outbox.due(db, int(NOW.timestamp() * 1000), 50, SEALER)] == []


async def test_an_outage_stops_every_lane_and_sends_nothing_twice(db: Database) -> None:
    rows = [(f"!r{room}", f"t{room}-{n}") for n in range(2) for room in range(3)]
    await queue(db, rows)
    sender = ScriptedSender(fail={"t0-0": ConnectionError("502")})
    worker = OutboxWorker(db, SEALER, sender, rooms_in_flight=3, clock=lambda: NOW)

    sent = await drain_when_all_waiting(worker, sender, 3)

    assert worker.homeserver_down
    # The two other rooms' first posts were in flight and landed; nothing more was tried.
    assert sorted(sender.order) == ["t1-0", "t2-0"] and sent == 2
    assert await outbox.depth(db) == 4
    assert await worker.drain() == 0  # the probe says down: nothing is sent
