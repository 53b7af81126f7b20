"""Events waiting for their room key survive a restart, against the real Synapse.

The patient's client sends in a Megolm session whose key it withholds from the bot's
device, so the bot holds those events; the bridge stops inside the grace period and
starts again on the same data directory (its sync token is already past the events).
Either every event ends in the audit as undecryptable, with one desk notice for the
burst, or the key arrives late and every event is audited decrypted.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nio import ToDeviceMessage, ToDeviceResponse

from bridge.app import App
from bridge.audit import verify
from bridge.core.pairroom import UNDECRYPTABLE_NOTICE_WINDOW
from bridge.store import open_database, pending
from bridge.store.pairs import PairRecord
from tests.features.test_pair_rooms import wait_until
from tests.support.bridge_app import bridge_config, notice_containing, start_app
from tests.support.nio_user import NioUser

pytestmark = pytest.mark.integration

BURST = 6
NOTICE = "could not be decrypted"
#: How many to-device messages Synapse returns in one sync.
TO_DEVICE_PER_SYNC = 100


async def audited(app: App, event_ids: list[str]) -> dict[str, tuple[str, str]]:
    """(action, outcome) of the room entry of each event audited so far."""
    assert app.parts is not None
    found: dict[str, tuple[str, str]] = {}
    for event_id in event_ids:
        row = await app.parts.db.fetchrow(
            "SELECT action, outcome FROM audit_entries WHERE event_id = ? AND action LIKE 'room.%'",
            event_id,
        )
        if row is not None:
            found[event_id] = (row["action"], row["outcome"])
    return found


async def held(app: App) -> set[str]:
    assert app.parts is not None
    return {row.event_id for row in await pending.list_pending(app.parts.db)}


def desk_notices(therapist: NioUser, desk: str) -> int:
    matches = notice_containing(NOTICE)
    return sum(1 for event in therapist.timeline.get(desk, []) if matches(event))


async def away_from_a_notice_window_edge(margin: float) -> None:
    """Desk notices are grouped per pair in fixed windows of the clock: a burst that
    spans a window's end is told twice. Start the burst well inside one window."""
    window = UNDECRYPTABLE_NOTICE_WINDOW.total_seconds()
    left = window - time.time() % window
    if left < margin:
        await asyncio.sleep(left + 1)


async def setup_pair(app: App, make_nio_user) -> tuple[NioUser, NioUser, PairRecord, str]:
    assert app.parts is not None and app.service is not None
    patient = await make_nio_user("patient")
    therapist = await make_nio_user("therapist")
    record, _ = await app.parts.pairs.add_pair(
        patient.user_id, therapist.user_id, app.service.clock()
    )
    assert record.room_id is not None
    await patient.wait_for(record.room_id, notice_containing("Welcome"), timeout=30)
    await therapist.wait_joined(record.room_id, patient.user_id, timeout=20)
    await patient.wait_joined(record.room_id, therapist.user_id, timeout=20)
    desk = await app.service.desk_room_of(therapist.user_id)
    assert desk is not None
    await therapist.wait_room(desk, timeout=20)
    return patient, therapist, record, desk


async def send_withheld_burst(
    app: App, patient: NioUser, room_id: str
) -> tuple[list[str], dict[str, object]]:
    """Send a burst the bot cannot read; return once the bot holds all of it durably."""
    assert app.parts is not None
    bodies = [f"withheld message {i}" for i in range(BURST)]
    event_ids, room_key = await patient.send_withholding_key(
        room_id, app.parts.creds.user_id, bodies
    )
    await wait_until(
        lambda: _holds_all(app, event_ids), timeout=30, what="the bot holding every event"
    )
    return event_ids, room_key


async def _holds_all(app: App, event_ids: list[str]) -> bool:
    return set(event_ids) <= await held(app)


async def test_a_restart_inside_the_grace_leaves_every_event_in_the_audit(
    homeserver, make_user, make_nio_user, tmp_path: Path
):
    bot = make_user("bot")
    cfg = bridge_config(homeserver, bot.user_id, bot.password, tmp_path / "data")
    grace = 15.0
    app = await start_app(cfg, undecryptable_grace=grace)
    try:
        patient, therapist, record, desk = await setup_pair(app, make_nio_user)
        assert record.room_id is not None
        await away_from_a_notice_window_edge(margin=grace + 90)
        event_ids, _key = await send_withheld_burst(app, patient, record.room_id)
        assert app.bot is not None and app.bot.stats.pending_undecryptable == BURST
        # The therapist reads them: only the bot's device lacks the key.
        await therapist.wait_for(
            record.room_id, lambda e: getattr(e, "body", "") == "withheld message 0", 20
        )
        assert await audited(app, event_ids) == {}
        # Let a sync move the token past the burst before stopping.
        await app.bot.wait_synced(within=30)
    finally:
        await app.stop()

    # Stopped inside the grace: the events are only in the pending table now.
    db = await open_database(cfg.database_url)
    try:
        assert {r.event_id for r in await pending.list_pending(db)} == set(event_ids)
        rows = await db.fetch("SELECT event_id FROM audit_entries WHERE event_id IS NOT NULL")
        assert not set(event_ids) & {r["event_id"] for r in rows}
    finally:
        await db.close()

    app2 = await start_app(cfg, undecryptable_grace=grace)
    try:
        assert app2.bot is not None and app2.parts is not None
        assert app2.bot.stats.pending_undecryptable == BURST  # loaded at start
        result = await wait_until(
            lambda: _all_audited(app2, event_ids),
            timeout=grace + 60,
            what="every held event audited",
        )
        assert set(result.values()) == {("room.undecryptable", "failed")}
        assert await held(app2) == set()
        assert app2.bot.stats.pending_undecryptable == 0
        queued = await app2.parts.db.fetchval(
            "SELECT COUNT(*) FROM outbox WHERE pair_id = ? AND kind = 'undecryptable'",
            record.pair_id,
        )
        assert queued == 1
        await therapist.wait_for(desk, notice_containing(NOTICE), timeout=30)
        await wait_until(
            lambda: _outbox_empty(app2), timeout=30, what="the outbox to have sent everything"
        )
        assert desk_notices(therapist, desk) == 1
        alert = therapist.find(desk, notice_containing(NOTICE))
        assert alert is not None and "withheld" not in getattr(alert, "body", "")
        assert (await verify(app2.parts.db)).ok
    finally:
        await app2.stop()


