"""The scheduler adapter on a real database: rebuilt from the timers table, bounded memory."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from bridge.adapters.scheduler import Scheduler
from bridge.store import timers
from bridge.store.base import to_ms


async def test_rebuild_fires_overdue_once_and_arms_only_within_the_horizon(db) -> None:
    now = datetime.now(UTC)
    await timers.schedule(
        db, timer_id="overdue", kind="test", due_at=to_ms(now - timedelta(hours=3))
    )
    await timers.schedule(db, timer_id="soon", kind="test", due_at=to_ms(now + timedelta(hours=2)))
    await timers.schedule(db, timer_id="later", kind="test", due_at=to_ms(now + timedelta(days=3)))
    fired: list[str] = []

    async def fire(timer_id: str) -> None:
        if await timers.mark_fired(db, timer_id, to_ms(datetime.now(UTC))):
            fired.append(timer_id)

    scheduler = Scheduler(fire)
    scheduler.start()
    try:
        armed = await scheduler.rebuild(db, horizon=timedelta(hours=24))
        assert armed == 2  # the timer three days out waits in the database
        for _ in range(50):
            if fired:
                break
            await asyncio.sleep(0.05)
        assert fired == ["overdue"]  # late, but fired once, right away
        assert scheduler.armed() == 1  # "soon" is still waiting
        # A second rebuild (e.g. the periodic re-scan) does not fire anything twice.
        await scheduler.rebuild(db, horizon=timedelta(hours=24))
        await asyncio.sleep(0.2)
        assert fired == ["overdue"]
    finally:
        scheduler.stop()
