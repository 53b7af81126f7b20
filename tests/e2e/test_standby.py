"""Warm standby on the real PostgreSQL: one active instance, a waiting one takes over."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import asyncpg
import pytest

from bridge.standby import LOCK_KEY, LostActiveLock, active_lock, run_when_active

pytestmark = pytest.mark.integration

HOLDER = """
import asyncio, sys
from bridge.standby import active_lock

async def main():
    async with active_lock(sys.argv[1]) as lock:
        print("active", lock.backend_pid, flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


async def _advisory_locks(url: str) -> list[tuple[int, bool]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT pid, granted FROM pg_locks WHERE locktype = 'advisory'"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
    finally:
        await conn.close()
    return sorted((r["pid"], r["granted"]) for r in rows)


async def _until(check, timeout: float, what: str):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (result := await check()):
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)
    return result


async def test_standby_takes_over_when_the_active_instance_dies(pg_url):
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        pg_url,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert holder.stdout is not None
        line = (await asyncio.wait_for(holder.stdout.readline(), 30)).decode().split()
        assert line[0] == "active"
        first_pid = int(line[1])

        took_over = asyncio.Event()
        release = asyncio.Event()
        standby_pid: list[int | None] = []

        async def standby() -> None:
            async with active_lock(pg_url) as lock:
                standby_pid.append(lock.backend_pid)
                took_over.set()
                await release.wait()

        task = asyncio.create_task(standby())

        async def standby_waiting():
            locks = await _advisory_locks(pg_url)
            return (first_pid, True) in locks and any(not granted for _, granted in locks)

        await _until(standby_waiting, 20, "the standby to queue behind the active instance")
        assert not took_over.is_set()

        holder.send_signal(signal.SIGKILL)
        await holder.wait()
        await asyncio.wait_for(took_over.wait(), 30)
        assert standby_pid[0] is not None and standby_pid[0] != first_pid
        assert await _advisory_locks(pg_url) == [(standby_pid[0], True)]
        release.set()
        await task
        # Leaving the block released the lock.
        assert await _advisory_locks(pg_url) == []
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()


async def test_lock_lost_when_its_connection_is_cut(pg_url):
    async with active_lock(pg_url, check_every=0.2) as lock:
        admin = await asyncpg.connect(pg_url)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", lock.backend_pid)
        finally:
            await admin.close()
        await asyncio.wait_for(lock.lost.wait(), 20)
    # Another instance can take the role at once.
    async with active_lock(pg_url) as second:
        assert not second.lost.is_set()


async def test_sqlite_has_no_standby(tmp_path):
    async with active_lock(f"sqlite://{tmp_path / 'x.db'}") as lock:
        assert lock.key == LOCK_KEY and lock.backend_pid is None


class _FakeBridge:
    """Stands in for App: runs until cancelled and records that it stopped."""

    def __init__(self, url: str) -> None:
        self.cfg = type("Cfg", (), {"database_url": url})()
        self.started = asyncio.Event()
        self.stopped = False

    async def run_until_signalled(self) -> None:
        self.started.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.stopped = True


async def test_run_when_active_stops_the_bridge_when_the_lock_is_lost(pg_url):
    bridge = _FakeBridge(pg_url)
    run = asyncio.create_task(run_when_active(bridge))
    await asyncio.wait_for(bridge.started.wait(), 20)
    ((holder_pid, granted),) = await _advisory_locks(pg_url)
    assert granted
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", holder_pid)
    finally:
        await admin.close()
    with pytest.raises(LostActiveLock):
        await asyncio.wait_for(run, 30)
    assert bridge.stopped
