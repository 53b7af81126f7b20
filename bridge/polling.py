"""A worker that drains a durable queue: on a kick, on a poll, and when a backoff ends.

The queues themselves live in the database (inbound e-mail, outbound e-mail), so a lost
wake-up costs at most one poll; the loop only decides when to look again. A subclass gives
`drain()`, the log line of a failed pass, and fills `_not_before` (loop time of each
item's next try) while items wait out a backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger(__name__)


class PollingWorker:
    """`start()`, `kick()`, `stop()` around one `drain()` pass at a time."""

    #: The task's name, and what a failed pass is logged as.
    name = "worker"

    def __init__(self, poll_seconds: float) -> None:
        self.poll_seconds = poll_seconds
        #: Loop time at which each waiting item may be tried again.
        self._not_before: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def drain(self) -> int:
        """One pass over the queue; returns how many items were done."""
        raise NotImplementedError

    def start(self) -> None:
        """Run the worker on the current loop (whatever is pending goes at once)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Stop the worker; an item in flight stays pending and is done next time."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def kick(self) -> None:
        """Look at the queue now (something was just committed to it)."""
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self.drain()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(f"{self.name} pass failed", extra={"error": type(exc).__name__})
            wait = self.poll_seconds
            if self._not_before:
                # Wake for the earliest backoff that ends before the next poll.
                wait = min(wait, max(0.05, min(self._not_before.values()) - loop.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            self._wake.clear()
