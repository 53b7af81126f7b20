"""How fast the outbox empties once the homeserver answers again after an outage.

The bridge runs behind the fault-injecting proxy against a temporary homeserver, with a
patient and a therapist (nio clients) in a pair room. The proxy answers 502 to everything
for `BENCH_OUTAGE_S` seconds (default 120) while 100 posts are queued; then it forwards
again, and the clock runs from that moment until the outbox is empty and the patient has
decrypted the last post. The baseline is the same 100 posts queued while the homeserver is
up, from enqueue to the same two conditions, in the same run.

`python -m bench outage` puts the rows in the common table.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import time
from pathlib import Path

from nio import Event, RoomMessageNotice

from bench.baseline import temporary_homeserver
from bench.table import Row
from bridge.app import App
from bridge.store import outbox
from dev.devhs import DevHomeserver
from tests.support.bridge_app import bridge_config, queue_notices
from tests.support.faultproxy import FaultProxy
from tests.support.nio_user import NioUser

POSTS = 100
OUTAGE_S = float(os.environ.get("BENCH_OUTAGE_S", "120"))
DRAIN_TIMEOUT_S = 300.0


async def _user(hs: DevHomeserver, prefix: str, workdir: Path) -> NioUser:
    localpart = f"{prefix}-{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(12)
    user_id, _ = await asyncio.to_thread(hs.register_user, localpart, password)
    return await NioUser.create(hs.url, user_id, password, workdir / localpart)


async def _queue(app: App, room_id: str, tag: str) -> None:
    await queue_notices(app, room_id, [f"{tag} {n}" for n in range(POSTS)], f"bench.{tag}")


async def _drained(app: App, patient: NioUser, room_id: str, last_body: str | None) -> None:
    """Until the outbox is empty and the patient has decrypted `last_body` (if given)."""
    assert app.parts is not None
    seen = asyncio.Event()

    def listener(room: str, event: Event) -> None:
        if room == room_id and isinstance(event, RoomMessageNotice) and event.body == last_body:
            seen.set()

    patient.add_listener(listener)
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while await outbox.depth(app.parts.db) > 0:
        if time.monotonic() > deadline:
            raise RuntimeError("the outbox did not empty in time")
        await asyncio.sleep(0.05)
    if last_body is not None:
        await asyncio.wait_for(seen.wait(), max(1.0, deadline - time.monotonic()))


async def run() -> list[Row]:
    async with temporary_homeserver() as hs, FaultProxy(hs.url) as proxy:
        with tempfile.TemporaryDirectory(prefix="confidant-outage-") as tmp:
            workdir = Path(tmp)
            bot_local = f"bot-{secrets.token_hex(4)}"
            bot_password = secrets.token_urlsafe(12)
            bot_id, _ = await asyncio.to_thread(hs.register_user, bot_local, bot_password)
            cfg = bridge_config(hs, bot_id, bot_password, workdir / "bridge")
            cfg = cfg.model_copy(
                update={"homeserver": cfg.homeserver.model_copy(update={"url": proxy.url})}
            )
            app = App(cfg)
            await app.start()
            patient = await _user(hs, "patient", workdir)
            therapist = await _user(hs, "therapist", workdir)
            try:
                assert app.parts is not None and app.service is not None
                record, _ = await app.parts.pairs.add_pair(
                    patient.user_id, therapist.user_id, app.service.clock()
                )
                room = record.room_id
                assert room is not None
                await _drained(app, patient, room, None)  # welcome and desk notices gone
                started = time.perf_counter()
                await _queue(app, room, "up")
                await _drained(app, patient, room, f"up {POSTS - 1}")
                baseline = time.perf_counter() - started

                proxy.down(502)
                await _queue(app, room, "down")
                await asyncio.sleep(OUTAGE_S)
                proxy.up()
                started = time.perf_counter()
                await _drained(app, patient, room, f"down {POSTS - 1}")
                recovery = time.perf_counter() - started
            finally:
                await patient.close()
                await therapist.close()
                await app.stop()
    return [
        Row(
            f"outbox empty after a {OUTAGE_S:.0f} s outage ({POSTS} posts)",
            recovery,
            "s",
            baseline,
        ),
    ]
