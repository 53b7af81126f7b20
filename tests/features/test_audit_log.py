"""The audit log on a real database: append, verify, every kind of tampering, purge, secrecy."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bridge.audit import AuditLog, export_checkpoint, run_purge, run_verify, verify
from bridge.core.audit import (
    BreakKind,
    Checkpoint,
    entry_hash,
    message_content,
    public_key_bytes,
    sign_checkpoint,
)
from bridge.core.model import AppendAudit
from bridge.sealing import Sealer
from bridge.store import Database, sqlite_path

pytestmark = pytest.mark.integration

NOW = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
SIGNING_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
TRUSTED = public_key_bytes(SIGNING_KEY.public_key())
SEALER = Sealer({"k1": bytes(range(100, 132))}, "k1")


@pytest.fixture
def audit(db: Database) -> AuditLog:
    return AuditLog(db, SEALER, SIGNING_KEY, checkpoint_every=10)


async def fill(audit: AuditLog, n: int, *, start: datetime = NOW) -> None:
    for i in range(n):
        await audit.record(
            AppendAudit(
                pair_id=f"pair-{i % 3}",
                action="room.text",
                actor="@patient:example.org",
                details={"role": "patient", "kind": "text"},
                event_id=f"$event{i}",
                content=message_content("m.text", f"message number {i}"),
            ),
            start + timedelta(seconds=i),
        )


async def test_append_returns_consecutive_seqs_and_verifies(db: Database, audit: AuditLog) -> None:
    await fill(audit, 25)
    result = await verify(db, trusted_key=TRUSTED, sealer=SEALER)
    assert result.ok, result.summary()
    assert result.count == 25
    assert result.content_checked == 25
    assert result.last_checkpoint == 20
    row = await db.fetchrow("SELECT role, details FROM audit_entries WHERE seq = 1")
    assert row is not None and row["role"] == "patient"
    assert await audit.load_content(db, 2) == message_content("m.text", "message number 1")
    pair = await verify(db, "pair-1")
    assert pair.ok and pair.pair_count == 8


async def test_append_joins_the_callers_transaction(db: Database, audit: AuditLog) -> None:
    await fill(audit, 2)
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            await audit.append(tx, {"action": "x", "actor": "@a:x", "content": b"c"}, NOW)
            raise RuntimeError("the service failed after writing its audit entry")
    assert await db.fetchval("SELECT COUNT(*) FROM audit_entries") == 2
    assert await db.fetchval("SELECT COUNT(*) FROM audit_content") == 2
    assert await db.fetchval("SELECT seq FROM audit_head") == 2
    seq = await audit.record({"action": "x", "actor": "@a:x"}, NOW)
    assert seq == 3
    assert (await verify(db)).ok


async def test_concurrent_appenders_make_one_chain(db: Database, audit: AuditLog) -> None:
    async def worker(w: int) -> list[int]:
        seqs = []
        for i in range(10):
            seqs.append(
                await audit.record({"action": "t", "actor": f"@w{w}:x", "details": {"i": i}}, NOW)
            )
        return seqs

    results = await asyncio.gather(*(worker(w) for w in range(8)))
    assert sorted(s for seqs in results for s in seqs) == list(range(1, 81))
    assert (await verify(db, trusted_key=TRUSTED)).ok


async def test_changed_field_is_found(db: Database, audit: AuditLog) -> None:
    await fill(audit, 12)
    await db.execute("UPDATE audit_entries SET actor = ? WHERE seq = 5", "@mallory:example.org")
    code, message = await run_verify(db, trusted_key=TRUSTED)
    assert code == 1
    assert message.startswith("BROKEN at entry 5: changed")


async def test_changed_details_is_found(db: Database, audit: AuditLog) -> None:
    await fill(audit, 12)
    await db.execute("UPDATE audit_entries SET details = ? WHERE seq = 7", '{"kind":"voice"}')
    result = await verify(db)
    assert (result.broken_seq, result.kind) == (7, BreakKind.CHANGED)


async def test_deleted_row_is_missing(db: Database, audit: AuditLog) -> None:
    await fill(audit, 12)
    await db.execute("DELETE FROM audit_entries WHERE seq = 6")
    result = await verify(db)
    assert (result.broken_seq, result.kind) == (6, BreakKind.MISSING)


async def test_swapped_rows_are_reordered(db: Database, audit: AuditLog) -> None:
    await fill(audit, 12)
    await db.execute("UPDATE audit_entries SET seq = -1 WHERE seq = 4")
    await db.execute("UPDATE audit_entries SET seq = 4 WHERE seq = 8")
    await db.execute("UPDATE audit_entries SET seq = 8 WHERE seq = -1")
    result = await verify(db)
    assert (result.broken_seq, result.kind) == (4, BreakKind.REORDERED)
    assert result.summary().startswith("BROKEN at entry 4: reordered")


async def test_truncated_tail_is_found_by_the_checkpoint(db: Database, audit: AuditLog) -> None:
    await fill(audit, 23)
    await db.execute("DELETE FROM audit_entries WHERE seq > 17")
    await db.execute("DELETE FROM audit_content WHERE seq > 17")
    result = await verify(db, trusted_key=TRUSTED)
    assert (result.broken_seq, result.kind) == (18, BreakKind.TRUNCATED)


async def test_truncation_below_every_stored_checkpoint_needs_the_kept_copy(
    db: Database, audit: AuditLog, tmp_path: Path
) -> None:
    await fill(audit, 8)
    kept = await export_checkpoint(db, SIGNING_KEY, NOW)
    (tmp_path / "head.json").write_text(json.dumps(kept))
    # Someone cuts the tail and removes the stored checkpoints too.
    await db.execute("DELETE FROM audit_entries WHERE seq > 5")
    await db.execute("DELETE FROM audit_checkpoints")
    await db.execute("UPDATE audit_head SET seq = 5")
    assert (await verify(db)).ok
    code, message = await run_verify(
        db, checkpoint_file=tmp_path / "head.json", trusted_key=TRUSTED
    )
    assert code == 1
    assert message.startswith("BROKEN at entry 6: truncated")


async def test_rewritten_chain_is_found_by_the_checkpoint(db: Database, audit: AuditLog) -> None:
    await fill(audit, 10)  # a checkpoint is signed at 10
    rows = await db.fetch("SELECT * FROM audit_entries ORDER BY seq")
    # Rewrite entry 3 and recompute every hash after it, as an insider with SQL could.
    prev = bytes(rows[1]["entry_hash"])
    for row in rows[2:]:
        entry = {
            k: row[k]
            for k in (
                "v",
                "seq",
                "ts",
                "pair_id",
                "pair_prev",
                "actor",
                "role",
                "action",
                "event_id",
                "outcome",
                "content_sha256",
            )
        }
        entry["details"] = json.loads(row["details"])
        if row["seq"] == 3:
            entry["actor"] = "@mallory:example.org"
        digest = entry_hash(prev, entry)
        await db.execute(
            "UPDATE audit_entries SET actor = ?, prev_hash = ?, entry_hash = ? WHERE seq = ?",
            entry["actor"],
            prev,
            digest,
            row["seq"],
        )
        prev = digest
    result = await verify(db, trusted_key=TRUSTED)
    assert not result.ok
    assert result.kind is BreakKind.TRUNCATED
    assert result.broken_seq == 10


async def test_forged_checkpoint_is_wrong_key(db: Database, audit: AuditLog) -> None:
    await fill(audit, 5)
    head = bytes(await db.fetchval("SELECT head_hash FROM audit_head"))
    forged = sign_checkpoint(Checkpoint(5, head, 1), Ed25519PrivateKey.generate())
    await db.execute(
        "INSERT INTO audit_checkpoints (count, head_hash, ts, key_id, public_key, signature,"
        " reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
        5,
        head,
        1,
        forged.key_id,
        forged.public_key,
        forged.signature,
        "manual",
    )
    code, message = await run_verify(db, trusted_key=TRUSTED)
    assert code == 1
    assert message.startswith("BROKEN at entry 5: wrong key")
    # The CLI passes the audit log: its signing key is the trusted one.
    code, message = await run_verify(db, audit_log=audit)
    assert code == 1
    assert message.startswith("BROKEN at entry 5: wrong key")


async def test_tampered_sealed_content_is_found(db: Database, audit: AuditLog) -> None:
    await fill(audit, 6)
    other = await db.fetchval("SELECT sealed FROM audit_content WHERE seq = 2")
    await db.execute("UPDATE audit_content SET sealed = ? WHERE seq = 4", other)
    result = await verify(db, sealer=SEALER)
    assert (result.broken_seq, result.kind) == (4, BreakKind.CHANGED)
    assert (await verify(db)).ok  # the chain itself is intact


async def test_purge_deletes_old_content_and_verify_stays_green(
    db: Database, audit: AuditLog
) -> None:
    old = NOW - timedelta(days=400)
    await fill(audit, 4, start=old)
    async with db.transaction() as tx:
        old_media = await audit.store_media(tx, b"old voice bytes", old)
        new_media = await audit.store_media(tx, b"new voice bytes", NOW)
    await fill(audit, 3, start=NOW)
    deleted = await run_purge(db, timedelta(days=365), NOW, audit_log=audit)
    assert deleted == 5  # four contents and one media blob
    assert await audit.load_content(db, 1) is None
    assert await audit.load_content(db, 5) is not None
    assert await audit.load_media(db, old_media) is None
    assert await audit.load_media(db, new_media) == b"new voice bytes"
    code, message = await run_verify(db, trusted_key=TRUSTED, sealer=SEALER)
    assert code == 0, message
    assert message.startswith("OK: 8 entries")
    last = await db.fetchrow("SELECT action, details FROM audit_entries WHERE seq = 8")
    assert last is not None and last["action"] == "audit.purge"


async def test_verification_leaves_the_chain_unchanged(db: Database, audit: AuditLog) -> None:
    await fill(audit, 3)
    before = await db.fetchrow("SELECT seq, head_hash FROM audit_head")
    code, _ = await run_verify(db, trusted_key=TRUSTED, audit_log=audit, sealer=SEALER)
    assert code == 0
    assert await db.fetchrow("SELECT seq, head_hash FROM audit_head") == before
    assert await db.fetchval("SELECT COUNT(*) FROM audit_entries") == 3


async def test_canary_is_not_in_the_database_files(db: Database, db_url: str) -> None:
    path = sqlite_path(db_url)
    if path is None:
        pytest.skip("file bytes are checked on SQLite; PostgreSQL stores the same sealed blobs")
    audit = AuditLog(db, SEALER, SIGNING_KEY)
    canary = "CANARY-7f3a the patient said zebra-umbrella-42"
    async with db.transaction() as tx:
        ref = await audit.store_media(tx, f"voice {canary}".encode(), NOW)
        seq = await audit.append(
            tx,
            {
                "pair_id": "pair-1",
                "action": "room.text",
                "actor": "@patient:example.org",
                "content": message_content("m.text", canary, media_ref=ref),
            },
            NOW,
        )
    assert canary in (await audit.load_content(db, seq) or b"").decode()
    files = [p for p in Path(path).parent.iterdir() if p.name.startswith(Path(path).name)]
    assert any(p.name.endswith("-wal") for p in files)
    needles = [canary.encode(), canary.encode("utf-16-le"), b"zebra-umbrella"]
    for file in files:
        data = file.read_bytes()
        for needle in needles:
            assert needle not in data, f"{needle!r} readable in {file.name}"
