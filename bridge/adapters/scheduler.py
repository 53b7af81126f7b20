"""Timers with APScheduler; the database stays the source of truth.

APScheduler (3.11, memory job store) only holds triggers. At start every pending timer
is armed again from the `timers` table, so whatever fell due while the bridge was down
fires once, right away. `misfire_grace_time=None` is deliberate: the default of one
second would silently drop a late reminder.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

from bridge.store import timers
from bridge.store.base import Executor, from_ms

log = logging.getLogger(__name__)

RETRY_AFTER = timedelta(seconds=30)


class Scheduler:
    def __init__(self, fire: Callable[[str], Awaitable[None]]) -> None:
        self._fire = fire
        self._aps = AsyncIOScheduler(
            job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
            timezone="UTC",
        )

    def start(self) -> None:
        self._aps.start()

    def stop(self) -> None:
        if self._aps.running:
            self._aps.shutdown(wait=False)

    async def rebuild(self, ex: Executor) -> int:
        """Arm every timer that has not fired yet; returns how many."""
        pending = await timers.get_pending(ex)
        for record in pending:
            self.arm(record.timer_id, from_ms(record.due_at))
        log.info("timers rebuilt", extra={"count": len(pending)})
        return len(pending)

    def arm(self, timer_id: str, at: datetime) -> None:
        self._aps.add_job(
            self._run,
            DateTrigger(run_date=at, timezone="UTC"),
            args=[timer_id],
            id=timer_id,
            replace_existing=True,
        )

    def disarm(self, timer_id: str) -> None:
        with contextlib.suppress(JobLookupError):
            self._aps.remove_job(timer_id)

    def armed(self) -> int:
        return len(self._aps.get_jobs())

    async def _run(self, timer_id: str) -> None:
        try:
            await self._fire(timer_id)
        except Exception as exc:
            log.warning("timer failed", extra={"timer_id": timer_id, "error": type(exc).__name__})
