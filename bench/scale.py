"""A practice of N pairs on one instance: provisioning cost as it grows, start, memory, idle CPU.

`BENCH_SCALE` (default 1,000; 5,000 is the size the README's sizing speaks of) pairs across
`THERAPISTS` therapists on a temporary homeserver. Patients are created with Synapse's admin
API (no password, so no password hashing in the way) and are invited, not joined: the rooms
cost the bot what invited-only rooms cost it; the intake benchmark measures joined pairs.

1. Provisioning in stages up to each checkpoint (100, 1,000, 5,000, and N): `add_pair` on a
   running bridge in this process, `IN_FLIGHT` at a time, as the admin API or a script
   adding a practice's list would. At each checkpoint, the per-pair cost of the stage's
   last `PROBE` pairs against raw `createRoom` of the same body, `PROBE` rooms by another
   user at the same moment with the same concurrency.
2. The bridge in its own process (`python -m bridge run`): warm restart on the provisioning
   data directory until it logs that Matrix is ready, its resident memory, and its CPU over
   `IDLE_S` seconds of doing nothing (sync long-polls, the scheduler). Then cold start: a new
   data directory (new device, new crypto store, empty database) for the same account.
3. The first sync's size: an initial `/sync` of the bot's account, straight to the homeserver,
   bytes and seconds; the raw figure the starts compare with. And the same with the filter
   and `full_state` the bot's own first sync uses (`SYNC_FILTER`).

Nothing is asserted about timings. `python -m bench scale` puts the rows in the common table;
`python -m bench.scale` runs only this one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from bench._process import BridgeProcess, cpu_s, rss_kib, synapse_pid, write_config
from bench.baseline import temporary_homeserver
from bench.table import Row, format_table
from bridge.adapters.matrix.client import SYNC_FILTER
from bridge.adapters.matrix.rest import MatrixRest
from bridge.app import App
from bridge.provision import display_name, pair_room_body
from dev.devhs import DevHomeserver
from tests.support.bridge_app import bridge_config

DEFAULT_SCALE = 1_000
CHECKPOINTS = (100, 1_000, 5_000)
THERAPISTS = 20
IN_FLIGHT = 4
PROBE = 50
USERS_IN_FLIGHT = 8
IDLE_S = 20.0
#: Bound on the bridge becoming ready (a cold start with thousands of rooms is slow).
READY_S = 900.0
SYNC_TIMEOUT_S = 900.0


def _now() -> datetime:
    return datetime.now(UTC)


async def _register(hs: DevHomeserver, prefix: str, admin: bool = False) -> tuple[str, str, str]:
    localpart = f"{prefix}-{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(12)
    user_id, token = await asyncio.to_thread(hs.register_user, localpart, password, admin)
    return user_id, password, token


async def _create_patients(admin: MatrixRest, server: str, start: int, count: int) -> list[str]:
    """`count` accounts made with the admin API, a few at a time; their ids."""
    gate = asyncio.Semaphore(USERS_IN_FLIGHT)

    async def one(i: int) -> str:
        user_id = f"@bench-pat{i}:{server}"
        async with gate:
            await admin.request("PUT", f"/_synapse/admin/v2/users/{user_id}", {})
        return user_id

    return list(await asyncio.gather(*(one(i) for i in range(start, start + count))))


async def _overlapped(count: int, step: Callable[[int], Awaitable[object]]) -> list[float]:
    """Run `step(i)` for i in range(count), IN_FLIGHT at a time; when each one finished."""
    gate = asyncio.Semaphore(IN_FLIGHT)
    finished: list[float] = []

    async def one(i: int) -> None:
        async with gate:
            await step(i)
            finished.append(time.perf_counter())

    await asyncio.gather(*(one(i) for i in range(count)))
    return sorted(finished)


def _initial_sync(
    hs: DevHomeserver, token: str, *, as_bot: bool = False, since: str | None = None
) -> tuple[int, float, str]:
    """An initial /sync of the account: bytes, seconds and its `next_batch`.

    Without a filter (what a plain client gets), or `as_bot`: with the filter and full
    state of the bot's own first sync; with `since`, as on a warm restart (a stored token
    and full state, which the bot needs because nio keeps no room state across restarts).
    """
    query = {"timeout": "0"}
    if as_bot:
        query |= {"full_state": "true", "filter": json.dumps(SYNC_FILTER)}
    if since is not None:
        query["since"] = since
    url = f"{hs.url}/_matrix/client/v3/sync?{urllib.parse.urlencode(query)}"
    req = urllib.request.Request(url)
    req.add_header("Authorization", f"Bearer {token}")
    started = time.perf_counter()
    with urllib.request.urlopen(req, timeout=SYNC_TIMEOUT_S) as resp:
        body = resp.read()
    elapsed = time.perf_counter() - started
    return len(body), elapsed, str(json.loads(body)["next_batch"])


async def _idle(bridge: BridgeProcess) -> tuple[float | None, int]:
    """The bridge's CPU share over IDLE_S seconds of nothing to do, and its RSS after (KiB)."""
    cpu0 = cpu_s(bridge.pid)
    await asyncio.sleep(IDLE_S)
    cpu1 = cpu_s(bridge.pid)
    share = None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) / IDLE_S * 100
    return share, rss_kib(bridge.pid)


