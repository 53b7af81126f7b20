"""`pair language` and `therapist language` on a real bridge's database, and the next text
to the room in the language set there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bridge.config import load_config, minimal_config_dict
from bridge.store import languages
from tests.support.bridge_app import bridge_config_dict, notice_containing, start_app

pytestmark = pytest.mark.integration


def confidant(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args], capture_output=True, text=True, timeout=120
    )


async def test_the_command_line_sets_a_patients_and_a_therapists_language(
    homeserver, make_user, make_nio_user, tmp_path: Path
) -> None:
    bot = make_user("bot")
    overrides = bridge_config_dict(homeserver, bot.user_id, bot.password, tmp_path / "data")
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(minimal_config_dict(**overrides)))
    cfg = load_config(config_file)
    app = await start_app(cfg)
    try:
        patient = await make_nio_user("patient")
        therapist = await make_nio_user("therapist")
        record, _ = await app.parts.pairs.add_pair(
            patient.user_id, therapist.user_id, app.service.clock()
        )
        assert record.room_id is not None
        await patient.wait_for(record.room_id, notice_containing("Welcome"), timeout=30)
    finally:
        await app.stop()

    shown = confidant("pair", "language", record.label, "-c", str(config_file))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == f"{patient.user_id}: en (practice)"
    wrong = confidant("pair", "language", record.label, "fr", "-c", str(config_file))
    assert wrong.returncode == 2 and "'fr' is not a language of the texts" in wrong.stderr
    set_es = confidant("pair", "language", record.label, "es", "-c", str(config_file))
    assert set_es.returncode == 0, set_es.stderr
    assert set_es.stdout.strip() == f"{patient.user_id}: es (own)"
    set_de = confidant("therapist", "language", therapist.user_id, "de", "-c", str(config_file))
    assert set_de.stdout.strip() == f"{therapist.user_id}: de (own)", set_de.stderr

    app = await start_app(cfg)
    try:
        assert await languages.of_user(app.parts.db, patient.user_id) == "es"
        await patient.send_text(record.room_id, "!help")
        await patient.wait_for(record.room_id, notice_containing("Comandos que puede usar"), 30)
        rows = await app.parts.db.fetch(
            "SELECT actor, details FROM audit_entries WHERE action = 'language.changed' "
            "ORDER BY seq"
        )
        assert [(r["actor"], json.loads(str(r["details"]))["language"]) for r in rows] == [
            ("cli", "es"),
            ("cli", "de"),
        ]
    finally:
        await app.stop()
    cleared = confidant(
        "therapist", "language", therapist.user_id, "practice", "-c", str(config_file)
    )
    assert cleared.stdout.strip() == f"{therapist.user_id}: en (practice)", cleared.stderr
