"""Provisioning pairs through the real bridge, and what a practice's size costs at start.

Against a temporary homeserver: `add_pair` on a running `App` (createRoom, pair row, welcome
and desk notices in the outbox, audit entry) against a raw `createRoom` of the same body
by another user in the same run, first for 100 pairs, then for `BENCH_PAIRS` (default
300, one pair at a time; a smaller count when the first run predicts more than ~5 minutes;
`bench.scale` measures a practice of thousands, with requests overlapping). Users and the ten
therapists' desk rooms are made before the clock starts. Then the bot's cold start (new
data directory: new device, new crypto store, empty database) and warm restart (same data
directory) until the first sync has been handed to the service, and the resident memory
that cold start added to this process.

`python -m bench pairs` puts the rows in the common table; `python -m bench.pairs` runs
only this one.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.baseline import temporary_homeserver
from bench.table import Row, format_table
from bridge.adapters.matrix.rest import MatrixRest
from bridge.app import App
from bridge.provision import display_name, pair_room_body
from dev.devhs import DevHomeserver
from tests.support.bridge_app import bridge_config

FIRST_PAIRS = 100
DEFAULT_PAIRS = 300
FALLBACK_PAIRS = 300
THERAPISTS = 10
#: Above this predicted provisioning time the large run measures FALLBACK_PAIRS instead.
BUDGET_S = 300.0
REGISTER_IN_FLIGHT = 4
PREDICT_BLOCK = 10
SYNC_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class User:
    user_id: str
    password: str
    access_token: str


def _now() -> datetime:
    return datetime.now(UTC)


def _rss_kib() -> int:
    """This process's resident set size (VmRSS) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


async def _register(hs: DevHomeserver, prefix: str, count: int) -> list[User]:
    """Register `count` users with the shared-secret API, a few at a time."""
    gate = asyncio.Semaphore(REGISTER_IN_FLIGHT)

    async def one(i: int) -> User:
        localpart = f"{prefix}{i}-{secrets.token_hex(3)}"
        password = secrets.token_urlsafe(12)
        async with gate:
            user_id, token = await asyncio.to_thread(hs.register_user, localpart, password)
        return User(user_id, password, token)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def _timed_each(count: int, step: Callable[[int], Awaitable[object]]) -> list[float]:
    """Run `step(i)` for i in range(count) one after another; seconds each."""
    durations: list[float] = []
    for i in range(count):
        started = time.perf_counter()
        await step(i)
        durations.append(time.perf_counter() - started)
    return durations


async def _raw_create(
    rest: MatrixRest,
    creator: str,
    patients: list[User],
    therapists: list[User],
    creator_power: bool,
) -> list[float]:
    """createRoom with the pair body, straight to the homeserver."""

    async def step(i: int) -> None:
        therapist = therapists[i % len(therapists)].user_id
        await rest.create_room(
            pair_room_body(
                bot_is_creator=creator_power,
                bot=creator,
                patient=patients[i].user_id,
                therapist=therapist,
                name=f"Therapy · {display_name(therapist)} · RAW{i:04d}",
                pair_id=f"raw-{secrets.token_hex(8)}",
                federate=False,
            )
        )

    return await _timed_each(len(patients), step)


async def _bridge_create(app: App, patients: list[User], therapists: list[User]) -> list[float]:
    """add_pair through the running bridge, as the CLI and admin API do."""
    assert app.parts is not None
    manager = app.parts.pairs

    async def step(i: int) -> None:
        therapist = therapists[i % len(therapists)].user_id
        _, created = await manager.add_pair(patients[i].user_id, therapist, _now())
        if not created:
            raise RuntimeError("add_pair found an existing pair in a fresh run")

    return await _timed_each(len(patients), step)


def _predict_seconds(durations: list[float], rooms_before: int, count: int) -> float:
    """Predicted time for `count` more pairs when each add_pair grows with the bot's rooms.

    Fits seconds per pair against the number of rooms the bot was in (add_pair looks through
    them for an orphan room), then sums the line over the rooms still to come. The fit uses
    medians of blocks of ten so that a stray slow call (a sync burst) does not tilt it.
    """
    first_room = rooms_before - len(durations)
    xs: list[float] = []
    ys: list[float] = []
    for start in range(0, len(durations) - PREDICT_BLOCK + 1, PREDICT_BLOCK):
        xs.append(first_room + start + PREDICT_BLOCK / 2)
        ys.append(statistics.median(durations[start : start + PREDICT_BLOCK]))
    slope, intercept = statistics.linear_regression(xs, ys)
    slope = max(slope, 0.0)
    return sum(intercept + slope * (rooms_before + k) for k in range(count))


