"""Group commit of the audit chain, on SQLite and PostgreSQL: concurrent `record` calls share
transactions, in the order they came, each caller answered once its entry is committed; a
bad entry fails alone; periodic checkpoints inside a group sign the head after their entry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bridge.audit import AuditLog, verify
from bridge.core.audit import message_content, public_key_bytes
from bridge.sealing import Sealer
from bridge.store import Database
from bridge.store.base import Transaction

pytestmark = pytest.mark.integration

NOW = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
SIGNING_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
TRUSTED = public_key_bytes(SIGNING_KEY.public_key())
SEALER = Sealer({"k1": bytes(range(100, 132))}, "k1")


class CountingDatabase:
    """The database, counting the transactions begun through it."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.transactions = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        self.transactions += 1
        async with self._db.transaction() as tx:
            yield tx


def entry(i: int) -> dict[str, Any]:
    return {
        "pair_id": f"pair-{i % 4}",
        "action": "room.text",
        "actor": f"@writer{i}:example.org",
        "details": {"i": i},
        "content": message_content("m.text", f"message {i}"),
    }


async def test_concurrent_records_share_transactions_in_arrival_order(db: Database) -> None:
    counting = CountingDatabase(db)
    audit = AuditLog(counting, SEALER, SIGNING_KEY, checkpoint_every=1000)
    seqs = await asyncio.gather(*(audit.record(entry(i), NOW) for i in range(60)))
    # Called in this order, committed in this order: entry i is seq i + 1.
    assert seqs == list(range(1, 61))
    actors = [r["actor"] for r in await db.fetch("SELECT actor FROM audit_entries ORDER BY seq")]
    assert actors == [f"@writer{i}:example.org" for i in range(60)]
    assert counting.transactions < 60  # grouped, not one transaction each
    result = await verify(db, trusted_key=TRUSTED, sealer=SEALER)
    assert result.ok and result.count == 60 and result.content_checked == 60, result.summary()
    pair = await verify(db, "pair-2")
    assert pair.ok and pair.pair_count == 15


async def test_each_caller_is_answered_after_its_entry_is_committed(db: Database) -> None:
    audit = AuditLog(db, SEALER, SIGNING_KEY)

    async def record_and_look(i: int) -> bool:
        seq = await audit.record(entry(i), NOW)
        # Another reader sees it: the transaction that holds it has committed.
        return bool(await db.fetchval("SELECT COUNT(*) FROM audit_entries WHERE seq = ?", seq))

    assert all(await asyncio.gather(*(record_and_look(i) for i in range(20))))


async def test_a_bad_entry_fails_alone(db: Database) -> None:
    audit = AuditLog(db, SEALER, SIGNING_KEY)
    calls = [audit.record(entry(i), NOW) for i in range(5)]
    calls.insert(2, audit.record({"action": "bad", "actor": "@x:y", "details": {"f": 0.5}}, NOW))
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(outcomes[2], TypeError)
    good = [o for o in outcomes if not isinstance(o, BaseException)]
    assert sorted(good) == [1, 2, 3, 4, 5]
    assert (await verify(db, trusted_key=TRUSTED, sealer=SEALER)).ok


async def test_checkpoints_inside_a_group_sign_the_head_after_their_entry(db: Database) -> None:
    audit = AuditLog(db, SEALER, SIGNING_KEY, checkpoint_every=7)
    await asyncio.gather(*(audit.record(entry(i), NOW) for i in range(30)))
    rows = await db.fetch(
        "SELECT c.count, c.head_hash, e.entry_hash FROM audit_checkpoints c"
        " JOIN audit_entries e ON e.seq = c.count ORDER BY c.count"
    )
    assert [r["count"] for r in rows] == [7, 14, 21, 28]
    assert all(bytes(r["head_hash"]) == bytes(r["entry_hash"]) for r in rows)
    result = await verify(db, trusted_key=TRUSTED)
    assert result.ok and result.checkpoints_verified == 4 and result.last_checkpoint == 28
