"""Scheduled sessions in the running bridge against the real Synapse: the chat commands,
a session added to the database (as the command line does) whose reminder, opening and
closing fire on time with no SLA clock meanwhile, a reminder due while the bridge was down,
and the command line itself."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from bridge.app import default_features, make_sealer
from bridge.audit.log import AuditLog
from bridge.config import load_config, minimal_config_dict
from bridge.core import sessions as core
from bridge.features.sessions import install_sessions, store_session
from bridge.store import clocks, open_database, sessions, timers
from bridge.store.base import to_ms
from bridge.store.sessions import SessionRecord
from tests.features.test_pair_rooms import wait_until
from tests.support.bridge_app import bridge_config_dict, notice_containing, start_app

pytestmark = pytest.mark.integration

FEATURES = [*default_features(), install_sessions]


@pytest.fixture
def config_file(homeserver, make_user, tmp_path: Path) -> Path:
    bot = make_user("bot")
    overrides = bridge_config_dict(
        homeserver,
        bot.user_id,
        bot.password,
        tmp_path / "data",
        practice={"timezone": "Europe/Berlin"},
        policies={"default": {"window": "1h", "window_clock": "calendar"}},
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(minimal_config_dict(**overrides)))
    return path


@pytest.fixture
async def running(config_file: Path, make_nio_user):
    app = await start_app(load_config(config_file), features=FEATURES)
    patient = await make_nio_user("patient")
    therapist = await make_nio_user("therapist")
    record, _ = await app.parts.pairs.add_pair(
        patient.user_id, therapist.user_id, app.service.clock()
    )
    await patient.wait_for(record.room_id, notice_containing("Welcome"), timeout=30)
    await therapist.wait_joined(record.room_id, patient.user_id, timeout=20)
    state = {"app": app}
    yield state, patient, therapist, record
    await state["app"].stop()


def session_record(pair_id: str, starts_in: timedelta, length: timedelta, now) -> SessionRecord:
    start = now + starts_in
    return SessionRecord(
        session_id=core.session_id_for(f"{pair_id} {start.isoformat()}"),
        pair_id=pair_id,
        kind="text",
        starts_at=to_ms(start),
        ends_at=to_ms(start + length),
        meeting=None,
        status="scheduled",
        created_by="admin",
        created_at=to_ms(now),
        cancelled_at=None,
        armed=False,
    )


async def test_chat_commands_schedule_list_and_cancel(running):
    state, patient, therapist, record = running
    app, room = state["app"], record.room_id
    await therapist.send_text(room, "!session tomorrow 10:00 1h text")
    added = await patient.wait_for(room, notice_containing("scheduled:"), timeout=20)
    assert "(Europe/Berlin), 60 minutes, live chat" in added.body
    [stored] = await sessions.list_for_pair(app.parts.db, record.pair_id)
    assert stored.session_id in added.body and stored.kind == "text" and stored.armed
    assert stored.ends_at - stored.starts_at == 3_600_000
    pending = {t.timer_id for t in await timers.get_pending(app.parts.db)}
    assert {core.timer_id(stored.session_id, s) for s in core.STEPS} <= pending

    await patient.send_text(room, "!session tomorrow 11:00")
    await patient.wait_for(room, notice_containing("!session is not available"), timeout=20)
    await patient.send_text(room, "!sessions")
    listing = await patient.wait_for(room, notice_containing("Scheduled sessions"), timeout=20)
    assert f"- {stored.session_id}:" in listing.body

    await therapist.send_text(room, f"!session cancel {stored.session_id.lower()}")
    await patient.wait_for(room, notice_containing("is cancelled"), timeout=20)
    assert (await sessions.get(app.parts.db, stored.session_id)).status == "cancelled"
    pending = {t.timer_id for t in await timers.get_pending(app.parts.db)}
    assert not {core.timer_id(stored.session_id, s) for s in core.STEPS} & pending
    actions = [
        r["action"]
        for r in await app.parts.db.fetch(
            "SELECT action FROM audit_entries WHERE action LIKE 'session.%' AND pair_id = ?",
            record.pair_id,
        )
    ]
    assert actions == ["session.scheduled", "session.cancelled"]


async def test_session_added_to_the_database_runs_live(running, monkeypatch):
    state, patient, therapist, record = running
    app, room = state["app"], record.room_id
    monkeypatch.setattr(core, "REMINDER_BEFORE", timedelta(seconds=1))
    now = app.service.clock()
    session = session_record(record.pair_id, timedelta(seconds=2), timedelta(seconds=4), now)
    async with app.parts.db.transaction() as tx:
        await store_session(tx, app.parts.audit, session, now)

    await patient.wait_for(room, notice_containing("Reminder: session"), timeout=20)
    reminder = await timers.get(app.parts.db, core.timer_id(session.session_id, "reminder"))
    assert reminder.fired_at is not None and reminder.fired_at >= reminder.due_at
    assert (await sessions.get(app.parts.db, session.session_id)).armed

    await therapist.wait_for(room, notice_containing("Live chat session started"), timeout=20)
    assert await sessions.live_session(app.parts.db, record.pair_id, app.service.clock())
    event_id = await patient.send_text(room, "talking live")

    async def audited():
        return await app.parts.db.fetchval(
            "SELECT seq FROM audit_entries WHERE event_id = ?", event_id
        )

    await wait_until(audited, what="the live message audited")
    assert await clocks.get_open(app.parts.db, record.pair_id) is None

    await patient.wait_for(room, notice_containing(f"{session.session_id} has ended"), timeout=20)
    rows = await app.parts.db.fetch(
        "SELECT action, details FROM audit_entries WHERE action IN"
        " ('session.started', 'session.ended') AND pair_id = ? ORDER BY seq",
        record.pair_id,
    )
    assert [r["action"] for r in rows] == ["session.started", "session.ended"]
    ended = json.loads(rows[1]["details"])
    assert ended["patient_wrote"] is True and ended["therapist_wrote"] is False
    # After the session a patient message opens a clock again.
    await patient.send_text(room, "after the session")
    await wait_until(lambda: clocks.get_open(app.parts.db, record.pair_id), what="a clock")


async def test_reminder_due_while_down_fires_once_at_start(running, config_file):
    state, patient, _therapist, record = running
    cfg = load_config(config_file)
    await state["app"].stop()
    now = state["app"].service.clock()
    # Written (as the command line does) an hour ago; its reminder fell due while the
    # bridge was down, and the session starts in ten minutes.
    earlier = now - timedelta(hours=1)
    session = session_record(
        record.pair_id, timedelta(hours=1, minutes=10), timedelta(minutes=50), earlier
    )
    db = await open_database(cfg.database_url)
    try:
        audit = AuditLog(db, make_sealer(cfg), cfg.audit.signing_key.get_secret_value())
        async with db.transaction() as tx:
            await store_session(tx, audit, session, earlier)
    finally:
        await db.close()

    app = state["app"] = await start_app(cfg, features=FEATURES)
    reminder_id = core.timer_id(session.session_id, "reminder")
    await patient.wait_for(record.room_id, notice_containing("Reminder: session"), timeout=30)
    fired = await timers.get(app.parts.db, reminder_id)
    assert fired.fired_at is not None and fired.due_at < to_ms(now)
    queued = await app.parts.db.fetchval(
        "SELECT COUNT(*) FROM outbox WHERE txn_id = ?", reminder_id
    )
    assert queued == 1
    # The start is still ahead and armed from the database.
    start = await timers.get(app.parts.db, core.timer_id(session.session_id, "start"))
    assert start.fired_at is None


async def test_cli_add_list_cancel(running, config_file):
    state, patient, _therapist, record = running
    app = state["app"]

    async def confidant(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "bridge", "session", *args, "-c", str(config_file)),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode or 0, out.decode(), err.decode()

    rc, out, err = await confidant("add", "--pair", record.label, "tomorrow", "16:00")
    assert rc == 0, err
    session_id = out.split()[0]
    assert "16:00-16:50 Europe/Berlin  live chat" in out
    stored = await sessions.get(app.parts.db, session_id)
    assert stored is not None and stored.pair_id == record.pair_id

    async def armed():
        found = await sessions.get(app.parts.db, session_id)
        return found is not None and found.armed

    await wait_until(armed, what="the bridge to arm the new session")
    rc, out, _ = await confidant("list", "--pair", record.label)
    header, listed = out.splitlines()[:2]
    assert rc == 0 and header.split()[0] == "session" and listed.startswith(session_id)
    rc, _, err = await confidant(
        "add", "--pair", record.label, "tomorrow", "16:00", "--kind", "video"
    )
    assert rc == 2 and "not configured" in err
    rc, out, err = await confidant("cancel", "--pair", record.label, session_id)
    assert rc == 0, err
    assert (await sessions.get(app.parts.db, session_id)).status == "cancelled"
    assert await timers.get(app.parts.db, core.timer_id(session_id, "start")) is None
    # The practice cancelled it from the command line: the patient is told in the room.
    await patient.wait_for(record.room_id, notice_containing("is cancelled"), timeout=30)
    rows = await app.parts.db.fetch(
        "SELECT actor FROM audit_entries WHERE action = 'session.cancelled' AND pair_id = ?",
        record.pair_id,
    )
    assert [r["actor"] for r in rows] == ["admin"]
    rc, _, err = await confidant("cancel", "--pair", record.label, session_id)
    assert rc == 1 and "already cancelled" in err


async def test_store_on_both_databases(db):
    """The sessions store, calls and live_session on SQLite and PostgreSQL."""
    from bridge.store import pairs

    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    pair = await pairs.create(db, patient_id="@pat:hs", therapist_id="@doc:hs", now=to_ms(now))
    first = session_record(pair.pair_id, timedelta(hours=1), timedelta(minutes=50), now)
    later = session_record(pair.pair_id, timedelta(days=1), timedelta(minutes=50), now)
    assert await sessions.add(db, later) and await sessions.add(db, first)
    assert not await sessions.add(db, first)  # a replayed command stores nothing twice
    listed = await sessions.list_for_pair(db, pair.pair_id, ending_after=to_ms(now))
    assert [s.session_id for s in listed] == [first.session_id, later.session_id]
    assert {s.session_id for s in await sessions.unarmed(db)} == {
        first.session_id,
        later.session_id,
    }
    await sessions.mark_armed(db, first.session_id)
    assert [s.session_id for s in await sessions.unarmed(db)] == [later.session_id]

    during = now + timedelta(hours=1, minutes=10)
    assert await sessions.live_session(db, pair.pair_id, during)
    assert not await sessions.live_session(db, pair.pair_id, now)
    assert not await sessions.live_session(db, pair.pair_id, now + timedelta(hours=1, minutes=50))
    assert await sessions.cancel(db, first.session_id, to_ms(now))
    assert not await sessions.cancel(db, first.session_id, to_ms(now))
    assert not await sessions.live_session(db, pair.pair_id, during)

    assert await sessions.current_call(db, pair.pair_id) is None
    assert await sessions.start_call(db, pair.pair_id, "confidant-a", "@pat:hs", 1) == "confidant-a"
    # A second `!video` while the call is on keeps the meeting.
    assert await sessions.start_call(db, pair.pair_id, "confidant-b", "@doc:hs", 2) == "confidant-a"
    assert await sessions.end_call(db, pair.pair_id) == "confidant-a"
    assert await sessions.end_call(db, pair.pair_id) is None
