"""The audit store on SQLite and PostgreSQL: chain rows, and what metrics, voice, sessions read."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bridge.audit import AuditLog
from bridge.core.audit import GENESIS_HASH
from bridge.core.model import AppendAudit
from bridge.sealing import Sealer
from bridge.store import Database, checkpoints, inbox, outbox, pairs
from bridge.store import audit as audit_store
from bridge.store.base import to_ms

pytestmark = pytest.mark.integration

NOW = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
SIGNING_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
SEALER = Sealer({"k1": bytes(range(100, 132))}, "k1")


@pytest.fixture
def audit(db: Database) -> AuditLog:
    return AuditLog(db, SEALER, SIGNING_KEY, checkpoint_every=4)


async def _room(
    audit: AuditLog, action: str, actor: str, event_id: str, at: datetime, *, role: str
) -> int:
    return await audit.record(
        AppendAudit("pair-a", action, actor, {"role": role}, event_id=event_id), at
    )


async def test_head_and_rows_follow_the_appends(db: Database, audit: AuditLog) -> None:
    assert await audit_store.head(db) == audit_store.Head(0, None)
    assert await audit_store.max_seq(db) is None
    for i in range(5):
        await _room(audit, "room.text", "@pat:x", f"$e{i}", NOW, role="patient")
    head = await audit_store.head(db)
    rows = await audit_store.entries_after(db, -1, 10)
    assert [row.seq for row in rows] == [1, 2, 3, 4, 5]
    assert head == audit_store.Head(5, rows[-1].entry_hash)
    assert rows[0].prev_hash == GENESIS_HASH
    assert all(later.prev_hash == earlier.entry_hash for earlier, later in itertools.pairwise(rows))
    assert rows[1].entry()["pair_prev"] == rows[0].entry_hash.hex()
    assert [row.seq for row in await audit_store.entries_after(db, 2, 2)] == [3, 4]
    assert await audit_store.pair_head(db, "pair-a") == rows[-1].entry_hash
    assert await audit_store.pair_head(db, "pair-b") is None
    assert await audit_store.max_seq(db) == 5
    [checkpoint] = await checkpoints.list_all(db)
    assert checkpoint.count == 4 and checkpoint.checkpoint.head_hash == rows[3].entry_hash
    assert await checkpoints.latest(db) == checkpoint


async def test_actions_in_range_reads_only_the_given_actions(db: Database, audit: AuditLog) -> None:
    await audit.record({"action": "sla.reminded", "actor": "sla", "outcome": "ok"}, NOW)
    await audit.record({"action": "room.text", "actor": "@pat:x"}, NOW)
    await audit.record(
        {"action": "email.rejected", "actor": "smtp", "details": {"reason": "dkim_fail"}}, NOW
    )
    found = await audit_store.actions_in_range(db, 0, 3, ("sla.reminded", "email.rejected"))
    assert [(r.action, r.outcome) for r in found] == [
        ("sla.reminded", "ok"),
        ("email.rejected", "ok"),
    ]
    assert found[1].details == '{"reason":"dkim_fail"}'
    assert await audit_store.actions_in_range(db, 1, 3, ("sla.reminded",)) == []
    assert await audit_store.actions_in_range(db, 0, 3, ()) == []


async def test_media_events_without_a_stored_copy(db: Database, audit: AuditLog) -> None:
    await _room(audit, "room.voice", "@pat:x", "$voice", NOW, role="patient")
    await _room(audit, "room.image", "@doc:x", "$image", NOW, role="therapist")
    await _room(audit, "room.file", "@bot:x", "$bot", NOW, role="bot")
    await _room(audit, "room.file", "@pat:x", "$old", NOW - timedelta(days=9), role="patient")
    await audit.record(AppendAudit("pair-a", "media.stored", "@doc:x", {}, event_id="$image"), NOW)
    assert await audit_store.first_room_entry(db, "$voice") == 1
    assert await audit_store.first_room_entry(db, "$nothing") is None
    assert await audit_store.has_entry(db, "$image", "media.stored")
    assert not await audit_store.has_entry(db, "$voice", "media.stored")
    missed = await audit_store.events_without(
        db,
        "media.stored",
        actions=("room.voice", "room.image", "room.file"),
        roles=("patient", "therapist"),
        since_ms=to_ms(NOW - timedelta(days=7)),
    )
    assert missed == [audit_store.AuditedEvent("pair-a", "$voice", "@pat:x", "room.voice")]


async def test_room_writers_in_a_window(db: Database, audit: AuditLog) -> None:
    start = NOW
    await _room(audit, "room.text", "@pat:x", "$a", start, role="patient")
    await _room(audit, "room.text", "@pat:x", "$b", start + timedelta(minutes=5), role="patient")
    await _room(audit, "room.membership", "@doc:x", "$c", start, role="therapist")
    await _room(audit, "room.text", "@doc:x", "$d", start + timedelta(hours=1), role="therapist")
    writers = await audit_store.room_writers(
        db, "pair-a", to_ms(start), to_ms(start + timedelta(hours=1))
    )
    assert writers == ["@pat:x"]


async def test_status_counts_cover_every_status(db: Database) -> None:
    pair = await pairs.create(db, patient_id="@pat:x", therapist_id="@doc:x", now=0)
    await pairs.set_room(db, pair.pair_id, "!room:x")
    await pairs.create(db, patient_id="@pat2:x", therapist_id="@doc:x", now=0)
    assert await pairs.status_counts(db) == {
        pairs.PairStatus.PROVISIONING: 1,
        pairs.PairStatus.ACTIVE: 1,
        pairs.PairStatus.REMOVED: 0,
    }
    for txn in ("t1", "t2"):
        await outbox.enqueue(
            db,
            txn_id=txn,
            room_id="!room:x",
            event_type="m.room.message",
            content={"body": "x"},
            kind="notice",
            now=0,
            sealer=SEALER,
        )
    await outbox.mark_failed(db, "t2", "HTTP 400")
    assert await outbox.status_counts(db) == {
        outbox.OutboxStatus.PENDING: 1,
        outbox.OutboxStatus.SENT: 0,
        outbox.OutboxStatus.FAILED: 1,
    }
    assert set((await inbox.status_counts(db)).values()) == {0}
