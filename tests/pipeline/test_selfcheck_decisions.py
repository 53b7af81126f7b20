"""The self-check's decisions, with a stand-in witness and bot over a real SQLite store.

When a post counts as unreadable (only after the deadline *and* a witness sync that began
after the post), when it is only unchecked, that a repost is never re-posted, and what
the audit and /health say. The real witness on a real homeserver: test_selfcheck.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.adapters.matrix.rest import HomeserverUnavailable, MatrixError
from bridge.adapters.matrix.witness import Reading
from bridge.audit.log import AuditLog
from bridge.features.selfcheck import GIVE_UP_AFTER, SelfCheck
from bridge.sealing import Sealer
from bridge.store import Database, open_database, outbox
from bridge.store import witness as checks

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
ROOM = "!pair:example.org"
DEVICE = "CONFIDANTWITNESS"
SEALER = Sealer({"k1": bytes(range(32))}, "k1")


class FakeWitness:
    def __init__(self) -> None:
        self.device_id: str | None = DEVICE
        self.synced_from = 0.0
        self.last_sync_ok_at = 0.0
        self.on_synced: Callable[[], None] | None = None
        #: event id -> what reading it gives (or raises).
        self.readings: dict[str, Reading | Exception] = {}
        self.reads: list[str] = []

    def start(self) -> None: ...

    async def stop(self) -> None: ...

    def synced_since(self, moment: float) -> bool:
        return self.synced_from >= moment

    def sync(self, at: datetime) -> None:
        self.synced_from = self.last_sync_ok_at = at.timestamp()

    async def read(self, room_id: str, event_id: str) -> Reading:
        self.reads.append(event_id)
        reading = self.readings.get(event_id, Reading(False, "S1"))
        if isinstance(reading, Exception):
            raise reading
        return reading

    def forget(self, event_id: str) -> None: ...


class FakeBot:
    def __init__(self) -> None:
        self.meant = True
        self.rotated: list[tuple[str, str]] = []

    def key_meant_for(self, room_id: str, device_id: str) -> bool:
        return self.meant and device_id == DEVICE

    async def rotate_room_key(self, room_id: str, session_id: str) -> bool:
        self.rotated.append((room_id, session_id))
        return True


class FakeOutbox:
    kicks = 0

    def kick(self) -> None:
        self.kicks += 1


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await open_database(f"sqlite://{tmp_path / 'confidant.db'}")
    yield database
    await database.close()


@pytest.fixture
def parts(db: Database) -> tuple[SelfCheck, FakeWitness, FakeBot, FakeOutbox, Clock]:
    witness, bot, box, clock = FakeWitness(), FakeBot(), FakeOutbox(), Clock()
    check = SelfCheck(
        db=db,
        sealer=SEALER,
        audit=AuditLog(db, SEALER, bytes(range(32, 64))),
        bot=bot,
        outbox=box,
        witness=witness,
        deadline=timedelta(seconds=30),
        clock=clock,
    )
    check.state = "up"
    return check, witness, bot, box, clock


async def sent(db: Database, clock: Clock, check: SelfCheck, txn_id: str) -> str:
    """Queue and send one post (content kept, as with the self-check on); return its event id."""
    event_id = f"${txn_id}"
    async with db.transaction() as tx:
        await outbox.enqueue(
            tx,
            txn_id=txn_id,
            room_id=ROOM,
            event_type="m.room.message",
            content={"msgtype": "m.notice", "body": "hello"},
            kind="notice",
            now=int(clock().timestamp() * 1000),
            sealer=SEALER,
        )
        await outbox.mark_sent(
            tx, txn_id, event_id, int(clock().timestamp() * 1000), keep_content=True
        )
    await check.on_sent(txn_id, ROOM, event_id)
    return event_id


async def state(db: Database, txn_id: str) -> str | None:
    found = await checks.get(db, txn_id)
    return None if found is None else found.state.value


async def audit_rows(db: Database) -> list[dict[str, Any]]:
    return await db.fetch(
        "SELECT action, event_id, outcome, details FROM audit_entries ORDER BY seq"
    )


async def test_a_post_read_by_the_witness_ends_readable_with_its_content_gone(parts, db):
    check, witness, _bot, _box, clock = parts
    event_id = await sent(db, clock, check, "n1")
    witness.readings[event_id] = Reading(True, "S1")
    witness.sync(clock.now)
    assert await check.examine() == 1
    assert await state(db, "n1") == "readable"
    item = await outbox.get(db, "n1", SEALER)
    assert item is not None and item.content is None
    assert await audit_rows(db) == []


async def test_no_verdict_before_the_deadline_or_without_a_witness_sync_since_the_post(parts, db):
    check, witness, bot, box, clock = parts
    witness.sync(clock.now - timedelta(seconds=1))  # the last sync began before the post
    await sent(db, clock, check, "n1")
    assert await check.examine() == 0
    clock.now += timedelta(seconds=31)
    # Past the deadline, but the witness has not synced since: its key may still come.
    assert await check.examine() == 0
    assert await state(db, "n1") == "waiting"
    assert bot.rotated == [] and box.kicks == 0

    witness.sync(clock.now)
    assert await check.examine() == 1
    assert await state(db, "n1") == "reposted"
    assert bot.rotated == [(ROOM, "S1")]
    assert box.kicks == 1
    repost = await outbox.get(db, "n1.repost", SEALER)
    assert repost is not None and repost.content == {"msgtype": "m.notice", "body": "hello"}
    (row,) = await audit_rows(db)
    assert (row["action"], row["event_id"], row["outcome"]) == (
        "post.unreadable",
        "$n1",
        "reposted",
    )
    assert json.loads(row["details"]) == {
        "room_id": ROOM,
        "txn_id": "n1",
        "repost_txn_id": "n1.repost",
    }
    ok, detail, figures = await check.health()
    assert not ok and "1 repair(s) pending" in detail
    assert figures["repairs_pending"] == 1 and figures["unreadable_posts"] == 1


async def test_a_repost_that_is_unreadable_too_is_audited_as_not_repaired(parts, db):
    check, witness, _bot, box, clock = parts
    await sent(db, clock, check, "n1.repost")
    clock.now += timedelta(seconds=31)
    witness.sync(clock.now)
    assert await check.examine() == 1
    assert await state(db, "n1.repost") == "unreadable"
    assert await outbox.get(db, "n1.repost.repost") is None
    assert box.kicks == 0
    (row,) = await audit_rows(db)
    assert (row["action"], row["outcome"]) == ("post.unreadable", "not_repaired")
    ok, _detail, figures = await check.health()
    assert not ok and figures["not_repaired"] == 1


async def test_a_repaired_post_leaves_health_ok_and_is_audited_as_repaired(parts, db):
    check, witness, _bot, _box, clock = parts
    await sent(db, clock, check, "n1")
    clock.now += timedelta(seconds=31)
    witness.sync(clock.now)
    await check.examine()
    repost_event = await sent(db, clock, check, "n1.repost")
    witness.readings[repost_event] = Reading(True, "S2")
    witness.sync(clock.now)
    await check.examine()
    assert await state(db, "n1.repost") == "readable"
    rows = await audit_rows(db)
    assert [(r["action"], r["event_id"]) for r in rows] == [
        ("post.unreadable", "$n1"),
        ("post.repaired", repost_event),
    ]
    assert json.loads(rows[1]["details"])["original_event_id"] == "$n1"
    ok, _detail, figures = await check.health()
    assert ok, figures
    assert (figures["unreadable_posts"], figures["repairs_pending"]) == (1, 0)


async def test_a_post_whose_key_was_not_meant_for_the_witness_is_unchecked(parts, db):
    check, witness, bot, _box, clock = parts
    bot.meant = False
    await sent(db, clock, check, "n1")
    assert await state(db, "n1") == "unchecked"
    item = await outbox.get(db, "n1", SEALER)
    assert item is not None and item.content is None
    assert await check.examine() == 0 and witness.reads == []


async def test_a_post_whose_key_went_to_another_witness_is_unchecked_not_reposted(parts, db):
    """After a takeover the new instance has a witness of its own, which never had the key."""
    check, witness, _bot, box, clock = parts
    await sent(db, clock, check, "n1")
    witness.device_id = "CONFIDANTWSTANDBY"
    clock.now += timedelta(seconds=31)
    witness.sync(clock.now)
    assert await check.examine() == 1
    assert await state(db, "n1") == "unchecked"
    assert witness.reads == [] and box.kicks == 0
    assert await audit_rows(db) == []


async def test_a_witness_that_cannot_look_gives_up_without_a_verdict(parts, db):
    check, witness, _bot, box, clock = parts
    event_id = await sent(db, clock, check, "n1")
    witness.readings[event_id] = HomeserverUnavailable("GET: HTTP 502")
    witness.sync(clock.now)
    assert await check.examine() == 0
    clock.now += GIVE_UP_AFTER
    witness.sync(clock.now)
    # Never read at all: no session to speak of, so nothing is re-posted.
    assert await check.examine() == 1
    assert await state(db, "n1") == "unchecked"
    assert box.kicks == 0

    gone = await sent(db, clock, check, "n2")
    witness.readings[gone] = MatrixError(403, "M_FORBIDDEN", "not in room", {})
    witness.sync(clock.now)
    assert await check.examine() == 1
    assert await state(db, "n2") == "unchecked"
    assert await audit_rows(db) == []


async def test_health_and_figures_when_off():
    check = SelfCheck(
        db=None,  # type: ignore[arg-type]
        sealer=SEALER,
        audit=None,  # type: ignore[arg-type]
        bot=None,
        outbox=None,
        witness=None,
        clock=lambda: T0,
        off_reason="bot.witness.enabled is false",
    )
    assert await check.health() == (
        True,
        "off: bot.witness.enabled is false",
        {"enabled": False, "reason": "bot.witness.enabled is false"},
    )
    assert await check.figures() is None
    await check.on_sent("t", ROOM, "$e")  # nothing to do, nothing recorded


async def test_health_is_degraded_when_the_witness_stops_syncing(parts, db):
    check, witness, _bot, _box, clock = parts
    witness.sync(clock.now)
    ok, detail, _ = await check.health()
    assert ok and detail.startswith("up;")
    clock.now += timedelta(seconds=120)
    ok, detail, figures = await check.health()
    assert not ok and detail.startswith("not syncing;")
    assert figures["state"] == "up"


async def test_health_gives_a_starting_witness_time(parts, db):
    check, _witness, _bot, _box, _clock = parts
    check.state = "starting"
    check.last_error = "HomeserverUnavailable"
    ok, detail, _ = await check.health()
    assert ok and detail.startswith("starting (HomeserverUnavailable);")
