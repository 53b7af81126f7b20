"""What an insider with SQL access to the database can do to the audit trail, and its traces.

Each test does the insider's part with raw SQL on SQLite and on PostgreSQL (the `db`
fixture), then runs what an auditor runs: `audit verify`, with and without a checkpoint
kept outside the database (`audit checkpoint --out`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bridge.audit import AuditLog, run_purge, run_verify, verify
from bridge.audit.checkpoint import checkpoint_file_name, witness_checkpoint
from bridge.core.audit import BreakKind, message_content, public_key_bytes
from bridge.core.model import AppendAudit
from bridge.sealing import Sealer
from bridge.store import Database

pytestmark = pytest.mark.integration

NOW = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
SIGNING_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
TRUSTED = public_key_bytes(SIGNING_KEY.public_key())
SEALER = Sealer({"k1": bytes(range(100, 132))}, "k1")


@pytest.fixture
def audit(db: Database) -> AuditLog:
    return AuditLog(db, SEALER, SIGNING_KEY, checkpoint_every=10)


async def fill(audit: AuditLog, n: int, *, start: datetime = NOW, content: bool = True) -> None:
    for i in range(n):
        await audit.record(
            AppendAudit(
                pair_id=f"pair-{i % 3}",
                action="room.text",
                actor="@patient:example.org",
                details={"role": "patient", "kind": "text"},
                event_id=f"$event-{start.timestamp()}-{i}",
                content=message_content("m.text", f"message number {i}") if content else None,
            ),
            start + timedelta(seconds=i),
        )


async def test_checkpoint_file_catches_a_cut_tail_whose_stored_checkpoints_were_deleted(
    db: Database, audit: AuditLog, tmp_path: Path
) -> None:
    await fill(audit, 25)
    path, signed = await witness_checkpoint(db, SIGNING_KEY, NOW, out=tmp_path / "head.json")
    assert signed.count == 25 and json.loads(path.read_text())["count"] == 25
    # The insider cuts the last entries, their content and every stored checkpoint, and
    # moves the head back so that the database is consistent with itself.
    await db.execute("DELETE FROM audit_content WHERE seq > 12")
    await db.execute("DELETE FROM audit_entries WHERE seq > 12")
    await db.execute("DELETE FROM audit_checkpoints")
    head = await db.fetchval("SELECT entry_hash FROM audit_entries WHERE seq = 12")
    await db.execute("UPDATE audit_head SET seq = 12, head_hash = ?", head)
    assert (await verify(db, trusted_key=TRUSTED, sealer=SEALER)).ok  # nothing inside shows it
    code, message = await run_verify(db, checkpoint_file=path, trusted_key=TRUSTED, sealer=SEALER)
    assert code == 1
    assert message.startswith("BROKEN at entry 13: truncated"), message


async def test_a_directory_of_witnesses_is_checked_whole(
    db: Database, audit: AuditLog, tmp_path: Path
) -> None:
    witnesses = tmp_path / "witness"
    witnesses.mkdir()
    await fill(audit, 4)
    await witness_checkpoint(db, SIGNING_KEY, NOW, out=witnesses)
    await fill(audit, 3, start=NOW + timedelta(hours=1))
    await witness_checkpoint(db, SIGNING_KEY, NOW, out=witnesses)
    names = sorted(p.name for p in witnesses.iterdir())
    assert names == [checkpoint_file_name(4), checkpoint_file_name(7)]
    code, message = await run_verify(db, checkpoint_file=witnesses, trusted_key=TRUSTED)
    assert code == 0 and "external checkpoint at 7 entries matches" in message
    # Cut back to 5 and append two new entries: the count is 7 again, the head is not.
    await db.execute("DELETE FROM audit_content WHERE seq > 5")
    await db.execute("DELETE FROM audit_entries WHERE seq > 5")
    head = await db.fetchval("SELECT entry_hash FROM audit_entries WHERE seq = 5")
    await db.execute("UPDATE audit_head SET seq = 5, head_hash = ?", head)
    await fill(audit, 2, start=NOW + timedelta(hours=2))
    code, message = await run_verify(db, checkpoint_file=witnesses, trusted_key=TRUSTED)
    assert code == 1 and message.startswith("BROKEN at entry 7: truncated"), message


async def test_an_unreadable_witness_is_not_taken_for_none(db: Database, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    code, message = await run_verify(db, checkpoint_file=tmp_path, trusted_key=TRUSTED)
    assert code == 2 and "cannot read checkpoint" in message
    code, _ = await run_verify(db, checkpoint_file=tmp_path / "absent.json")
    assert code == 2


@pytest.mark.parametrize("with_checkpoint", [False, True])
@pytest.mark.parametrize("with_sealer", [False, True])
async def test_deleting_one_sealed_content_row_is_found(
    db: Database, audit: AuditLog, tmp_path: Path, with_checkpoint: bool, with_sealer: bool
) -> None:
    await fill(audit, 6)
    path, _ = await witness_checkpoint(db, SIGNING_KEY, NOW, out=tmp_path / "head.json")
    await db.execute("DELETE FROM audit_content WHERE seq = 4")
    code, message = await run_verify(
        db,
        checkpoint_file=path if with_checkpoint else None,
        trusted_key=TRUSTED,
        sealer=SEALER if with_sealer else None,
    )
    assert code == 1
    assert message.startswith("BROKEN at entry 4: missing"), message
    assert "content of entry 4 is missing" in message


async def test_a_recorded_purge_explains_the_content_it_removed_and_no_more(
    db: Database, audit: AuditLog
) -> None:
    old = NOW - timedelta(days=400)
    await fill(audit, 4, start=old)
    await fill(audit, 3, start=NOW)
    assert await run_purge(db, timedelta(days=365), NOW, audit_log=audit) == 4
    result = await verify(db, trusted_key=TRUSTED, sealer=SEALER)
    assert result.ok, result.summary()
    assert result.content_checked == 3
    purge = await db.fetchrow("SELECT details FROM audit_entries WHERE seq = 8")
    assert purge is not None and json.loads(purge["details"])["contents"] == 4
    # Content newer than the purge's cut-off is not covered by it.
    await db.execute("DELETE FROM audit_content WHERE seq = 6")
    result = await verify(db, trusted_key=TRUSTED)
    assert (result.ok, result.broken_seq, result.kind) == (False, 6, BreakKind.MISSING)


async def test_a_purge_without_its_record_is_a_deletion(db: Database, audit: AuditLog) -> None:
    await fill(audit, 3, start=NOW - timedelta(days=400))
    assert await run_purge(db, timedelta(days=365), NOW) == 3  # no audit log: not recorded
    result = await verify(db, trusted_key=TRUSTED)
    assert (result.ok, result.broken_seq, result.kind) == (False, 1, BreakKind.MISSING)


async def test_entries_without_content_need_none(db: Database, audit: AuditLog) -> None:
    await fill(audit, 5, content=False)
    assert await db.fetchval("SELECT COUNT(*) FROM audit_content") == 0
    assert (await verify(db, trusted_key=TRUSTED)).ok


async def test_verify_appends_nothing_to_the_database_it_checks(
    db: Database, audit: AuditLog, tmp_path: Path
) -> None:
    await fill(audit, 10)
    path, _ = await witness_checkpoint(db, SIGNING_KEY, NOW, out=tmp_path / "head.json")
    for _ in range(3):
        code, message = await run_verify(db, checkpoint_file=path, audit_log=audit, sealer=SEALER)
        assert code == 0, message
    assert await db.fetchval("SELECT COUNT(*) FROM audit_entries") == 10
    assert await db.fetchval("SELECT seq FROM audit_head") == 10
