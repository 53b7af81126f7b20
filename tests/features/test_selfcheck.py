"""The bridge proves its own posts readable, and repairs one that is not.

The witness is a second, cross-signed device of the bot account; patient and therapist are
matrix-js-sdk clients with Element's Rust crypto in "exclude insecure devices" mode. An
unreadable post is made the way nio used to make them: the room key's to-device requests
never leave, yet the session counts as shared with every device, so the post goes out
encrypted with a key nobody holds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge import metrics
from bridge.adapters.matrix.crosssign import shared_keys
from bridge.adapters.matrix.keyshare import DeviceRef
from bridge.adapters.matrix.rest import HomeserverUnavailable, MatrixRest
from bridge.adapters.matrix.witness import SYNC_TOKEN_FILE, witness_dir
from bridge.app import App, default_features
from bridge.features.http import http_installer, install_http
from bridge.features.selfcheck import install_selfcheck
from bridge.outbox import enqueue_content
from bridge.store import open_database
from bridge.store import witness as checks
from tests.support.bridge_app import bridge_config, start_app
from tests.support.jsclient import JsClient

pytestmark = pytest.mark.integration

DEADLINE = "3s"


async def wait_until(
    check: Callable[[], Awaitable[Any]], timeout: float = 60.0, what: str = "condition"
) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


def _readable(event: dict[str, Any]) -> None:
    assert event["decrypted"], event
    assert event["shield"] is None or event["shield"]["colour"] == "NONE", event


@pytest.fixture
async def practice(
    homeserver: Any, make_user: Any, tmp_path: Path
) -> AsyncIterator[tuple[App, str, list[JsClient], int]]:
    """A running bridge with its witness, a pair whose members read in Element's crypto."""
    bot = make_user("bot")
    ports: list[int] = []
    cfg = bridge_config(
        homeserver,
        bot.user_id,
        bot.password,
        tmp_path / "data",
        bot={"witness": {"deadline": DEADLINE}},
        http={"enabled": True},
    )
    app = await start_app(cfg, features=_features(lambda server: ports.append(server.port or 0)))
    clients: list[JsClient] = []
    try:
        for prefix in ("therapist", "patient"):
            user = make_user(prefix)
            clients.append(
                await JsClient.start(
                    homeserver.url, user.user_id, user.password, "signed", auto_join=True
                )
            )
        therapist, patient = clients
        assert app.parts is not None and app.service is not None
        record, _ = await app.parts.pairs.add_pair(
            patient.user_id, therapist.user_id, app.service.clock()
        )
        assert record.room_id is not None
        for client in clients:
            _readable(await client.wait(record.room_id, sender=bot.user_id, contains="Welcome"))
        yield app, record.room_id, clients, ports[0]
    finally:
        for client in clients:
            await client.stop()
        await app.stop()


def _features(on_ready: Callable[[Any], None]) -> list[Any]:
    rest = [f for f in default_features() if f is not install_http]
    return [*rest, http_installer(host="127.0.0.1", port=0, on_ready=on_ready)]


async def post(app: App, room_id: str, txn_id: str, body: str) -> None:
    assert app.parts is not None and app.service is not None and app.outbox is not None
    async with app.parts.db.transaction() as tx:
        await enqueue_content(
            tx,
            app.parts.sealer,
            room_id,
            "m.room.message",
            {"msgtype": "m.notice", "body": body},
            txn_id,
            "test",
            app.service.clock(),
        )
    app.outbox.kick()


async def outbox_rows(app: App, txn_like: str, where: str = "1 = 1") -> int:
    assert app.parts is not None
    sql = f"SELECT COUNT(*) FROM outbox WHERE txn_id LIKE ? AND {where}"
    return int(await app.parts.db.fetchval(sql, txn_like))


async def check_state(app: App, txn_id: str) -> str | None:
    assert app.parts is not None
    check = await checks.get(app.parts.db, txn_id)
    return None if check is None else check.state.value


async def health(port: int) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/health") as resp,
    ):
        return resp.status, await resp.json()


