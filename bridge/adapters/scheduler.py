"""Timers with APScheduler; the database stays the source of truth.

APScheduler (3.11, memory job store) only holds triggers. At start every pending timer
due within a horizon (a day) is armed again from the `timers` table, so whatever fell due
while the bridge was down fires once, right away; a periodic re-scan arms the later ones
as they come within the horizon. Arming everything at once would cost about 1 KiB and
50 us per timer (a practice with 100,000 open clocks has 300,000 timers).
`misfire_grace_time=None` is deliberate: the default of one second would silently drop a
late reminder.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bridge.store import timers
from bridge.store.base import Executor, from_ms, to_ms

log = logging.getLogger(__name__)

RETRY_AFTER = timedelta(seconds=30)
#: Timers due within this are kept armed in memory; later ones wait in the database.
HORIZON = timedelta(hours=24)
RESCAN_JOB = "confidant.timers.rescan"


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

    async def rebuild(self, ex: Executor, horizon: timedelta = HORIZON) -> int:
        """Arm every unfired timer due within `horizon`, and re-scan every half horizon.

        Returns how many were armed. Re-arming an armed timer only replaces its trigger.
        """
        until = datetime.now(UTC) + horizon
        pending = await timers.get_pending(ex, due_before=to_ms(until))
        for record in pending:
            self.arm(record.timer_id, from_ms(record.due_at))
        log.info("timers rebuilt", extra={"count": len(pending)})
        if self._aps.get_job(RESCAN_JOB) is None:
            self._aps.add_job(
                self.rebuild,
                IntervalTrigger(seconds=horizon.total_seconds() / 2, timezone="UTC"),
                args=[ex, horizon],
                id=RESCAN_JOB,
                replace_existing=True,
            )
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
        return len([job for job in self._aps.get_jobs() if job.id != RESCAN_JOB])

    async def _run(self, timer_id: str) -> None:
        try:
            await self._fire(timer_id)
        except Exception as exc:  # the row stays unfired: try again shortly
            log.warning("timer failed", extra={"timer_id": timer_id, "error": type(exc).__name__})
            self.arm(timer_id, datetime.now(UTC) + RETRY_AFTER)