async def _start_until_synced(app: App) -> float:
    """Seconds from App.start() until the bot's first sync was handed to the service."""
    started = time.perf_counter()
    await app.start()
    assert app.bot is not None
    await asyncio.wait_for(app.bot.first_sync_done.wait(), SYNC_TIMEOUT_S)
    return time.perf_counter() - started


async def _joined_rooms(rest: MatrixRest, token: str) -> int:
    data = await rest.request("GET", "/_matrix/client/v3/joined_rooms", token=token)
    return len(data.get("joined_rooms", []))


def _pairs_per_s(durations: list[float]) -> float:
    return len(durations) / sum(durations)


async def measure(
    pairs: int = DEFAULT_PAIRS,
) -> list[Row]:
    """Provision FIRST_PAIRS and then `pairs` pairs, then cold and warm starts; the rows."""
    rows: list[Row] = []
    async with temporary_homeserver() as hs:
        with tempfile.TemporaryDirectory(prefix="confidant-bench-pairs-") as tmp:
            workdir = Path(tmp)
            (bot,) = await _register(hs, "bench-bot", 1)
            (raw,) = await _register(hs, "bench-raw", 1)
            therapists = await _register(hs, "bench-doc", THERAPISTS)
            patients = await _register(hs, "bench-pat", FIRST_PAIRS)

            cfg = bridge_config(hs, bot.user_id, bot.password, workdir / "provision")
            app = App(cfg)
            await app.start()
            rest = MatrixRest(hs.url, raw.access_token)
            try:
                assert app.parts is not None
                manager = app.parts.pairs
                for therapist in therapists:
                    await manager.ensure_therapist(therapist.user_id, _now())
                creator_power = await manager.creator_has_power()

                raw_first = await _raw_create(
                    rest, raw.user_id, patients, therapists, creator_power
                )
                ours_first = await _bridge_create(app, patients, therapists)
                rows += [
                    Row(
                        f"add_pair, {FIRST_PAIRS} pairs, {THERAPISTS} therapists",
                        _pairs_per_s(ours_first),
                        "pairs/s",
                        _pairs_per_s(raw_first),
                    ),
                ]

                rooms = await _joined_rooms(rest, bot.access_token)
                predicted = _predict_seconds(ours_first, rooms, pairs)
                count = pairs if predicted <= BUDGET_S else min(pairs, FALLBACK_PAIRS)
                label = f"add_pair, {count} more pairs"
                if count < pairs:
                    label += f" ({pairs} predicted {predicted / 60:.0f} min)"
                more = await _register(hs, "bench-pat-more", count)
                raw_more = await _raw_create(rest, raw.user_id, more, therapists, creator_power)
                ours_more = await _bridge_create(app, more, therapists)
                last_tenth = ours_more[-max(1, count // 10) :]
                rows += [
                    Row(label, _pairs_per_s(ours_more), "pairs/s", _pairs_per_s(raw_more)),
                    Row(
                        f"add_pair, last {len(last_tenth)} of them",
                        statistics.median(last_tenth) * 1000,
                        "ms/pair",
                        statistics.median(raw_more[-len(last_tenth) :]) * 1000,
                    ),
                ]
                rooms = await _joined_rooms(rest, bot.access_token)
            finally:
                await app.stop()

            # A new installation of the bot for an account that is already in every room.
            cold_cfg = bridge_config(hs, bot.user_id, bot.password, workdir / "cold")
            gc.collect()
            rss_before = _rss_kib()
            cold = App(cold_cfg)
            try:
                cold_s = await _start_until_synced(cold)
                rss_after = _rss_kib()
            finally:
                await cold.stop()
            warm = App(cold_cfg)
            try:
                warm_s = await _start_until_synced(warm)
            finally:
                await warm.stop()
                await rest.close()
            rows += [
                Row(f"bot cold start to first sync, {rooms} rooms", cold_s, "s"),
                Row(f"bot warm restart to first sync, {rooms} rooms", warm_s, "s", cold_s),
                Row(
                    f"RSS added by cold start, {rooms} rooms",
                    (rss_after - rss_before) / 1024,
                    "MiB",
                ),
                Row("process RSS after cold start", rss_after / 1024, "MiB"),
            ]
    return rows


async def run() -> list[Row]:
    """Rows for `python -m bench`; BENCH_PAIRS sets the large run's count."""
    return await measure(int(os.environ.get("BENCH_PAIRS", DEFAULT_PAIRS)))


def main() -> None:
    """Measure and print this benchmark's table."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("nio").setLevel(logging.ERROR)
    print(format_table(asyncio.run(run())))


if __name__ == "__main__":
    main()
