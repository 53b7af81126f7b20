"""Posting to Matrix exactly once: render into the outbox in the caller's transaction,
then a worker sends each row with its stored transaction id until the homeserver has it.

A retry after a crash reuses the txn id, so the homeserver deduplicates it
(`PUT /rooms/{room}/send/{type}/{txnId}` is idempotent per device and access token).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from bridge.adapters.render import Renderer
from bridge.core.model import SendMessage
from bridge.store import languages, outbox
from bridge.store.base import ContentSealer, Database, Executor, to_ms

log = logging.getLogger(__name__)

#: Backoff between attempts, in seconds; the last value repeats.
BACKOFF = (1, 2, 5, 10, 30, 60, 120, 300)

#: How soon a notice waiting for its member looks again, doubling with each look up to
#: `AWAIT_RECHECK_MAX_SECONDS`. A join releases it at once, so the looks are only a safety
#: net: with a thousand patients who never joined, a fixed 30 s would mean a thousand rows
#: read and rewritten every 30 s.
AWAIT_RECHECK_SECONDS = 30
AWAIT_RECHECK_MAX_SECONDS = 900


#: Rooms whose posts are on their way at the same time. Each room's own posts still leave
#: one by one, in order; with one room at a time a weekend's held reminders would leave at
#: one homeserver round trip each (a 5,000-pair Monday: ten minutes).
ROOMS_IN_FLIGHT = 8


def await_recheck_seconds(looks: int) -> int:
    """Seconds until the next look at a notice its member has not been ready for `looks` times."""
    return min(AWAIT_RECHECK_SECONDS << min(looks, 10), AWAIT_RECHECK_MAX_SECONDS)


class Sender(Protocol):
    async def send(
        self, room_id: str, event_type: str, content: dict[str, Any], txn_id: str
    ) -> str:
        """Post once per txn id; raise `ConnectionError` when the homeserver is out of reach."""
        ...

    async def member_ready(self, room_id: str, user_id: str) -> bool:
        """Whether `user_id` has joined `room_id` and has a device that will get the key."""
        ...

    async def reachable(self) -> bool:
        """A cheap probe of the homeserver."""
        ...


async def enqueue_message(
    tx: Executor,
    renderer: Renderer,
    sealer: ContentSealer,
    msg: SendMessage,
    now: datetime,
) -> bool:
    """Render a SendMessage effect and queue it; False if its txn id was queued before.

    It is written in the language of whoever reads its room, unless it names one.
    """
    language = msg.language or await languages.of_room(tx, msg.room_id)
    content = renderer.message(msg.template, msg.context, msgtype=msg.msgtype, language=language)
    return await enqueue_content(
        tx,
        sealer,
        msg.room_id,
        "m.room.message",
        content,
        msg.txn_id,
        msg.template,
        now,
        pair_id=msg.pair_id,
        await_member=msg.await_member,
    )


async def enqueue_content(
    tx: Executor,
    sealer: ContentSealer,
    room_id: str,
    event_type: str,
    content: dict[str, Any],
    txn_id: str,
    kind: str,
    now: datetime,
    *,
    pair_id: str | None = None,
    await_member: str | None = None,
    accepted_at: datetime | None = None,
) -> bool:
    """Queue one event; False if its txn id was queued before.

    `await_member`: send only once that member has joined and has a device (first contact).
    `accepted_at`: when its cause was accepted (an e-mail's acceptance); orders the room.
    """
    if not txn_id:
        raise ValueError("outbox rows need a stable transaction id")
    return await outbox.enqueue(
        tx,
        txn_id=txn_id,
        room_id=room_id,
        event_type=event_type,
        content=content,
        kind=kind,
        now=to_ms(now),
        sealer=sealer,
        pair_id=pair_id,
        await_member=await_member,
        accepted_at=None if accepted_at is None else to_ms(accepted_at),
    )


class OutboxWorker:
    """Sends pending rows; wakes on `kick()` and polls so other processes' rows go out too."""

    def __init__(
        self,
        db: Database,
        sealer: ContentSealer,
        sender: Sender,
        *,
        poll_seconds: float = 1.0,
        rooms_in_flight: int = ROOMS_IN_FLIGHT,
        on_sent: Callable[[str, str, str], Awaitable[None]] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.sealer = sealer
        self.sender = sender
        self.poll_seconds = poll_seconds
        self.rooms_in_flight = rooms_in_flight
        self.on_sent = on_sent
        self.clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self.retries = 0
        #: Set by a send that could not reach the homeserver; cleared by a probe.
        self.homeserver_down = False
        #: Keep a sent row's content sealed for the self-check (see `bridge.features.selfcheck`).
        self.keep_sent_content = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def kick(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await self.drain()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox pass failed", extra={"error": type(exc).__name__})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            self._wake.clear()

    async def drain(self, limit: int = 50) -> int:
        """Send every row that is due now; returns how many were sent.

        While the homeserver is out of reach nothing is tried but a cheap probe; when it
        answers again every deferred row is due at once instead of sitting out its backoff
        (up to 300 s after a long outage). A failed row holds back the later rows of its
        room, so a pair's posts keep the order in which they were accepted; up to
        `rooms_in_flight` rooms send at the same time.
        """
        if self.homeserver_down:
            if not await self.sender.reachable():
                return 0
            self.homeserver_down = False
            released = await outbox.release_deferred(self.db, to_ms(self.clock()))
            log.info("homeserver answers again; outbox retries now", extra={"rows": released})
        sent = 0
        while True:
            items = await outbox.due(self.db, to_ms(self.clock()), limit, self.sealer)
            if not items:
                return sent
            by_room: dict[str, list[outbox.OutboxItem]] = {}
            for item in items:
                by_room.setdefault(item.room_id, []).append(item)
            lanes = asyncio.Semaphore(self.rooms_in_flight)
            counts = await asyncio.gather(
                *(self._send_room(rows, lanes) for rows in by_room.values())
            )
            sent += sum(counts)
            if self.homeserver_down or not any(counts):
                return sent

    async def _send_room(self, rows: list[outbox.OutboxItem], lanes: asyncio.Semaphore) -> int:
        """Send one room's due rows in order; a failed row holds back the rest of its room."""
        sent = 0
        async with lanes:
            for item in rows:
                if self.homeserver_down:
                    break  # another room found it out of reach: the probe decides
                assert item.content is not None
                if item.await_member and not await self._member_ready(item):
                    delay = await_recheck_seconds(item.attempts)
                    await outbox.defer_awaiting(
                        self.db, item.txn_id, to_ms(self.clock()) + delay * 1000
                    )
                    continue
                try:
                    event_id = await self.sender.send(
                        item.room_id, item.event_type, item.content, item.txn_id
                    )
                except Exception as exc:
                    await self._defer(item, exc)
                    if isinstance(exc, ConnectionError):
                        self.homeserver_down = True
                    break
                await outbox.mark_sent(
                    self.db,
                    item.txn_id,
                    event_id,
                    to_ms(self.clock()),
                    keep_content=self.keep_sent_content,
                )
                sent += 1
                self.sent += 1
                if self.on_sent is not None:
                    await self.on_sent(item.txn_id, item.room_id, event_id)
        return sent

    async def _member_ready(self, item: outbox.OutboxItem) -> bool:
        assert item.await_member is not None
        try:
            return await self.sender.member_ready(item.room_id, item.await_member)
        except Exception as exc:
            log.info("member check failed", extra={"error": type(exc).__name__})
            return False

    async def _defer(self, item: outbox.OutboxItem, exc: Exception) -> None:
        delay = BACKOFF[min(item.attempts, len(BACKOFF) - 1)]
        next_at = to_ms(self.clock()) + delay * 1000
        await outbox.mark_retry(self.db, item.txn_id, next_at, type(exc).__name__)
        self.retries += 1
        log.info(
            "outbox send deferred",
            extra={"txn_id": item.txn_id, "error": type(exc).__name__, "in_s": delay},
        )

    async def member_joined(self, room_id: str, user_id: str) -> None:
        """Release the notices waiting for this member and send them now."""
        if await outbox.release_awaiting(self.db, room_id, user_id, to_ms(self.clock())):
            self.kick()
