"""The fast, range-by-range proof of an intact audit chain, on SQLite and PostgreSQL: it
gives exactly the sequential verifier's result for intact chains (with checkpoints, content,
recorded purges, ranges in worker processes), and proves nothing for a broken one, which the
sequential verifier then names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bridge.audit import AuditLog, fastscan, verify
from bridge.core.audit import BreakKind, message_content, public_key_bytes
from bridge.sealing import Sealer
from bridge.store import Database

pytestmark = pytest.mark.integration

NOW = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
SIGNING_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
TRUSTED = public_key_bytes(SIGNING_KEY.public_key())
SEALER = Sealer({"k1": bytes(range(100, 132))}, "k1")


async def fill(audit: AuditLog, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        await audit.record(
            {
                "pair_id": None if i % 5 == 0 else f"pair-{i % 3}",
                "action": "room.text",
                "actor": f"@patient{i}:example.org",
                "details": {"kind": "text", "note": 'é \u2028 "quoted" \\ \x01', "n": i},
                "event_id": None if i % 7 == 0 else f"$event{i}",
                "content": None if i % 4 == 0 else message_content("m.text", f"body {i} ✓"),
            },
            NOW + timedelta(seconds=i),
        )


async def both(db: Database, **kwargs: object):
    fast = await verify(db, trusted_key=TRUSTED, **kwargs)  # type: ignore[arg-type]
    slow = await verify(db, trusted_key=TRUSTED, fast=False, **kwargs)  # type: ignore[arg-type]
    return fast, slow


async def test_an_intact_chain_gives_the_sequential_result(db: Database) -> None:
    audit = AuditLog(db, SEALER, SIGNING_KEY, checkpoint_every=9)
    for kwargs in ({}, {"sealer": SEALER}):
        fast, slow = await both(db, **kwargs)
        assert fast == slow and fast.ok and fast.count == 0  # the empty chain
    await fill(audit, 40)
    await audit.purge(timedelta(seconds=0), NOW + timedelta(seconds=20))  # content < 20 s
    await fill(audit, 12, start=40)
    for kwargs in ({}, {"sealer": SEALER}):
        fast, slow = await both(db, **kwargs)
        assert fast == slow, (fast, slow)
        assert fast.ok and fast.count == 53 and fast.checkpoints_verified == 5
    assert (await verify(db, sealer=SEALER)).content_checked > 0


async def test_ranges_in_worker_processes_join_into_the_chain(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit = AuditLog(db, SEALER, SIGNING_KEY, checkpoint_every=10)
    await fill(audit, 45)
    monkeypatch.setattr(fastscan, "PARALLEL_FROM", 10)
    monkeypatch.setattr(fastscan.os, "cpu_count", lambda: 3)
    fast, slow = await both(db, sealer=SEALER)
    assert fast == slow and fast.ok and fast.content_checked == slow.content_checked
    scans = await fastscan.scan_chain(db, 45, frozenset({10, 20, 30, 40}), SEALER)
    if db.dialect == "sqlite":
        assert [s.first for s in scans] == [1, 16, 31]  # three processes, one range each
    assert fastscan.joined(scans, 45) == fast.head_hash
    assert fastscan.joined(scans, 46) is None  # an entry short


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("UPDATE audit_entries SET actor = '@someone:else' WHERE seq = 17", BreakKind.CHANGED),
        ("DELETE FROM audit_entries WHERE seq = 30", BreakKind.MISSING),
        ('UPDATE audit_entries SET details = \'{ "kind" : "text" }\' WHERE seq = 8', None),
        ("DELETE FROM audit_content WHERE seq = 22", BreakKind.MISSING),
        ("UPDATE audit_content SET seq = 99 WHERE seq = 23", None),
        ("UPDATE audit_checkpoints SET head_hash = prev_hash_of_nothing", None),
    ],
)
async def test_a_broken_chain_is_not_proven_and_named_as_before(
    db: Database, sql: str, kind: BreakKind | None
) -> None:
    audit = AuditLog(db, SEALER, SIGNING_KEY, checkpoint_every=10)
    await fill(audit, 35)
    if "prev_hash_of_nothing" in sql:
        # A checkpoint whose head is another entry's hash (its signature now fails too).
        sql = (
            "UPDATE audit_checkpoints SET head_hash ="
            " (SELECT entry_hash FROM audit_entries WHERE seq = 3)"
        )
    await db.execute(sql)
    count = await db.fetchval("SELECT MAX(seq) FROM audit_entries")
    scans = await fastscan.scan_chain(db, int(count), frozenset({10, 20, 30}), SEALER)
    fast, slow = await both(db, sealer=SEALER)
    assert fast == slow and not fast.ok, fast
    if kind is not None:
        assert fast.kind is kind
    if "audit_checkpoints" not in sql and "audit_content" not in sql:
        assert fastscan.joined(scans, int(count)) is None
