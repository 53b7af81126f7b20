"""Pair lifecycle and key handling against the real Synapse: handover, closing, a patient's
new device, and events the bot cannot decrypt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.adapters.matrix.rest import MatrixRest, q
from bridge.core.power_levels import POWER_LEVELS_RESTORED
from bridge.store.pairs import PairStatus
from tests.features.test_pair_rooms import wait_until
from tests.support.bridge_app import bridge_config, notice_containing, start_app, text_from
from tests.support.nio_user import NioUser

pytestmark = pytest.mark.integration


@pytest.fixture
async def running(homeserver, make_user, make_nio_user, tmp_path: Path):
    bot = make_user("bot")
    cfg = bridge_config(homeserver, bot.user_id, bot.password, tmp_path / "data")
    app = await start_app(cfg, undecryptable_grace=3.0)
    patient = await make_nio_user("patient")
    therapist = await make_nio_user("therapist")
    record, _ = await app.parts.pairs.add_pair(
        patient.user_id, therapist.user_id, app.service.clock()
    )
    await patient.wait_for(record.room_id, notice_containing("Welcome"), timeout=30)
    await therapist.wait_joined(record.room_id, patient.user_id, timeout=20)
    yield app, patient, therapist, record
    await app.stop()


async def members(homeserver, token: str, room_id: str) -> dict[str, str]:
    rest = MatrixRest(homeserver.url, token)
    try:
        return await rest.members(room_id)
    finally:
        await rest.close()


async def test_reassign_hands_over_without_history(running, make_nio_user, homeserver):
    app, patient, old, record = running
    room = record.room_id
    await patient.send_text(room, "something for my first therapist")
    new = await make_nio_user("newtherapist")
    updated = await app.parts.pairs.reassign(record.label, new.user_id, app.service.clock())
    assert updated.therapist_id == new.user_id
    await new.wait_for(room, notice_containing("now with"), timeout=30)
    state = await members(homeserver, patient.client.access_token, room)
    assert state[old.user_id] == "leave" and state[new.user_id] == "join"
    # history_visibility "invited": the newcomer cannot read what was said before.
    assert "something for my first therapist" not in new.texts(room)
    await patient.send_text(room, "hello new therapist")
    await new.wait_for(room, text_from(patient.user_id, "hello new therapist"), timeout=20)
    actions = [
        r["action"]
        for r in await app.parts.db.fetch(
            "SELECT action FROM audit_entries WHERE pair_id = ?", record.pair_id
        )
    ]
    assert "pair.reassigned" in actions
    assert "policy.outsider_removed" not in actions  # the newcomer is a member, not an outsider


async def test_remove_closes_room_read_only_and_keeps_audit(running, homeserver):
    app, patient, _therapist, record = running
    removed = await app.parts.pairs.remove_pair(record.label, app.service.clock())
    assert removed.status is PairStatus.REMOVED
    await patient.wait_for(record.room_id, notice_containing("has been closed"), timeout=30)
    rest = MatrixRest(homeserver.url, patient.client.access_token)
    try:
        power = await rest.get_state(record.room_id, "m.room.power_levels")
    finally:
        await rest.close()
    assert power["events_default"] == 100  # members can no longer post
    rows = await app.parts.db.fetch(
        "SELECT action FROM audit_entries WHERE pair_id = ? ORDER BY seq", record.pair_id
    )
    assert rows[0]["action"] == "pair.created" and "pair.removed" in [r["action"] for r in rows]


async def test_patients_new_device_gets_keys(running, homeserver, store_dir):
    _app, patient, _therapist, record = running
    second = await NioUser.create(
        homeserver.url,
        patient.user_id,
        patient.password,
        store_dir("patient-phone"),
        auto_join=True,
    )
    try:
        await patient.send_text(record.room_id, "!help")
        notice = await second.wait_for(
            record.room_id, notice_containing("Commands you can use here"), timeout=30
        )
        assert notice.decrypted
    finally:
        await second.close()


async def test_undecryptable_event_is_recorded_and_therapist_told(running):
    app, patient, therapist, record = running
    room = record.room_id
    desk = app.service.desk_of(therapist.user_id)
    assert desk is not None
    await therapist.wait_room(desk, timeout=20)
    # The patient's client withholds the room key from the bot's device.
    bot_devices = patient.client.device_store.active_user_devices(app.parts.creds.user_id)
    for device in bot_devices:
        patient.client.blacklist_device(device)
    patient.client.olm.outbound_group_sessions.pop(room, None)  # a fresh session without the bot
    # Sent with nio directly: the test client's own helper would trust every device again.
    resp = await patient.client.room_send(
        room, "m.room.message", {"msgtype": "m.text", "body": "the bot must not read this"}
    )
    event_id = resp.event_id
    await therapist.wait_for(room, text_from(patient.user_id, "the bot must not read this"), 20)

    async def recorded():
        rows = await app.parts.db.fetch(
            "SELECT action, outcome FROM audit_entries WHERE event_id = ? AND action LIKE 'room.%'",
            event_id,
        )
        return rows

    rows = await wait_until(recorded, timeout=40, what="decryption failure recorded")
    assert [(r["action"], r["outcome"]) for r in rows] == [("room.undecryptable", "failed")]
    alert = await therapist.wait_for(desk, notice_containing("could not be decrypted"), 30)
    assert "must not read" not in alert.body


async def test_export_in_desk_room_gives_an_encrypted_zip(running):
    import io
    import zipfile

    from nio import DownloadResponse, RoomEncryptedFile
    from nio.crypto.attachments import decrypt_attachment

    app, patient, therapist, record = running
    await patient.send_text(record.room_id, "words for the transcript")
    desk = app.service.desk_of(therapist.user_id)
    assert desk is not None
    await therapist.wait_room(desk, timeout=20)
    await therapist.send_text(desk, f"!export {record.label}")
    event = await therapist.wait_for(desk, lambda e: isinstance(e, RoomEncryptedFile), 60)
    resp = await therapist.client.download(mxc=event.url)
    assert isinstance(resp, DownloadResponse)
    data = decrypt_attachment(resp.body, event.key["k"], event.hashes["sha256"], event.iv)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = set(zf.namelist())
        assert {"transcript.html", "transcript.json", "manifest.json"} <= names
    # An unknown pair gets a short refusal, never a file.
    await therapist.send_text(desk, "!export FFFF")
    await therapist.wait_for(desk, notice_containing("No export"), timeout=30)


async def test_an_admins_power_grant_is_set_back(running, homeserver, make_user):
    app, _patient, _therapist, record = running
    admin = make_user("roomadmin", admin=True)
    rest = MatrixRest(homeserver.url, admin.access_token)
    try:
        await rest.request(
            "POST",
            f"/_synapse/admin/v1/rooms/{q(record.room_id)}/make_room_admin",
            {"user_id": admin.user_id},
        )
        timeline = await rest.request(
            "GET", f"/_synapse/admin/v1/rooms/{q(record.room_id)}/messages?dir=b&limit=50"
        )
    finally:
        await rest.close()
    grants = [
        ev
        for ev in timeline["chunk"]
        if ev["type"] == "m.room.power_levels"
        and ev["content"].get("users", {}).get(admin.user_id) == 100
    ]
    assert grants, "the homeserver made no grant"

    bot = app.parts.rest

    async def set_back() -> bool:
        levels = await bot.get_state(record.room_id, "m.room.power_levels")
        return admin.user_id not in levels.get("users", {})

    await wait_until(set_back, what="the grant set back")
    levels = await bot.get_state(record.room_id, "m.room.power_levels")
    assert levels["users"].get(record.therapist_id) == 50  # the therapist's widget right stays
    assert levels["events"]["im.vector.modular.widgets"] == 50
    assert await app.parts.pairs.room_power_levels(record) == {
        key: levels[key] for key in await app.parts.pairs.room_power_levels(record)
    }

    async def admin_out() -> bool:
        token = app.parts.rest.access_token or ""
        return (await members(homeserver, token, record.room_id)).get(admin.user_id) in (
            None,
            "leave",
        )

    await wait_until(admin_out, what="the admin removed")  # as any outsider

    async def audited() -> bool:
        details = await app.parts.db.fetchval(
            "SELECT details FROM audit_entries WHERE action = ? AND pair_id = ?",
            POWER_LEVELS_RESTORED,
            record.pair_id,
        )
        return (
            details is not None and f"user:{admin.user_id}" in json.loads(str(details))["changed"]
        )

    await wait_until(audited, what="the restore audited")
    # Setting them back is not itself a change to set back: one restore only.
    assert (
        await app.parts.db.fetchval(
            "SELECT COUNT(*) FROM audit_entries WHERE action = ?", POWER_LEVELS_RESTORED
        )
        == 1
    )
