"""Raw homeserver figures: encrypted send to another client's decrypted receive.

Two independent nio clients in one encrypted room, nothing of Confidant in between.
Other benchmarks call `measure_baseline(hs)` on their own homeserver so that their
figures and these come from the same machine in the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from nio import Event, RoomMessageText

from bench.table import Row
from dev.devhs import DevHomeserver
from tests.support.nio_user import NioUser

MESSAGES = 200
IN_FLIGHT = 8
RECEIVE_TIMEOUT_S = 30.0


@contextlib.asynccontextmanager
async def temporary_homeserver() -> AsyncIterator[DevHomeserver]:
    """A fresh DevHomeserver in a temporary directory, stopped and removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="confidant-bench-") as tmp:
        hs = DevHomeserver(Path(tmp) / "synapse")
        await asyncio.to_thread(hs.start)
        try:
            yield hs
        finally:
            await asyncio.to_thread(hs.stop)


class _Arrivals:
    """When each text body became readable on the receiving client."""

    def __init__(self, room_id: str) -> None:
        self.room_id = room_id
        self._waiting: dict[str, asyncio.Future[float]] = {}

    def expect(self, body: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiting[body] = future
        return future

    def __call__(self, room_id: str, event: Event) -> None:
        if room_id != self.room_id or not isinstance(event, RoomMessageText):
            return
        future = self._waiting.pop(event.body, None)
        if future is not None and not future.done():
            future.set_result(time.perf_counter())


async def _pair(hs: DevHomeserver, workdir: Path) -> tuple[NioUser, NioUser, str]:
    users: list[NioUser] = []
    for role in ("sender", "receiver"):
        localpart = f"bench-{role}-{secrets.token_hex(4)}"
        password = secrets.token_urlsafe(12)
        user_id, _ = await asyncio.to_thread(hs.register_user, localpart, password)
        users.append(await NioUser.create(hs.url, user_id, password, workdir / localpart))
    sender, receiver = users
    room_id = await sender.create_room(invite=[receiver.user_id])
    await sender.wait_joined(room_id, receiver.user_id, timeout=RECEIVE_TIMEOUT_S)
    return sender, receiver, room_id


async def _send_and_receive(sender: NioUser, arrivals: _Arrivals, body: str) -> tuple[float, float]:
    """Send one message; return (sent at, readable at) in perf_counter seconds."""
    arrived = arrivals.expect(body)
    started = time.perf_counter()
    await sender.send_text(arrivals.room_id, body)
    readable_at = await asyncio.wait_for(arrived, RECEIVE_TIMEOUT_S)
    return started, readable_at


async def measure_baseline(
    hs: DevHomeserver, n: int = MESSAGES, in_flight: int = IN_FLIGHT
) -> dict[str, float]:
    """Measure raw E2EE messaging through `hs` with two fresh nio clients.

    Returns `latency_p50_ms` and `latency_p95_ms` (n messages one at a time, from
    before the send until the other client has decrypted it), `sequential_msg_s`,
    and `throughput_msg_s` (n messages with `in_flight` of them between send and
    decrypted receive at any time).
    """
    with tempfile.TemporaryDirectory(prefix="confidant-baseline-") as tmp:
        sender, receiver, room_id = await _pair(hs, Path(tmp))
        try:
            arrivals = _Arrivals(room_id)
            receiver.add_listener(arrivals)
            # Warm-up: the first send creates and shares the Megolm session.
            await _send_and_receive(sender, arrivals, f"warm-up {secrets.token_hex(4)}")

            latencies: list[float] = []
            started = time.perf_counter()
            for i in range(n):
                sent, readable = await _send_and_receive(sender, arrivals, f"seq {i}")
                latencies.append((readable - sent) * 1000)
            sequential_s = time.perf_counter() - started

            gate = asyncio.Semaphore(in_flight)

            async def one(i: int) -> None:
                async with gate:
                    await _send_and_receive(sender, arrivals, f"par {i}")

            started = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(n)))
            parallel_s = time.perf_counter() - started

            undecrypted = len(receiver.undecrypted.get(room_id, []))
            if undecrypted:
                raise RuntimeError(f"{undecrypted} events stayed undecryptable")
        finally:
            await sender.close()
            await receiver.close()

    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "latency_p50_ms": statistics.median(latencies),
        "latency_p95_ms": cuts[94],
        "sequential_msg_s": n / sequential_s,
        "throughput_msg_s": n / parallel_s,
    }


async def run() -> list[Row]:
    """The raw homeserver figures as benchmark rows."""
    async with temporary_homeserver() as hs:
        figures = await measure_baseline(hs)
    return [
        Row("raw e2ee send->decrypt latency p50", figures["latency_p50_ms"], "ms"),
        Row("raw e2ee send->decrypt latency p95", figures["latency_p95_ms"], "ms"),
        Row("raw e2ee one at a time", figures["sequential_msg_s"], "msg/s"),
        Row(f"raw e2ee {IN_FLIGHT} in flight", figures["throughput_msg_s"], "msg/s"),
    ]
