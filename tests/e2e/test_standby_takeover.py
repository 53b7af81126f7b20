"""A warm standby on its own data directory (as on a second machine, no shared disk) takes
over from the active instance and decrypts everything, with nothing lost or audited twice.

Both instances share the PostgreSQL database and the bot account; each has its own device,
cross-signed with the bot's one identity. The patient is Element's crypto in "exclude
insecure devices" mode.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from bridge.app import App, warm_standby
from bridge.standby import run_when_active
from tests.support.bridge_app import bridge_config, queue_notices
from tests.support.jsclient import JsClient

pytestmark = pytest.mark.integration


async def _audited(app: App, event_ids: list[str]) -> dict[str, list[str]]:
    assert app.parts is not None
    found: dict[str, list[str]] = {}
    for event_id in event_ids:
        rows = await app.parts.db.fetch(
            "SELECT action FROM audit_entries WHERE event_id = ? AND action LIKE 'room.%'",
            event_id,
        )
        found[event_id] = [row["action"] for row in rows]
    return found


async def _until(predicate: Any, timeout: float = 60) -> None:
    for _ in range(int(timeout * 10)):
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("timed out")


async def test_standby_with_its_own_data_directory_takes_over_and_decrypts(
    homeserver, make_user, pg_url, tmp_path: Path
):
    bot = make_user("bot")
    cfg_a = bridge_config(
        homeserver, bot.user_id, bot.password, tmp_path / "a", database={"url": pg_url}
    )
    cfg_b = bridge_config(
        homeserver, bot.user_id, bot.password, tmp_path / "b", database={"url": pg_url}
    )
    active, standby = App(cfg_a), App(cfg_b)
    run_a = asyncio.create_task(run_when_active(active, warm_standby(cfg_a)))
    await _until(lambda: _started(active))
    warm = warm_standby(cfg_b)
    run_b = asyncio.create_task(run_when_active(standby, warm))
    await asyncio.wait_for(warm.ready.wait(), 60)

    patient_user, therapist_user = make_user("patient"), make_user("therapist")
    clients: list[JsClient] = []
    try:
        for user in (therapist_user, patient_user):
            clients.append(
                await JsClient.start(
                    homeserver.url, user.user_id, user.password, "signed", auto_join=True
                )
            )
        patient = clients[1]
        assert active.parts is not None and active.service is not None
        record, _ = await active.parts.pairs.add_pair(
            patient_user.user_id, therapist_user.user_id, active.service.clock()
        )
        room = record.room_id
        assert room is not None
        welcome = await patient.wait(room, sender=bot.user_id, contains="Welcome", timeout=60)
        assert welcome["decrypted"], welcome

        before = [await patient.send(room, f"before the switch {n}") for n in range(4)]
        await _until(lambda: _all_audited(active, before))

        # The active instance stops (as when its machine goes down); messages keep coming.
        during = [await patient.send(room, f"during the switch {n}") for n in range(2)]
        run_a.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run_a
        after = [await patient.send(room, f"after the switch {n}") for n in range(4)]

        await _until(lambda: _started(standby), timeout=60)
        await _until(lambda: _all_audited(standby, before + during + after), timeout=90)
        audited = await _audited(standby, before + during + after)
        assert all(actions == ["room.text"] for actions in audited.values()), audited

        # Two devices, one identity: the standby's posts are readable and trusted too.
        assert standby.parts is not None and standby.service is not None
        assert active.parts.creds.device_id != standby.parts.creds.device_id
        await queue_notices(standby, room, ["from the standby"], "test.standby-post")
        for client in clients:
            post = await client.wait(room, sender=bot.user_id, contains="from the standby")
            assert post["decrypted"], post
            assert post["shield"] is None or post["shield"]["colour"] == "NONE", post
    finally:
        for client in clients:
            await client.stop()
        for task in (run_a, run_b):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _started(app: App) -> bool:
    return app.outbox is not None and app.bot is not None and app.bot.first_sync_done.is_set()


async def _all_audited(app: App, event_ids: list[str]) -> bool:
    return app.parts is not None and all((await _audited(app, event_ids)).values())
