"""Warm standby: only the instance holding a PostgreSQL advisory lock runs the bridge.

    async with active_lock(cfg.database_url) as lock:
        ...run the bridge until a signal, or until `lock.lost` is set...

or, for the whole bridge, `await run_when_active(App(cfg))`.

Each instance opens one dedicated connection and asks for a session-level advisory
lock on it. The first gets it; the others wait in PostgreSQL (no polling). When the
active instance dies, its connection closes, PostgreSQL releases the lock and one
waiting instance takes over. The lock lives exactly as long as that connection, so
the holder watches it: if it drops (network, server restart) `lock.lost` is set and
the instance must stop, because another one may already have taken over.

SQLite has no server to arbitrate: `active_lock` on a SQLite URL holds nothing and
returns at once (a SQLite bridge is one instance on one machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg

log = logging.getLogger(__name__)

#: The advisory lock key: a fixed 64-bit number derived from a name, per database.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"confidant.active").digest()[:8], "big", signed=True)


@dataclass
class ActiveLock:
    """The held lock; `lost` is set if its connection drops while held."""

    key: int
    backend_pid: int | None = None
    lost: asyncio.Event = field(default_factory=asyncio.Event)


def is_postgres(db_url: str) -> bool:
    return db_url.startswith(("postgresql://", "postgres://"))


@contextlib.asynccontextmanager
async def active_lock(
    db_url: str,
    *,
    key: int = LOCK_KEY,
    check_every: float = 5.0,
    on_wait: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[ActiveLock]:
    """Wait until this instance is the active one, hold that role for the block.

    `on_wait` runs once when another instance holds the role, before the wait (the
    standby starts collecting room keys for its device). Leaving the block (or the
    process dying) closes the connection, which releases the lock for a standby.
    """
    lock = ActiveLock(key)
    if not is_postgres(db_url):
        yield lock
        return
    conn: asyncpg.Connection = await asyncpg.connect(db_url)
    watcher: asyncio.Task[None] | None = None
    try:
        lock.backend_pid = conn.get_server_pid()
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
            log.info("standby: another instance is active; waiting for it to stop")
            if on_wait is not None:
                await on_wait()
            # Waits inside PostgreSQL until the holder's session ends.
            await conn.execute("SELECT pg_advisory_lock($1)", key)
        log.info("standby: this instance is now active")
        conn.add_termination_listener(lambda _conn: lock.lost.set())
        watcher = asyncio.create_task(_watch(conn, lock, check_every))
        yield lock
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.close(), 5)
        if not conn.is_closed():
            conn.terminate()


async def _watch(conn: asyncpg.Connection, lock: ActiveLock, every: float) -> None:
    """Set `lock.lost` when the lock's connection stops answering."""
    while not lock.lost.is_set():
        await asyncio.sleep(every)
        try:
            await asyncio.wait_for(conn.fetchval("SELECT 1"), every)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            log.error("standby: lost the connection holding the active lock; stop now")
            lock.lost.set()


class LostActiveLock(RuntimeError):
    """The connection holding the active role dropped; this instance stopped."""


class Runnable(Protocol):
    cfg: Any

    async def run_until_signalled(self) -> None: ...


class Warm(Protocol):
    """What keeps a standby's device supplied with room keys while it waits."""

    async def start(self) -> None: ...
    async def handover(self) -> None: ...


async def run_when_active(app: Runnable, warm: Warm | None = None) -> None:
    """Wait to be the active instance, then run `app` until a signal or until the lock is lost.

    While it waits as a standby, `warm` collects the room keys sent to this instance's
    own device; it hands over (and closes) before the app opens the same crypto store.
    Raises `LostActiveLock` after stopping the app if the lock's connection dropped, so
    the process exits non-zero and its supervisor starts it again, as a standby.
    """
    on_wait = warm.start if warm is not None else None
    try:
        async with active_lock(app.cfg.database_url, on_wait=on_wait) as lock:
            if warm is not None:
                await warm.handover()
            await _run_holding(app, lock)
    finally:
        if warm is not None:
            await warm.handover()  # a signal while still waiting: close the client


async def _run_holding(app: Runnable, lock: ActiveLock) -> None:
    running = asyncio.create_task(app.run_until_signalled())
    lost = asyncio.create_task(lock.lost.wait())
    try:
        done, _ = await asyncio.wait({running, lost}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        # Cancelled from outside: the bridge must stop before the lock is let go, or a
        # standby would become active beside it.
        lost.cancel()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        raise
    if running in done:
        lost.cancel()
        running.result()
        return
    # run_until_signalled stops the bridge cleanly when cancelled.
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
    raise LostActiveLock("lost the active lock; stopped so a standby can take over")
