"""Every bot post is readable for every member device, in the order and conditions a practice
meets: members who log in only after `pair add`, a proxy answering 502 or resetting the
connection while a room key is shared, and the homeserver away for a while.

The bot runs behind the fault-injecting proxy; patient and therapist are matrix-js-sdk
clients with Element's Rust crypto in "exclude insecure devices" mode, talking to the
homeserver directly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bridge.app import App
from bridge.store import outbox as outbox_store
from tests.support.bridge_app import bridge_config, queue_notices, start_app
from tests.support.faultproxy import FaultProxy
from tests.support.jsclient import JsClient

pytestmark = pytest.mark.integration

TO_DEVICE_KEYS = r"/sendToDevice/m\.room\.encrypted/"


@pytest.fixture
async def proxy(homeserver: Any) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(homeserver.url) as running:
        yield running


async def _bridge(homeserver: Any, bot: Any, proxy: FaultProxy, data: Path, **cfg: Any) -> App:
    config = bridge_config(homeserver, bot.user_id, bot.password, data, **cfg)
    config = config.model_copy(
        update={"homeserver": config.homeserver.model_copy(update={"url": proxy.url})}
    )
    return await start_app(config)


def _readable(event: dict[str, Any]) -> None:
    """Decrypted, and no warning shield (the bot's device is cross-signed)."""
    assert event["decrypted"], event
    assert event["shield"] is None or event["shield"]["colour"] == "NONE", event


@contextlib.asynccontextmanager
async def _members(homeserver: Any, make_user: Any) -> AsyncIterator[tuple[JsClient, JsClient]]:
    """A therapist and a patient on Element's crypto ("signed" mode), logged in now."""
    clients: list[JsClient] = []
    try:
        for prefix in ("therapist", "patient"):
            user = make_user(prefix)
            clients.append(
                await JsClient.start(
                    homeserver.url, user.user_id, user.password, "signed", auto_join=True
                )
            )
        yield clients[0], clients[1]
    finally:
        for client in clients:
            await client.stop()


async def _pair_room(app: App, patient: JsClient, therapist: JsClient) -> str:
    assert app.parts is not None and app.service is not None
    record, _ = await app.parts.pairs.add_pair(
        patient.user_id, therapist.user_id, app.service.clock()
    )
    assert record.room_id is not None
    return record.room_id


async def _bot_posts(client: JsClient, room: str, bot: str) -> list[dict[str, Any]]:
    """The bot's messages in the room as `client` sees them (state events left out)."""
    return [
        e
        for e in await client.events(room)
        if e["sender"] == bot and e["type"] in ("m.room.message", "m.room.encrypted")
    ]


async def _desk(app: App, therapist: str) -> str:
    assert app.service is not None
    for _ in range(100):
        desk = await app.service.desk_room_of(therapist)
        if desk:
            return desk
        await asyncio.sleep(0.1)
    raise AssertionError("no desk room")


async def test_members_who_log_in_after_pair_add_read_welcome_and_consent(
    homeserver, make_user, proxy, tmp_path: Path
):
    bot = make_user("bot")
    app = await _bridge(
        homeserver,
        bot,
        proxy,
        tmp_path / "d",
        practice={"name": "Harbour Therapy", "crisis_line": "+44 800", "ask_consent": True},
    )
    patient_user, therapist_user = make_user("patient"), make_user("therapist")
    clients: list[JsClient] = []
    try:
        assert app.parts is not None and app.service is not None
        record, _ = await app.parts.pairs.add_pair(
            patient_user.user_id, therapist_user.user_id, app.service.clock()
        )
        assert record.room_id is not None
        desk = await _desk(app, therapist_user.user_id)
        # Nobody has a device yet: the first-contact notices wait instead of going out
        # unreadable for the devices to come.
        await asyncio.sleep(3)
        rows = await app.parts.db.fetch(
            "SELECT txn_id FROM outbox WHERE status = 'pending' AND await_member IS NOT NULL"
        )
        waiting = {row["txn_id"].split(".", 1)[0] for row in rows}
        assert {"welcome", "pair-added", "desk-welcome"} <= waiting, waiting

        # The normal order: the therapist installs Element first, the patient later.
        therapist = await JsClient.start(
            homeserver.url,
            therapist_user.user_id,
            therapist_user.password,
            "signed",
            auto_join=True,
        )
        clients.append(therapist)
        _readable(
            await therapist.wait(desk, sender=bot.user_id, contains="New conversation", timeout=60)
        )
        patient = await JsClient.start(
            homeserver.url, patient_user.user_id, patient_user.password, "signed", auto_join=True
        )
        clients.append(patient)
        room = record.room_id
        _readable(await patient.wait(room, sender=bot.user_id, contains="Welcome", timeout=60))
        _readable(await patient.wait(room, sender=bot.user_id, contains="!accept", timeout=60))
        # The therapist's device is a member's device too: it reads the consent request.
        _readable(await therapist.wait(room, sender=bot.user_id, contains="!accept", timeout=60))
    finally:
        for client in clients:
            await client.stop()
        await app.stop()


@pytest.mark.parametrize("fault", ["502", "502-after-upstream", "reset"])
async def test_a_failed_room_key_share_is_retried_before_the_post(
    fault, homeserver, make_user, proxy, tmp_path: Path
):
    bot = make_user("bot")
    app = await _bridge(homeserver, bot, proxy, tmp_path / "d")
    try:
        async with _members(homeserver, make_user) as (therapist, patient):
            if fault == "502":
                rule = proxy.fail(TO_DEVICE_KEYS, status=502, times=1, method="PUT")
            elif fault == "502-after-upstream":
                rule = proxy.fail_after_upstream(TO_DEVICE_KEYS, status=502, times=1, method="PUT")
            else:
                rule = proxy.reset(TO_DEVICE_KEYS, times=1, method="PUT")
            room = await _pair_room(app, patient, therapist)
            for client in (patient, therapist):
                _readable(
                    await client.wait(room, sender=bot.user_id, contains="Welcome", timeout=60)
                )
            assert rule.hits == 1  # the fault did happen, to a room-key share
            assert app.bot is not None
            if fault == "reset":
                # The client library resends a request whose connection was reset by itself.
                assert len(proxy.seen(TO_DEVICE_KEYS, method="PUT")) >= 2
            else:
                # A 502 is an answer: the share was refused, the post waited for a second one.
                assert app.bot.stats.key_share_failures >= 1

            # Later posts in the room stay readable too (the session was not left half-shared).
            await queue_notices(app, room, ["a later notice"], "test.later")
            for client in (patient, therapist):
                _readable(await client.wait(room, sender=bot.user_id, contains="later", timeout=60))
    finally:
        await app.stop()


async def test_posts_queued_while_the_homeserver_is_away_leave_in_order_when_it_returns(
    homeserver, make_user, proxy, tmp_path: Path
):
    bot = make_user("bot")
    app = await _bridge(homeserver, bot, proxy, tmp_path / "d")
    try:
        async with _members(homeserver, make_user) as (therapist, patient):
            room = await _pair_room(app, patient, therapist)
            _readable(await patient.wait(room, sender=bot.user_id, contains="Welcome", timeout=60))

            proxy.down(502)
            count = 12
            await queue_notices(app, room, [f"queued {n:02d}" for n in range(count)], "test.q")
            assert app.parts is not None and app.outbox is not None
            for _ in range(100):
                if app.outbox.homeserver_down:
                    break
                await asyncio.sleep(0.1)
            assert app.outbox.homeserver_down
            # Long enough for the backoff to grow past what the probe needs.
            await asyncio.sleep(8)
            assert await outbox_store.depth(app.parts.db) >= count
            proxy.up()

            last = f"queued {count - 1:02d}"
            _readable(await patient.wait(room, sender=bot.user_id, contains=last, timeout=60))
            bodies = [
                e["content"].get("body", "")
                for e in await _bot_posts(patient, room, bot.user_id)
                if "queued" in e["content"].get("body", "")
            ]
            assert bodies == [f"queued {n:02d}" for n in range(count)]
            await therapist.wait(room, sender=bot.user_id, contains=last, timeout=60)
            posts = await _bot_posts(therapist, room, bot.user_id)
            assert len(posts) == count + 1  # the welcome and every queued post
            for event in posts:
                _readable(event)
    finally:
        await app.stop()


@pytest.fixture
async def restartable(homeserver: Any) -> AsyncIterator[Any]:
    """The session's Synapse, running again after the test whatever the test did to it."""
    try:
        yield homeserver
    finally:
        if not homeserver.is_running():
            await asyncio.to_thread(homeserver.start)


async def test_a_homeserver_restart_mid_send_loses_no_post_and_none_is_unreadable(
    restartable, make_user, proxy, tmp_path: Path
):
    homeserver = restartable
    bot = make_user("bot")
    app = await _bridge(homeserver, bot, proxy, tmp_path / "d")
    try:
        async with _members(homeserver, make_user) as (therapist, patient):
            room = await _pair_room(app, patient, therapist)
            _readable(await patient.wait(room, sender=bot.user_id, contains="Welcome", timeout=60))

            count = 8
            bodies = [f"across the restart {n}" for n in range(count)]
            # Synapse stops while the outbox is sending (in a thread: the loop keeps running).
            stopping = asyncio.create_task(asyncio.to_thread(homeserver.stop))
            await queue_notices(app, room, bodies, "test.restart")
            await stopping
            await asyncio.sleep(3)
            await asyncio.to_thread(homeserver.start)

            for client in (patient, therapist):
                last = await client.wait(room, sender=bot.user_id, contains=bodies[-1], timeout=90)
                _readable(last)
            seen = [
                e["content"].get("body", "")
                for e in await _bot_posts(patient, room, bot.user_id)
                if "across the restart" in e["content"].get("body", "")
            ]
            assert seen == bodies  # once each, in order
            for client in (patient, therapist):
                for event in await _bot_posts(client, room, bot.user_id):
                    _readable(event)
    finally:
        await app.stop()