async def witness_metrics(app: App) -> dict[str, float]:
    assert app.service is not None
    text = metrics.render(await metrics.gather(app, app.service.clock())).decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("confidant_witness"):
            continue
        for sample in family.samples:
            label = sample.labels.get("outcome")
            values[sample.name + (f"[{label}]" if label else "")] = sample.value
    return values


async def test_normal_posts_are_read_by_the_witness_and_nothing_is_repaired(practice):
    app, room, (therapist, patient), port = practice
    assert app.selfcheck is not None and app.selfcheck.witness is not None
    witness = app.selfcheck.witness
    assert app.parts is not None and app.bot is not None

    # The witness is the bot's own device, cross-signed with the bot's one identity.
    keys = await shared_keys(
        app.parts.db,
        app.cfg.data_dir / "cross-signing.sealed",
        app.cfg.bot.pickle_key.get_secret_value(),
    )
    async with MatrixRest(app.cfg.homeserver.url, app.parts.creds.access_token) as rest:
        query = await rest.request(
            "POST", "/_matrix/client/v3/keys/query", {"device_keys": {app.bot.user_id: []}}
        )
    device = query["device_keys"][app.bot.user_id][witness.device_id]
    assert f"ed25519:{keys['self_signing'].public_b64}" in device["signatures"][app.bot.user_id]

    for n in range(3):
        await post(app, room, f"test.normal.{n}", f"normal notice {n}")
    for client in (therapist, patient):
        for n in range(3):
            _readable(await client.wait(room, sender=app.bot.user_id, contains=f"notice {n}"))

    async def all_read() -> bool:
        states = [await check_state(app, f"test.normal.{n}") for n in range(3)]
        return states == ["readable"] * 3

    await wait_until(all_read, what="the witness to read every post")
    # It syncs no room at all: it sees no timeline, and hands nothing to the service.
    assert witness.client is not None and witness.client.rooms == {}
    # The room key went to the witness like to every member device: the post was proven.
    assert app.bot.key_meant_for(room, witness.device_id or "")
    rows = await app.parts.db.fetch(
        "SELECT COUNT(*) AS n FROM outbox WHERE status = 'sent' AND content IS NOT NULL"
    )
    assert rows[0]["n"] == 0  # nothing stays sealed once read
    assert await outbox_rows(app, "%.repost") == 0

    figures = await witness_metrics(app)
    assert figures["confidant_witness_up"] == 1
    assert figures["confidant_witness_checks_total[readable]"] >= 3
    assert figures.get("confidant_witness_checks_total[unreadable]", 0) == 0
    assert figures["confidant_witness_reposts_total"] == 0
    assert figures["confidant_witness_repairs_pending"] == 0

    status, body = await health(port)
    assert status == 200, body
    assert body["checks"]["witness"]["ok"] is True
    assert body["witness"]["unreadable_posts"] == 0
    assert body["witness"]["checked_last_hour"] >= 3


