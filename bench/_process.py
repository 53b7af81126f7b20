"""What the sizing benchmarks share: the bridge in its own process, and /proc readings.

The bridge runs as a practice runs it (`python -m bridge run -c FILE`), so its CPU time and
resident memory are its own, not mixed with the benchmark's clients in one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from bridge.config import minimal_config_dict
from dev.devhs import DevHomeserver
from tests.support.bridge_app import bridge_config_dict

#: The log line the bridge writes once the first sync is handed over and the outbox runs.
READY_LINE = b"matrix ready"
STOP_TIMEOUT_S = 30.0


def rss_kib(pid: int | None = None) -> int:
    """A process's resident set size (VmRSS) in KiB (this process by default)."""
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid or 'self'}")


def cpu_s(pid: int | None) -> float | None:
    """A process's user + system CPU time so far (None when it cannot be read)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def synapse_pid(hs: DevHomeserver) -> int | None:
    """The pid of the process running `hs` (found by its config path on the command line)."""
    wanted = str(hs.config_path).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if wanted in (entry / "cmdline").read_bytes():
                return int(entry.name)
        except OSError:
            continue
    return None


def write_config(
    hs: DevHomeserver, bot_user_id: str, bot_password: str, data_dir: Path, **overrides: Any
) -> Path:
    """A YAML config for the bridge's command line next to `data_dir`; its path."""
    tree = minimal_config_dict(
        **bridge_config_dict(hs, bot_user_id, bot_password, data_dir, **overrides)
    )
    path = data_dir.parent / f"{data_dir.name}.yaml"
    path.write_text(yaml.safe_dump(tree))
    path.chmod(0o600)
    return path


class BridgeProcess:
    """`python -m bridge run` on a config file; started, waited for, stopped with SIGTERM."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    async def start(self, ready_within: float) -> float:
        """Start the bridge; seconds from exec until it logged that Matrix is ready."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        started = time.perf_counter()
        with self.log.open("ab") as out:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *("-m", "bridge", "run", "-c", str(self.config)),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        deadline = started + ready_within
        while READY_LINE not in self.log.read_bytes()[offset:]:
            if self._proc.returncode is not None:
                raise RuntimeError(
                    f"the bridge exited with {self._proc.returncode}; see {self.log}"
                )
            if time.perf_counter() > deadline:
                await self.stop()
                raise RuntimeError(f"the bridge was not ready within {ready_within:.0f} s")
            await asyncio.sleep(0.05)
        return time.perf_counter() - started

    async def stop(self) -> None:
        """SIGTERM (the bridge stops cleanly), SIGKILL if it lingers."""
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


class AuditWatch:
    """When each awaited event id first appears in the audit log of a SQLite database.

    Reads the bridge's database read-only, from the last sequence number seen on, so
    each look costs only what is new.
    """

    def __init__(self, db_path: Path) -> None:
        self._db_path = db_path
        self._after = 0
        self.seen_at: dict[str, float] = {}

    def _read(self) -> list[tuple[int, str | None]]:
        uri = f"file:{self._db_path}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as conn:
            rows = conn.execute(
                "SELECT seq, event_id FROM audit_entries WHERE seq > ? ORDER BY seq",
                (self._after,),
            ).fetchall()
        return [(int(seq), event_id) for seq, event_id in rows]

    async def poll(self) -> None:
        """Record what appeared since the last look."""
        rows = await asyncio.to_thread(self._read)
        now = time.perf_counter()
        for seq, event_id in rows:
            self._after = max(self._after, seq)
            if event_id is not None:
                self.seen_at.setdefault(event_id, now)

    async def follow(self, every: float = 0.05) -> None:
        """Keep looking until cancelled: run beside the sends, or every entry would be
        timed by the first look after the last send."""
        while True:
            await self.poll()
            await asyncio.sleep(every)

    async def wait_for(self, event_ids: set[str], within: float, every: float = 0.05) -> int:
        """Poll until every id was seen or `within` passed; how many of them were seen."""
        deadline = time.perf_counter() + within
        while True:
            await self.poll()
            seen = len(event_ids & self.seen_at.keys())
            if seen == len(event_ids) or time.perf_counter() > deadline:
                return seen
            await asyncio.sleep(every)
