"""Pair rooms end to end against the real Synapse: provisioning, E2EE both ways,
membership policy, commands, restarts without loss or duplicates."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bridge.adapters.matrix.rest import MatrixRest
from bridge.app import open_parts
from bridge.store import pairs, syncstate
from tests.support.bridge_app import bridge_config, notice_containing, start_app, text_from

pytestmark = pytest.mark.integration


async def audit_actions(db, pair_id: str) -> list[tuple[str, str | None]]:
    rows = await db.fetch(
        "SELECT action, event_id FROM audit_entries WHERE pair_id = ? ORDER BY seq", pair_id
    )
    return [(r["action"], r["event_id"]) for r in rows]


async def wait_until(check, timeout: float = 20.0, what: str = "condition"):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


@pytest.fixture
async def pair_setup(homeserver, make_user, make_nio_user, tmp_path: Path):
    bot = make_user("bot")
    cfg = bridge_config(homeserver, bot.user_id, bot.password, tmp_path / "data")
    app = await start_app(cfg)
    patient = await make_nio_user("patient")
    therapist = await make_nio_user("therapist")
    record, created = await app.parts.pairs.add_pair(
        patient.user_id, therapist.user_id, app.service.clock()
    )
    assert created
    state = {
        "app": app,
        "cfg": cfg,
        "bot": bot,
        "patient": patient,
        "therapist": therapist,
        "pair": record,
    }
    yield state
    if state["app"] is not None:
        await state["app"].stop()


async def test_pair_room_is_private_encrypted_and_both_read_each_other(pair_setup, homeserver):
    app, patient, therapist, record = (
        pair_setup["app"],
        pair_setup["patient"],
        pair_setup["therapist"],
        pair_setup["pair"],
    )
    room = record.room_id
    # Both are invited (auto-join) and decrypt the bot's welcome notice.
    welcome = await patient.wait_for(room, notice_containing("Welcome"), timeout=30)
    assert "+44 800 000 000" in welcome.body
    await therapist.wait_for(room, notice_containing("Welcome"), timeout=30)

    # Room settings as the design says.
    rest = MatrixRest(homeserver.url, patient.client.access_token)
    try:
        enc = await rest.get_state(room, "m.room.encryption")
        hist = await rest.get_state(room, "m.room.history_visibility")
        guest = await rest.get_state(room, "m.room.guest_access")
        create = await rest.get_state(room, "m.room.create")
        power = await rest.get_state(room, "m.room.power_levels")
    finally:
        await rest.close()
    assert enc["algorithm"] == "m.megolm.v1.aes-sha2"
    assert hist["history_visibility"] == "invited"
    assert guest["guest_access"] == "forbidden"
    assert create.get("m.federate") is False
    assert power["invite"] == 100 and power["kick"] == 100 and power["state_default"] == 100
    # The bot holds all power: as creator (room version 12+) or at level 100.
    assert create.get("creator", create.get("sender")) in (None, app.parts.creds.user_id)
    assert power["users"].get(app.parts.creds.user_id, 100) == 100
    assert power["users"][therapist.user_id] == 50

    # Messages both ways decrypt for the other side and for the bot (audited with ids).
    await therapist.wait_joined(room, patient.user_id, timeout=20)
    ev1 = await patient.send_text(room, "I had a hard week")
    await therapist.wait_for(room, text_from(patient.user_id, "I had a hard week"), timeout=20)
    ev2 = await therapist.send_text(room, "Thank you for telling me")
    await patient.wait_for(room, text_from(therapist.user_id, "Thank you for telling me"), 20)

    async def both_audited():
        actions = await audit_actions(app.parts.db, record.pair_id)
        ids = {event_id for action, event_id in actions if action == "room.text"}
        return ev1 in ids and ev2 in ids

    await wait_until(both_audited, what="both messages audited")
    actions = await audit_actions(app.parts.db, record.pair_id)
    assert ("pair.created", None) in actions
    assert not any(action == "room.undecryptable" for action, _ in actions)


async def test_help_is_generated_and_unknown_commands_answered(pair_setup):
    patient, _therapist, record = (
        pair_setup["patient"],
        pair_setup["therapist"],
        pair_setup["pair"],
    )
    room = record.room_id
    await patient.wait_for(room, notice_containing("Welcome"), timeout=30)
    await patient.send_text(room, "!help")
    help_notice = await patient.wait_for(
        room, notice_containing("Commands you can use here"), timeout=20
    )
    assert "!help" in help_notice.body
    await patient.send_text(room, "!nonsense")
    await patient.wait_for(room, notice_containing("!nonsense is not a command"), timeout=20)


async def test_bot_restart_keeps_decrypting_and_processes_nothing_twice(pair_setup):
    app, cfg, patient, _therapist, record = (
        pair_setup["app"],
        pair_setup["cfg"],
        pair_setup["patient"],
        pair_setup["therapist"],
        pair_setup["pair"],
    )
    room = record.room_id
    await patient.wait_for(room, notice_containing("Welcome"), timeout=30)
    first = await patient.send_text(room, "before restart")

    async def audited(event_id):
        rows = await app.parts.db.fetch(
            "SELECT seq FROM audit_entries WHERE event_id = ? AND action = 'room.text'", event_id
        )
        return len(rows) == 1

    await wait_until(lambda: audited(first), what="first message audited")
    device = app.parts.creds.device_id
    await app.stop()
    pair_setup["app"] = None

    # While the bot is down, the patient writes; nothing may be lost.
    sent = [await patient.send_text(room, f"while down {i}") for i in range(5)]

    app2 = await start_app(cfg)
    pair_setup["app"] = app2
    assert app2.parts.creds.device_id == device  # the same device, keys restored

    async def all_seen():
        for event_id in [first, *sent]:
            if not await syncstate.is_processed(app2.parts.db, event_id):
                return False
        return True

    await wait_until(all_seen, timeout=30, what="messages sent while down")
    for event_id in [first, *sent]:
        rows = await app2.parts.db.fetch(
            "SELECT seq, action FROM audit_entries WHERE event_id = ? AND action LIKE 'room.%'",
            event_id,
        )
        assert [r["action"] for r in rows] == ["room.text"], event_id  # exactly once, decrypted

    # And the bot still speaks in the room after the restart.
    await patient.send_text(room, "!help")
    await patient.wait_for(room, notice_containing("Commands you can use here"), timeout=20)


async def test_add_pair_is_idempotent(pair_setup):
    app, record = pair_setup["app"], pair_setup["pair"]
    again, created = await app.parts.pairs.add_pair(
        record.patient_id, record.therapist_id, app.service.clock()
    )
    assert not created and again.room_id == record.room_id
    listed = await pairs.list_pairs(app.parts.db)
    assert [p.pair_id for p in listed].count(record.pair_id) == 1


async def test_foreign_invite_is_refused(pair_setup, make_nio_user):
    app = pair_setup["app"]
    stranger = await make_nio_user("stranger")
    room_id = await stranger.create_room(invite=[app.parts.creds.user_id])

    async def left():
        rest = MatrixRest(stranger.client.homeserver, stranger.client.access_token)
        try:
            members = await rest.members(room_id)
        finally:
            await rest.close()
        return members.get(app.parts.creds.user_id) == "leave"

    await wait_until(left, what="bot refused the invite")
    rows = await app.parts.db.fetch(
        "SELECT action FROM audit_entries WHERE action = 'policy.invite_refused'"
    )
    assert rows


async def test_cli_parts_can_provision_while_bridge_runs(pair_setup, make_nio_user):
    """A pair added through the CLI's parts (another process in real life) gets its welcome
    from the running bridge's outbox."""
    cfg = pair_setup["cfg"]
    patient = await make_nio_user("patient")
    therapist = pair_setup["therapist"]
    parts = await open_parts(cfg)
    try:
        record, created = await parts.pairs.add_pair(
            patient.user_id, therapist.user_id, pair_setup["app"].service.clock()
        )
    finally:
        await parts.close()
    assert created
    await patient.wait_for(record.room_id, notice_containing("Welcome"), timeout=30)