async def test_an_unreadable_post_is_found_reposted_once_with_a_fresh_session_and_audited(
    practice, monkeypatch
):
    app, room, (therapist, patient), port = practice
    assert app.bot is not None and app.parts is not None and app.selfcheck is not None
    bot = app.bot
    client = bot.client
    real_send_room_keys = client._send_room_keys
    skipped: list[set[DeviceRef]] = []

    async def keys_that_never_leave(matrix_room: Any, ignore_unverified: bool) -> set[DeviceRef]:
        """Encrypt the key for every device, send none, and report all as shared."""
        if matrix_room.room_id != room or skipped:
            return await real_send_room_keys(matrix_room, ignore_unverified)
        devices: set[DeviceRef] = set()
        for sharing_with, _to_device in client.olm.share_group_session_parallel(
            room, list(matrix_room.users), ignore_unverified_devices=ignore_unverified
        ):
            devices |= sharing_with
        skipped.append(devices)
        return devices

    monkeypatch.setattr(client, "_send_room_keys", keys_that_never_leave)
    # A fresh session for the next post, whose key then never leaves.
    session = client.olm.outbound_group_sessions[room]
    assert await bot.rotate_room_key(room, session.id)

    await post(app, room, "test.bad", "the notice nobody could read at first")
    await wait_until(lambda: check_state(app, "test.bad"), what="the post to be sent")
    assert skipped and (bot.user_id, app.selfcheck.witness.device_id) in skipped[0]
    original = await app.parts.db.fetchval("SELECT event_id FROM outbox WHERE txn_id = 'test.bad'")

    # Found unreadable after the deadline, re-posted once under its own txn id.
    await wait_until(
        lambda: _equals(check_state(app, "test.bad"), "reposted"),
        what="the post to be found unreadable",
    )
    for reader in (therapist, patient):
        event = await reader.wait(room, sender=bot.user_id, contains="nobody could read")
        _readable(event)
        assert event["event_id"] != original
        seen = {e["event_id"]: e for e in await reader.events(room)}
        assert seen[original]["decrypted"] is False  # really unreadable, for members too
    await wait_until(
        lambda: _equals(check_state(app, "test.bad.repost"), "readable"),
        what="the witness to read the repost",
    )
    repost_event = await app.parts.db.fetchval(
        "SELECT event_id FROM outbox WHERE txn_id = 'test.bad.repost'"
    )
    # A fresh session: the repost is not encrypted with the key that never left.
    async with MatrixRest(app.cfg.homeserver.url, app.parts.creds.access_token) as rest:
        sessions = []
        for event_id in (original, repost_event):
            ev = await rest.request("GET", f"/_matrix/client/v3/rooms/{room}/event/{event_id}")
            sessions.append(ev["content"]["session_id"])
    assert sessions[0] != sessions[1]

    assert await outbox_rows(app, "test.bad%") == 2  # the original and one repost, no more
    assert await outbox_rows(app, "test.bad%", "content IS NOT NULL") == 0

    rows = await app.parts.db.fetch(
        "SELECT action, actor, event_id, outcome, details, content_sha256 FROM audit_entries "
        "WHERE action IN ('post.unreadable', 'post.repaired') ORDER BY seq"
    )
    assert [(r["action"], r["event_id"], r["outcome"]) for r in rows] == [
        ("post.unreadable", original, "reposted"),
        ("post.repaired", repost_event, "ok"),
    ]
    unreadable, repaired = (json.loads(r["details"]) for r in rows)
    assert unreadable["txn_id"] == "test.bad"
    assert unreadable["repost_txn_id"] == "test.bad.repost"
    assert repaired["original_event_id"] == original
    assert all(r["content_sha256"] is None for r in rows)  # no content in the audit

    # Later posts in the room use the fresh session and stay readable.
    await post(app, room, "test.after", "a later notice")
    for reader in (therapist, patient):
        _readable(await reader.wait(room, sender=bot.user_id, contains="later notice"))
    await wait_until(
        lambda: _equals(check_state(app, "test.after"), "readable"), what="the later post read"
    )

    figures = await witness_metrics(app)
    assert figures["confidant_witness_checks_total[unreadable]"] == 1
    assert figures["confidant_witness_reposts_total"] == 1
    assert figures["confidant_witness_repairs_pending"] == 0
    status, body = await health(port)
    assert status == 200, body
    assert body["witness"]["unreadable_posts"] == 1
    assert body["witness"]["repairs_pending"] == 0


async def _equals(value: Awaitable[Any], expected: Any) -> bool:
    return bool(await value == expected)


