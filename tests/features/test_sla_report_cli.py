"""`confidant sla report` as a subprocess, on a SQLite database with closed clocks."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from bridge.config import minimal_config_dict
from bridge.core.sla import Clock, ClockState
from bridge.store import clocks, open_database, pairs
from bridge.store.base import to_ms

pytestmark = pytest.mark.integration

DAY = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday
ANN = "@ann:localhost"
BEN = "@ben:localhost"


def confidant(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args], capture_output=True, text=True, timeout=60
    )


def closed_clock(
    pair_id: str, therapist: str, n: int, opened: datetime, working: timedelta, met: bool
) -> Clock:
    return Clock(
        pair_id=pair_id,
        clock_id=f"c{n}",
        therapist_id=therapist,
        policy="default",
        opened_at=opened,
        first_event_id=f"$open{n}",
        first_kind="text",
        due_at=opened + timedelta(hours=8),
        state=ClockState.CLOSED,
        closed_at=opened + working,
        closed_by=therapist,
        closing_event_id=f"$reply{n}",
        response_working=working,
        response_calendar=working,
        met=met,
    )


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    data = minimal_config_dict(
        data_dir=str(tmp_path / "data"), practice={"timezone": "Europe/London"}
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


async def write_clocks(config_file: Path) -> None:
    """Ann: replies of 1, 2, 3 and 10 hours (the last one late); Ben: one of 30 minutes,
    one reply outside the period, and one clock still open and overdue."""
    (config_file.parent / "data").mkdir()
    db = await open_database(f"sqlite://{config_file.parent / 'data' / 'confidant.db'}")
    try:
        pa = await pairs.create(
            db, patient_id="@p1:localhost", therapist_id=ANN, now=to_ms(DAY), room_id="!a:x"
        )
        pb = await pairs.create(
            db, patient_id="@p2:localhost", therapist_id=BEN, now=to_ms(DAY), room_id="!b:x"
        )
        pc = await pairs.create(
            db, patient_id="@p3:localhost", therapist_id=BEN, now=to_ms(DAY), room_id="!c:x"
        )
        for n, hours in enumerate((1, 2, 3, 10), start=1):
            opened = DAY + timedelta(days=n)
            await clocks.save(
                db, closed_clock(pa.pair_id, ANN, n, opened, timedelta(hours=hours), hours < 8)
            )
        await clocks.save(db, closed_clock(pb.pair_id, BEN, 5, DAY, timedelta(minutes=30), True))
        before = DAY - timedelta(days=40)
        await clocks.save(db, closed_clock(pb.pair_id, BEN, 6, before, timedelta(hours=20), False))
        overdue = closed_clock(pc.pair_id, BEN, 7, DAY + timedelta(days=1), timedelta(0), True)
        await clocks.save(
            db,
            Clock(
                pair_id=overdue.pair_id,
                clock_id=overdue.clock_id,
                therapist_id=BEN,
                policy="default",
                opened_at=overdue.opened_at,
                first_event_id=overdue.first_event_id,
                first_kind="voice",
                due_at=overdue.due_at,
            ),
        )
    finally:
        await db.close()


async def test_report_as_table_and_csv(config_file: Path) -> None:
    await write_clocks(config_file)
    period = ("--from", "2026-11-01", "--to", "2026-12-01")

    table = confidant("sla", "report", "-c", str(config_file), *period)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "therapist",
        "replies",
        "median",
        "p90",
        "met",
        "breaches",
        "open",
        "overdue",
        "clock",
        "max",
        "late",
    ]
    ann = next(line for line in lines if line.startswith(ANN))
    # Median of 1, 2, 3, 10 hours is 2:30; nearest-rank p90 is 10:00; 3 of 4 met. The late
    # reply came at 19:00 on a Friday, due at 17:00: no working time late.
    assert ann.split()[1:] == ["4", "2:30", "10:00", "75%", "1", "0", "working", "0:00"]
    ben = next(line for line in lines if line.startswith(BEN))
    assert ben.split()[1:] == ["1", "0:30", "0:30", "100%", "0", "1", "working", "-"]
    (total,) = [line for line in lines if line.startswith("(all)")]
    assert total.split()[:2] == ["(all)", "5"]
    assert "each policy's own clock" in lines[-1]

    by_policy = confidant("sla", "report", "-c", str(config_file), *period, "--by", "policy")
    assert by_policy.returncode == 0, by_policy.stderr
    policy_lines = by_policy.stdout.splitlines()
    assert policy_lines[0].split()[0] == "policy"
    assert policy_lines[2].split()[:2] == ["default", "5"]

    as_csv = confidant("sla", "report", "-c", str(config_file), *period, "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    rows = {r["therapist_id"]: r for r in csv.DictReader(io.StringIO(as_csv.stdout))}
    assert rows[ANN] == {
        "therapist_id": ANN,
        "replies": "4",
        "median_seconds": str(int(2.5 * 3600)),
        "p90_seconds": str(10 * 3600),
        "met_share": "0.7500",
        "breaches": "1",
        "open_overdue": "0",
        "clock": "working",
        "late_seconds": "0",
    }
    assert rows[BEN]["replies"] == "1" and rows[BEN]["open_overdue"] == "1"

    # A period that holds only Ben's old reply.
    old = confidant(
        "sla", "report", "--from", "2026-09-01", "--to", "2026-10-01", "--format", "csv",
        "-c", str(config_file),
    )  # fmt: skip
    assert old.returncode == 0, old.stderr
    rows = {r["therapist_id"]: r for r in csv.DictReader(io.StringIO(old.stdout))}
    assert set(rows) == {BEN, "(all)"}
    assert rows[BEN]["breaches"] == "1" and rows[BEN]["p90_seconds"] == str(20 * 3600)


async def test_report_refuses_a_bad_period(config_file: Path) -> None:
    await write_clocks(config_file)
    backwards = confidant(
        "sla", "report", "-c", str(config_file), "--from", "2026-12-01", "--to", "2026-11-01"
    )
    assert backwards.returncode == 2 and "--from must be before --to" in backwards.stderr
    garbled = confidant("sla", "report", "-c", str(config_file), "--from", "last week")
    assert garbled.returncode == 2 and "ISO date" in garbled.stderr
    empty = confidant(
        "sla", "report", "-c", str(config_file), "--from", "2020-01-01", "--to", "2020-02-01"
    )
    assert empty.returncode == 0 and empty.stdout.startswith("No replies")