async def test_300_messages_while_stopped_are_all_seen_once(pair_setup):
    """A limited sync (over 100 events) is back-filled: nothing is missed."""
    app, cfg, patient, record = (
        pair_setup["app"],
        pair_setup["cfg"],
        pair_setup["patient"],
        pair_setup["pair"],
    )
    room = record.room_id
    await patient.wait_for(room, notice_containing("Welcome"), timeout=30)
    await app.stop()
    pair_setup["app"] = None
    sent: list[str] = []
    for start in range(0, 300, 10):
        sent += await asyncio.gather(
            *(patient.send_text(room, f"journal line {i}") for i in range(start, start + 10))
        )
    app2 = await start_app(cfg)
    pair_setup["app"] = app2

    async def all_seen():
        rows = await app2.parts.db.fetch(
            "SELECT COUNT(*) AS n FROM audit_entries WHERE pair_id = ? AND action = 'room.text'",
            record.pair_id,
        )
        return rows[0]["n"] >= 300

    await wait_until(all_seen, timeout=120, what="300 messages audited")
    rows = await app2.parts.db.fetch(
        "SELECT event_id FROM audit_entries WHERE pair_id = ? AND action = 'room.text'",
        record.pair_id,
    )
    seen = [r["event_id"] for r in rows]
    assert sorted(seen) == sorted(sent)  # every one, exactly once
    assert app2.bot.stats.backfilled_events > 0
