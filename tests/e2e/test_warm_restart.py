"""A clean restart resumes from the rooms it kept, and what changed meanwhile still counts.

At a clean stop the bot keeps its rooms' members (`bridge.adapters.matrix.roomcache`), so the
next start syncs incrementally instead of asking for every room's full state. A patient who
logs in on a new phone while the bridge is stopped must still read its next post there, on
Element's own crypto; after an unclean stop (no snapshot) the start asks for full state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bridge.adapters.matrix.roomcache import SNAPSHOT_FILE
from tests.support.bridge_app import bridge_config, queue_notices, start_app
from tests.support.jsclient import JsClient


def _readable(event: dict[str, Any]) -> None:
    assert event["decrypted"], event
    assert event["shield"] is None or event["shield"]["colour"] == "NONE", event


async def test_a_clean_restart_resumes_and_a_device_added_meanwhile_reads_the_next_post(
    homeserver: Any, make_user: Any, tmp_path: Path
) -> None:
    bot, patient_user, therapist_user = make_user("bot"), make_user("pat"), make_user("doc")
    cfg = bridge_config(homeserver, bot.user_id, bot.password, tmp_path / "data")
    snapshot = cfg.crypto_store_dir / SNAPSHOT_FILE
    clients: list[JsClient] = []

    async def member(user: Any) -> JsClient:
        client = await JsClient.start(
            homeserver.url, user.user_id, user.password, "signed", auto_join=True
        )
        clients.append(client)
        return client

    try:
        app = await start_app(cfg)
        try:
            assert app.parts is not None and app.service is not None and app.bot is not None
            assert app.bot.stats.rooms_restored == 0  # a first start: full state
            therapist, patient = await member(therapist_user), await member(patient_user)
            record, _ = await app.parts.pairs.add_pair(
                patient.user_id, therapist.user_id, app.service.clock()
            )
            room = record.room_id
            assert room is not None
            _readable(await patient.wait(room, sender=bot.user_id, contains="Welcome", timeout=60))
        finally:
            await app.stop()
        assert snapshot.exists() and snapshot.stat().st_mode & 0o077 == 0

        # While the bridge is stopped the patient logs in on a new phone.
        new_phone = await member(patient_user)

        again = await start_app(cfg)
        try:
            assert again.bot is not None
            assert again.bot.stats.rooms_restored >= 2  # the pair room and the desk room
            assert not snapshot.exists()  # read once: a crash later means full state
            await queue_notices(again, room, ["after the restart"], "test.warm")
            for reader in (new_phone, patient, therapist):
                _readable(
                    await reader.wait(
                        room, sender=bot.user_id, contains="after the restart", timeout=60
                    )
                )
        finally:
            await again.stop()

        # A snapshot that goes with another sync token (a crash after it, a restore) is
        # not used: full state, and the rooms are still whole.
        assert snapshot.exists()
        text = snapshot.read_text()
        snapshot.write_text(text.replace('"token": "', '"token": "stale-', 1))
        third = await start_app(cfg)
        try:
            assert third.bot is not None and third.bot.stats.rooms_restored == 0
            await queue_notices(third, room, ["after full state"], "test.full")
            _readable(
                await new_phone.wait(
                    room, sender=bot.user_id, contains="after full state", timeout=60
                )
            )
        finally:
            await third.stop()
    finally:
        for client in clients:
            await client.stop()