async def test_a_check_waiting_over_a_restart_keeps_its_content_until_the_post_is_read(
    homeserver, make_user, tmp_path: Path, monkeypatch, caplog
):
    bot, patient, therapist = make_user("bot"), make_user("patient"), make_user("therapist")
    cfg = bridge_config(
        homeserver,
        bot.user_id,
        bot.password,
        tmp_path / "data",
        bot={"witness": {"deadline": DEADLINE}},
    )
    app = await start_app(cfg)
    try:
        assert app.parts is not None and app.service is not None and app.selfcheck is not None
        selfcheck = app.selfcheck

        async def up() -> bool:
            return selfcheck.state == "up"

        await wait_until(up, what="the witness to come up")
        record, _ = await app.parts.pairs.add_pair(
            patient.user_id, therapist.user_id, app.service.clock()
        )
        assert record.room_id is not None

        async def cannot_look(room_id: str, event_id: str) -> Any:
            raise HomeserverUnavailable("GET: HTTP 502")

        assert selfcheck.witness is not None
        monkeypatch.setattr(selfcheck.witness, "read", cannot_look)
        await post(app, record.room_id, "test.restart", "posted just before a restart")
        await wait_until(
            lambda: _equals(check_state(app, "test.restart"), "waiting"), what="the check"
        )
    finally:
        await app.stop()
    assert await _sealed_content(cfg, "test.restart")  # kept: it may have to be posted again
    kept_token = (witness_dir(cfg.data_dir) / SYNC_TOKEN_FILE).read_text()

    caplog.clear()
    again = await start_app(cfg)
    try:
        await wait_until(
            lambda: _equals(check_state(again, "test.restart"), "readable"),
            what="the witness to read the post after the restart",
        )
        # The witness went on from where it stopped: the room keys it had taken in were
        # not handed over again (nio logs an error for each Olm message seen twice).
        assert kept_token
        assert not [r for r in caplog.records if "decryption failed" in r.getMessage()]
        assert await outbox_rows(again, "test.restart%") == 1  # read, so not posted again
        assert await outbox_rows(again, "test.restart", "content IS NOT NULL") == 0
    finally:
        await again.stop()


async def _sealed_content(cfg: Any, txn_id: str) -> bool:
    db = await open_database(cfg.database_url)
    try:
        return bool(
            await db.fetchval("SELECT content IS NOT NULL FROM outbox WHERE txn_id = ?", txn_id)
        )
    finally:
        await db.close()


async def test_switching_the_witness_off_logs_its_device_out(homeserver, make_user, tmp_path: Path):
    bot = make_user("bot")
    cfg = bridge_config(homeserver, bot.user_id, bot.password, tmp_path / "data")
    app = await start_app(cfg, features=[install_selfcheck])
    try:
        assert app.selfcheck is not None
        selfcheck = app.selfcheck

        async def up() -> bool:
            return selfcheck.state == "up"

        await wait_until(up, what="the witness to come up")
        assert selfcheck.witness is not None
        device = selfcheck.witness.device_id
    finally:
        await app.stop()
    assert device in await _devices(cfg, bot.access_token, bot.user_id)

    off = cfg.model_copy(
        update={
            "bot": cfg.bot.model_copy(
                update={"witness": cfg.bot.witness.model_copy(update={"enabled": False})}
            )
        }
    )
    again = await start_app(off, features=[install_selfcheck])
    try:

        async def retired() -> bool:
            return not (cfg.data_dir / "witness").exists()

        await wait_until(retired, what="the witness device to be retired")
        assert device not in await _devices(cfg, bot.access_token, bot.user_id)
        assert again.selfcheck is not None and not again.selfcheck.enabled
    finally:
        await again.stop()


async def _devices(cfg: Any, token: str, user_id: str) -> set[str]:
    async with MatrixRest(cfg.homeserver.url, token) as rest:
        query = await rest.request(
            "POST", "/_matrix/client/v3/keys/query", {"device_keys": {user_id: []}}
        )
    return set(query["device_keys"].get(user_id, {}))


async def test_an_access_token_login_has_no_witness_and_health_says_so(
    homeserver, make_user, tmp_path: Path
):
    bot = make_user("bot")
    cfg = bridge_config(
        homeserver,
        bot.user_id,
        bot.password,
        tmp_path / "data",
        bot={"password": None, "access_token": bot.access_token},
        http={"enabled": True},
    )
    ports: list[int] = []
    app = await start_app(
        cfg,
        features=[
            install_selfcheck,
            http_installer(host="127.0.0.1", port=0, on_ready=lambda s: ports.append(s.port or 0)),
        ],
    )
    try:
        assert app.selfcheck is not None and not app.selfcheck.enabled
        assert app.outbox is not None and not app.outbox.keep_sent_content
        _status, body = await health(ports[0])
        assert body["checks"]["witness"]["ok"] is True
        assert "access token" in body["checks"]["witness"]["detail"]
        assert body["witness"] == {
            "enabled": False,
            "reason": "the bot logs in with an access token; a witness needs bot.password",
        }
    finally:
        await app.stop()
