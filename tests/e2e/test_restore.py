"""Back up a running bridge's data directory, restore it into a fresh one and run from it."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from tests.features.test_pair_rooms import wait_until
from tests.support.bridge_app import bridge_config, notice_containing, start_app

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=120, check=False
    )


async def _audited_text(app, pair_id: str, event_id: str) -> bool:
    row = await app.parts.db.fetchrow(
        "SELECT action FROM audit_entries WHERE pair_id = ? AND event_id = ?", pair_id, event_id
    )
    return row is not None and row["action"] == "room.text"


async def test_restored_bridge_keeps_its_device_and_decrypts(
    homeserver, make_user, make_nio_user, tmp_path: Path
):
    bot = make_user("backupbot")
    first_dir = tmp_path / "data"
    cfg = bridge_config(homeserver, bot.user_id, bot.password, first_dir)
    app = await start_app(cfg)
    patient = await make_nio_user("backuppatient")
    therapist = await make_nio_user("backuptherapist")
    archive = tmp_path / "confidant-backup.tar.gz"
    try:
        record, _ = await app.parts.pairs.add_pair(
            patient.user_id, therapist.user_id, app.service.clock()
        )
        await patient.wait_for(record.room_id, notice_containing("Welcome"), timeout=30)
        before = await patient.send_text(record.room_id, "before the backup")
        await wait_until(
            lambda: _audited_text(app, record.pair_id, before), what="first message decrypted"
        )
        device_id = app.parts.creds.device_id
        access_token = app.parts.creds.access_token
        # Taken while the bridge runs: SQLite's online backup copes with a live database.
        result = await asyncio.to_thread(_run, DEPLOY / "backup.sh", first_dir, archive)
        assert result.returncode == 0, result.stderr
    finally:
        await app.stop()

    restored_dir = tmp_path / "restored"
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "something").write_text("x")
    refused = _run(DEPLOY / "restore.sh", archive, occupied)
    assert refused.returncode != 0 and "not empty" in refused.stderr

    result = _run(DEPLOY / "restore.sh", archive, restored_dir)
    assert result.returncode == 0, result.stderr
    # No live access token in the archive: the restored bridge logs in again, same device.
    assert not (restored_dir / "bot-session.json").exists()
    assert (restored_dir / "bot-device-id").read_text() == device_id
    assert not any(
        access_token.encode() in path.read_bytes()
        for path in restored_dir.rglob("*")
        if path.is_file()
    )
    listing = _run("tar", "-tzf", archive).stdout
    assert "bot-session.json" not in listing
    assert (restored_dir / "cross-signing.sealed").is_file()
    assert (restored_dir / "confidant.db").is_file()
    assert any((restored_dir / "crypto").iterdir())  # the bot's Olm account and sessions

    cfg2 = bridge_config(homeserver, bot.user_id, bot.password, restored_dir)
    app2 = await start_app(cfg2)
    try:
        assert app2.parts.creds.device_id == device_id
        after = await patient.send_text(record.room_id, "after the restore")
        await wait_until(
            lambda: _audited_text(app2, record.pair_id, after),
            timeout=30,
            what="new message decrypted by the restored bridge",
        )
        undecryptable = await app2.parts.db.fetchval(
            "SELECT COUNT(*) FROM audit_entries WHERE action = 'room.undecryptable'"
        )
        assert undecryptable == 0
    finally:
        await app2.stop()


def test_restore_refuses_a_damaged_archive(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "bot-session.json").write_text('{"device_id": "X", "access_token": "live"}')
    archive = tmp_path / "b.tar.gz"
    assert _run(DEPLOY / "backup.sh", data, archive).returncode == 0
    stage = tmp_path / "stage"
    stage.mkdir()
    assert _run("tar", "-C", stage, "-xzf", archive).returncode == 0
    assert not (stage / "data" / "bot-session.json").exists()
    (stage / "data" / "bot-device-id").write_text("EVIL")
    damaged = tmp_path / "damaged.tar.gz"
    assert _run("tar", "-C", stage, "-czf", damaged, ".").returncode == 0
    result = _run(DEPLOY / "restore.sh", damaged, tmp_path / "fresh")
    assert result.returncode != 0 and "damaged" in result.stderr
    assert not (tmp_path / "fresh").exists()
