"""check-config warns about escalations that could reach nobody (issue: never a silent skip)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from bridge.cli import main
from bridge.config import minimal_config_dict
from bridge.store import open_database, pairs, therapists


def write(tmp_path: Path, **overrides: object) -> Path:
    path = tmp_path / "config.yaml"
    tree = minimal_config_dict(data_dir=str(tmp_path / "data"), **overrides)
    path.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return path


def test_a_supervisor_on_another_server_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        policies={"default": {"escalate_after": "1h", "supervisors": ["@boss:elsewhere.example"]}},
    )
    assert main(["check-config", "-c", str(path)]) == 0
    err = capsys.readouterr().err
    assert "policies.default.supervisors[0]" in err and "practice.federate is off" in err


def test_therapists_without_a_supervisor_of_their_own_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, policies={"default": {"escalate_after": "1h"}})
    assert main(["check-config", "-c", str(path)]) == 0
    assert "supervisors" not in capsys.readouterr().err  # no database yet: nobody to name

    async def staff() -> None:
        (tmp_path / "data").mkdir()
        db = await open_database(f"sqlite://{tmp_path}/data/confidant.db")
        try:
            for n, doc in enumerate(("@ann:localhost", "@ben:localhost")):
                await pairs.create(
                    db, patient_id=f"@p{n}:localhost", therapist_id=doc, now=0, room_id=f"!r{n}:x"
                )
            await therapists.upsert(db, "@ben:localhost", now=0, supervisor_id="@sup:localhost")
        finally:
            await db.close()

    asyncio.run(staff())
    assert main(["check-config", "-c", str(path)]) == 0
    err = capsys.readouterr().err
    assert "policies.default.supervisors" in err and "@ann:localhost have none" in err
    assert "@ben:localhost" not in err


def test_a_database_of_an_older_version_is_left_for_run_to_migrate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A database from before the newest migration (columns this version reads are missing):
    # check-config says OK and leaves the migration to `run`, instead of a traceback.
    path = write(tmp_path, policies={"default": {"escalate_after": "1h"}, "spare": {}})

    async def older() -> None:
        (tmp_path / "data").mkdir()
        db = await open_database(f"sqlite://{tmp_path}/data/confidant.db")
        try:
            newest = await db.fetchval("SELECT MAX(version) FROM schema_version")
            await db.execute("DELETE FROM schema_version WHERE version = ?", newest)
            await db.execute("ALTER TABLE invitations RENAME TO invitations_old_layout")
        finally:
            await db.close()

    asyncio.run(older())
    assert main(["check-config", "-c", str(path)]) == 0
    assert ": OK (" in capsys.readouterr().out
