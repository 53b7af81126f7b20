"""The audit command line on a real bridge's database: verify, export, verify-export."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from bridge.config import minimal_config_dict
from tests.features.test_pair_rooms import wait_until
from tests.support.bridge_app import bridge_config_dict, notice_containing, start_app

pytestmark = pytest.mark.integration


def confidant(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args], capture_output=True, text=True, timeout=120
    )


async def test_export_and_verify_from_the_command_line(
    homeserver, make_user, make_nio_user, tmp_path: Path
):
    bot = make_user("bot")
    overrides = bridge_config_dict(homeserver, bot.user_id, bot.password, tmp_path / "data")
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(minimal_config_dict(**overrides)))
    from bridge.config import load_config

    app = await start_app(load_config(config_file))
    try:
        patient = await make_nio_user("patient")
        therapist = await make_nio_user("therapist")
        record, _ = await app.parts.pairs.add_pair(
            patient.user_id, therapist.user_id, app.service.clock()
        )
        await patient.wait_for(record.room_id, notice_containing("Welcome"), timeout=30)
        event_id = await patient.send_text(record.room_id, "canary-7f3a words for the record")

        async def audited():
            return await app.parts.db.fetch(
                "SELECT seq FROM audit_entries WHERE event_id = ?", event_id
            )

        await wait_until(audited, what="message audited")
    finally:
        await app.stop()

    verified = confidant("audit", "verify", "-c", str(config_file))
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("OK")

    # A witness of the head outside the database, then a verify against it.
    witness = tmp_path / "elsewhere" / "head.json"
    written = confidant("audit", "checkpoint", "-c", str(config_file), "--out", str(witness))
    assert written.returncode == 0, written.stderr
    assert witness.exists() and "checkpoint at" in written.stdout
    against = confidant("audit", "verify", "-c", str(config_file), "--checkpoint", str(witness))
    assert against.returncode == 0, against.stderr
    assert "external checkpoint at" in against.stdout

    out = tmp_path / "export.zip"
    exported = confidant(
        "export", "-c", str(config_file), "--pair", record.label, "--out", str(out)
    )
    assert exported.returncode == 0, exported.stderr
    with zipfile.ZipFile(out) as zf:
        html = zf.read("transcript.html").decode()
    assert "canary-7f3a words for the record" in html

    # An unknown pair is one clear line and exit code 1, not a traceback.
    unknown = confidant(
        "export", "-c", str(config_file), "--pair", "NO-SUCH", "--out", str(tmp_path / "x.zip")
    )
    assert unknown.returncode == 1
    assert "no pair 'NO-SUCH' (give a pair id, label or room id)" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    assert not (tmp_path / "x.zip").exists()

    checked = confidant("audit", "verify-export", str(out), "-c", str(config_file))
    assert checked.returncode == 0, checked.stderr

    # Tampering with the zip is detected offline.
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(out) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "transcript.json":
                data = data.replace(b"canary-7f3a", b"canary-XXXX")
            dst.writestr(item, data)
    bad = confidant("audit", "verify-export", str(tampered), "-c", str(config_file))
    assert bad.returncode == 1
    # The content never reaches the database files in the clear.
    for file in (tmp_path / "data").glob("confidant.db*"):
        assert b"canary-7f3a" not in file.read_bytes(), file