async def _all_audited(app: App, event_ids: list[str]) -> dict[str, tuple[str, str]] | None:
    found = await audited(app, event_ids)
    return found if len(found) == len(event_ids) else None


async def _outbox_empty(app: App) -> bool:
    assert app.parts is not None
    waiting = await app.parts.db.fetchval("SELECT COUNT(*) FROM outbox WHERE status = 'pending'")
    return int(waiting) == 0


async def test_a_key_that_arrives_while_the_bridge_is_down_decrypts_after_the_grace(
    homeserver, make_user, make_nio_user, tmp_path: Path
):
    bot = make_user("bot")
    cfg = bridge_config(homeserver, bot.user_id, bot.password, tmp_path / "data")
    grace = 3.0
    app = await start_app(cfg, undecryptable_grace=60.0)
    try:
        patient, _therapist, record, _desk = await setup_pair(app, make_nio_user)
        assert record.room_id is not None and app.bot is not None
        event_ids, room_key = await send_withheld_burst(app, patient, record.room_id)
        await app.bot.wait_synced(within=30)
    finally:
        await app.stop()

    # While the bridge is down the grace runs out, and the key reaches the homeserver
    # behind a backlog of other to-device messages. Synapse hands out 100 of them per
    # sync, so the key comes only with the second sync after the start: nothing may
    # expire before a sync has completed.
    await send_to_device_backlog(patient, bot.user_id, TO_DEVICE_PER_SYNC + 20)
    await patient.send_room_key(bot.user_id, room_key)
    await asyncio.sleep(grace + 1)
    first_seen = min(r.first_seen_at for r in await _pending_rows(cfg.database_url))
    assert datetime.now(UTC).timestamp() * 1000 - first_seen > grace * 1000

    app2 = await start_app(cfg, undecryptable_grace=grace)
    try:
        assert app2.parts is not None
        result = await wait_until(
            lambda: _all_audited(app2, event_ids), timeout=30, what="every held event audited"
        )
        assert set(result.values()) == {("room.text", "ok")}
        assert await held(app2) == set()
        queued = await app2.parts.db.fetchval(
            "SELECT COUNT(*) FROM outbox WHERE pair_id = ? AND kind = 'undecryptable'",
            record.pair_id,
        )
        assert queued == 0
        assert (await verify(app2.parts.db)).ok
    finally:
        await app2.stop()


async def test_a_key_that_arrives_late_while_running_decrypts_held_events(
    homeserver, make_user, make_nio_user, tmp_path: Path
):
    bot = make_user("bot")
    cfg = bridge_config(homeserver, bot.user_id, bot.password, tmp_path / "data")
    app = await start_app(cfg, undecryptable_grace=120.0)
    try:
        patient, _therapist, record, _desk = await setup_pair(app, make_nio_user)
        assert record.room_id is not None and app.bot is not None
        event_ids, room_key = await send_withheld_burst(app, patient, record.room_id)
        await app.bot.wait_synced(within=30)
        assert await audited(app, event_ids) == {}
        await patient.send_room_key(bot.user_id, room_key)
        result = await wait_until(
            lambda: _all_audited(app, event_ids), timeout=30, what="every held event audited"
        )
        assert set(result.values()) == {("room.text", "ok")}
        assert await held(app) == set()
        assert app.bot.stats.pending_undecryptable == 0
    finally:
        await app.stop()


async def send_to_device_backlog(sender: NioUser, user_id: str, count: int) -> None:
    """Queue `count` unrelated to-device messages for every device of `user_id`."""
    devices = list(sender.client.device_store.active_user_devices(user_id))
    assert devices
    for i in range(count):
        for device in devices:
            message = ToDeviceMessage("org.example.filler", user_id, device.id, {"n": i})
            resp = await sender.client.to_device(message)
            assert isinstance(resp, ToDeviceResponse), resp


async def _pending_rows(database_url: str) -> list[pending.PendingEvent]:
    db = await open_database(database_url)
    try:
        return await pending.list_pending(db)
    finally:
        await db.close()