def _per_ms(before: float | None, after: float | None, count: int) -> float:
    """CPU milliseconds per item between two readings (NaN when a reading failed)."""
    if before is None or after is None:
        return float("nan")
    return (after - before) / count * 1000


async def measure(scale: int) -> list[Row]:
    rows: list[Row] = []
    checkpoints = sorted({c for c in CHECKPOINTS if c < scale} | {scale})
    with tempfile.TemporaryDirectory(prefix="confidant-bench-scale-") as tmp:
        workdir = Path(tmp)
        async with temporary_homeserver() as hs:
            _, _, admin_token = await _register(hs, "bench-admin", admin=True)
            bot_id, bot_password, bot_token = await _register(hs, "bench-bot")
            raw_id, _, raw_token = await _register(hs, "bench-raw")
            therapists = [(await _register(hs, "bench-doc"))[0] for _ in range(THERAPISTS)]
            admin = MatrixRest(hs.url, admin_token)
            raw = MatrixRest(hs.url, raw_token)
            synapse = synapse_pid(hs)
            provision_dir = workdir / "bridge"
            app = App(bridge_config(hs, bot_id, bot_password, provision_dir))
            try:
                await app.start()
                assert app.parts is not None
                manager = app.parts.pairs
                for therapist in therapists:
                    await manager.ensure_therapist(therapist, _now())
                creator_power = await manager.creator_has_power()
                made = 0
                for checkpoint in checkpoints:
                    count = checkpoint - made
                    patients = await _create_patients(admin, hs.server_name, made, count)

                    async def add(i: int, patients: list[str] = patients) -> None:
                        therapist = therapists[i % THERAPISTS]
                        _, created = await manager.add_pair(patients[i], therapist, _now())
                        if not created:
                            raise RuntimeError("add_pair found an existing pair in a fresh run")

                    started = time.perf_counter()
                    syn0, own0 = cpu_s(synapse), time.process_time()
                    finished = await _overlapped(count, add)
                    syn1, own1 = cpu_s(synapse), time.process_time()
                    stage_s = time.perf_counter() - started
                    made = checkpoint
                    probe = min(PROBE, count)
                    tail_start = finished[-probe - 1] if count > probe else started
                    ours_ms = (finished[-1] - tail_start) / probe * 1000

                    async def raw_create(i: int, patients: list[str] = patients) -> None:
                        therapist = therapists[i % THERAPISTS]
                        await raw.create_room(
                            pair_room_body(
                                bot_is_creator=creator_power,
                                bot=raw_id,
                                patient=patients[i],
                                therapist=therapist,
                                name=f"Therapy · {display_name(therapist)} · RAW{i:05d}",
                                pair_id=f"raw-{secrets.token_hex(8)}",
                                federate=False,
                            )
                        )

                    started = time.perf_counter()
                    syn2 = cpu_s(synapse)
                    await _overlapped(probe, raw_create)
                    syn3 = cpu_s(synapse)
                    raw_ms = (time.perf_counter() - started) / probe * 1000
                    rows += [
                        Row(
                            f"scale add_pair up to {checkpoint:,} pairs ({count:,} in the stage)",
                            count / stage_s,
                            "pairs/s",
                            1000 / raw_ms,
                        ),
                        Row(
                            f"scale add_pair cost at {checkpoint:,} pairs (last {probe})",
                            ours_ms,
                            "ms/pair",
                            raw_ms,
                        ),
                        # Who the time goes to: the homeserver's CPU for each pair (against a
                        # raw createRoom's), and the bridge's own (it runs in this process).
                        Row(
                            f"scale Synapse CPU per pair, stage to {checkpoint:,}",
                            _per_ms(syn0, syn1, count),
                            "ms/pair",
                            _per_ms(syn2, syn3, probe),
                        ),
                        Row(
                            f"scale bridge CPU per pair, stage to {checkpoint:,}",
                            (own1 - own0) / count * 1000,
                            "ms/pair",
                        ),
                    ]
            finally:
                await app.stop()
                await admin.close()
                await raw.close()

            rooms = scale + THERAPISTS
            sync_bytes, sync_s, _ = await asyncio.to_thread(_initial_sync, hs, bot_token)
            bot_bytes, bot_s, since = await asyncio.to_thread(
                _initial_sync, hs, bot_token, as_bot=True
            )
            warm_bytes, warm_sync_s, _ = await asyncio.to_thread(
                _initial_sync, hs, bot_token, as_bot=True, since=since
            )

            config = write_config(hs, bot_id, bot_password, provision_dir)
            warm = BridgeProcess(config, workdir / "warm.log")
            try:
                warm_s = await warm.start(READY_S)
                warm_rss = rss_kib(warm.pid)
                idle_cpu, idle_rss = await _idle(warm)
            finally:
                await warm.stop()

            cold_config = write_config(hs, bot_id, bot_password, workdir / "cold")
            cold = BridgeProcess(cold_config, workdir / "cold.log")
            try:
                cold_s = await cold.start(READY_S)
                cold_rss = rss_kib(cold.pid)
            finally:
                await cold.stop()

    rows += [
        Row(f"scale first sync, {rooms:,} rooms (raw /sync)", sync_bytes / 1024 / 1024, "MiB"),
        Row(
            f"scale bot's first sync (its filter), {rooms:,} rooms (raw /sync)",
            bot_bytes / 1024 / 1024,
            "MiB",
            sync_bytes / 1024 / 1024,
        ),
        Row(f"scale bot's first sync (its filter) time, {rooms:,} rooms", bot_s, "s", sync_s),
        Row(
            f"scale bot's first sync after a restart (since + full state), {rooms:,} rooms",
            warm_sync_s,
            "s",
            sync_s,
        ),
        Row(
            f"scale bot's first sync after a restart, size, {rooms:,} rooms",
            warm_bytes / 1024 / 1024,
            "MiB",
            sync_bytes / 1024 / 1024,
        ),
        Row(f"scale cold start to ready, {rooms:,} rooms", cold_s, "s", sync_s),
        Row(f"scale warm restart to ready, {rooms:,} rooms", warm_s, "s", sync_s),
        Row(f"scale bridge RSS after warm restart, {rooms:,} rooms", warm_rss / 1024, "MiB"),
        Row(f"scale bridge RSS after cold start, {rooms:,} rooms", cold_rss / 1024, "MiB"),
        Row(f"scale bridge RSS after {IDLE_S:.0f} s idle", idle_rss / 1024, "MiB"),
    ]
    if idle_cpu is not None:
        rows.append(Row(f"scale bridge idle CPU, {rooms:,} rooms", idle_cpu, "% of a core"))
    return rows


async def run() -> list[Row]:
    """Rows for `python -m bench`; BENCH_SCALE sets the number of pairs."""
    return await measure(int(os.environ.get("BENCH_SCALE", DEFAULT_SCALE)))


def main() -> None:
    """Measure and print this benchmark's table."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("nio").setLevel(logging.ERROR)
    print(format_table(asyncio.run(run())))


if __name__ == "__main__":
    main()
