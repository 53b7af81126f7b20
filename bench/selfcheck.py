"""The self-check's cost per post: the running bridge with its witness against without it.

On a temporary homeserver, two fresh bots (new data directories) each get one pair whose
patient reads with a nio client; the therapist has no device. Each bot posts `POSTS`
notices through its outbox one at a time, the next once the patient has read the last (the
same pacing with and without the witness, which works alongside), then `POSTS` at once.
Per post: the time from queueing until the patient has read it, the CPU time of this
process (bridge, witness, patient client) and of Synapse, the burst's time until the
homeserver has taken every post, and with the witness the time until it has read them;
the raw homeserver's send-to-decrypt latency of two plain clients, measured in the same
run, is the baseline for the witness's reading. The patient must read every post, or the
run fails.

Every wait is bounded, so the run always ends. `python -m bench selfcheck` puts the rows in
the common table; `python -m bench.selfcheck` runs only this one.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from nio import Event, RoomMessageNotice

from bench._process import cpu_s, synapse_pid
from bench.baseline import measure_baseline, temporary_homeserver
from bench.table import Row, format_table
from bridge.app import App
from bridge.features.selfcheck import install_selfcheck
from bridge.outbox import enqueue_content
from bridge.store import witness as checks
from dev.devhs import DevHomeserver
from tests.support.bridge_app import bridge_config
from tests.support.nio_user import NioUser

POSTS = 60
WARM_UP = 3
#: Bound on any single wait (a post sent, read, the bridge up).
WAIT_S = 60.0
BASELINE_MESSAGES = 50


@dataclass(frozen=True)
class Figures:
    read_ms: float
    verified_ms: float | None
    cpu_ms: float
    synapse_cpu_ms: float | None
    burst_ms: float
    burst_verified_ms: float | None


def _now() -> datetime:
    return datetime.now(UTC)


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll `check()` until true, within WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while not await check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


class _Sent:
    """When each txn id was answered by the homeserver (hooked on the outbox)."""

    def __init__(self, app: App) -> None:
        assert app.outbox is not None
        self.at: dict[str, float] = {}
        previous = app.outbox.on_sent

        async def on_sent(txn_id: str, room_id: str, event_id: str) -> None:
            self.at[txn_id] = time.perf_counter()
            if previous is not None:
                await previous(txn_id, room_id, event_id)

        app.outbox.on_sent = on_sent


async def _post(app: App, room_id: str, txn_id: str) -> None:
    assert app.parts is not None and app.outbox is not None
    async with app.parts.db.transaction() as tx:
        await enqueue_content(
            tx,
            app.parts.sealer,
            room_id,
            "m.room.message",
            {"msgtype": "m.notice", "body": f"bench {txn_id}"},
            txn_id,
            "bench",
            _now(),
        )
    app.outbox.kick()


async def _read_by_witness(app: App, txn_id: str) -> bool:
    assert app.parts is not None
    check = await checks.get(app.parts.db, txn_id)
    if check is None:
        return False
    if check.state is checks.CheckState.READABLE:
        return True
    if check.state is not checks.CheckState.WAITING:
        raise RuntimeError(f"post {txn_id} ended {check.state.value}, not read")
    return False


def _notice(predicate: Callable[[str], bool]) -> Callable[[Event], bool]:
    return lambda e: isinstance(e, RoomMessageNotice) and predicate(e.body)


async def _measure(hs: DevHomeserver, workdir: Path, witness: bool) -> Figures:
    tag = "on" if witness else "off"
    synapse = synapse_pid(hs)
    users = {}
    for role in ("bot", "patient", "therapist"):
        localpart = f"bench-sc-{tag}-{role}-{secrets.token_hex(3)}"
        password = secrets.token_urlsafe(12)
        user_id, _ = await asyncio.to_thread(hs.register_user, localpart, password)
        users[role] = (user_id, password)
    cfg = bridge_config(
        hs,
        *users["bot"],
        workdir / f"bot-{tag}",
        bot={"witness": {"enabled": witness}},
    )
    app = App(cfg, features=[install_selfcheck])
    patient = await NioUser.create(hs.url, *users["patient"], workdir / f"patient-{tag}")
    try:
        await asyncio.wait_for(app.start(), WAIT_S)
        assert app.matrix is not None and app.parts is not None and app.service is not None
        await asyncio.wait_for(app.matrix.ready.wait(), WAIT_S)
        if witness:
            selfcheck = app.selfcheck
            assert selfcheck is not None

            async def witness_up() -> bool:
                return selfcheck.state == "up"

            await _until(witness_up, "the witness to come up")
        sent = _Sent(app)
        record, _ = await app.parts.pairs.add_pair(
            users["patient"][0], users["therapist"][0], _now()
        )
        room = record.room_id
        assert room is not None
        await patient.wait_for(room, _notice(lambda body: "Welcome" in body), WAIT_S)

        async def read_by_patient(txn_id: str) -> None:
            body = f"bench {txn_id}"
            await patient.wait_for(room, _notice(lambda text: text == body), WAIT_S)

        async def one(txn_id: str) -> float:
            """Queue one post; the time until the patient has read it."""
            started = time.perf_counter()
            await _post(app, room, txn_id)
            await read_by_patient(txn_id)
            return time.perf_counter() - started

        async def all_checked(prefix: str) -> None:
            if not witness:
                return

            async def done() -> bool:
                for n in range(POSTS):
                    if not await _read_by_witness(app, f"{prefix}.{n:03d}"):
                        return False
                return True

            await _until(done, f"the witness to read every {prefix} post")

        for n in range(WARM_UP):
            await one(f"warm.{n}")
        cpu0, syn0 = time.process_time(), cpu_s(synapse)
        # The same pacing with and without the witness: the next post once the patient has
        # read the last; the witness works alongside, as it would in a practice.
        timings = [await one(f"seq.{n:03d}") for n in range(POSTS)]
        await all_checked("seq")
        cpu1, syn1 = time.process_time(), cpu_s(synapse)
        verified: float | None = None
        if witness:
            lags = await app.parts.db.fetch(
                "SELECT c.checked_at - o.created_at AS ms FROM witness_checks c "
                "JOIN outbox o ON o.txn_id = c.txn_id WHERE c.txn_id LIKE 'seq.%'"
            )
            verified = statistics.median(int(row["ms"]) for row in lags)

        started = time.perf_counter()
        for n in range(POSTS):
            await _post(app, room, f"burst.{n:03d}")
        last = f"burst.{POSTS - 1:03d}"

        async def all_sent() -> bool:
            return last in sent.at

        await _until(all_sent, "the burst to be sent")
        burst_s = sent.at[last] - started
        await all_checked("burst")
        burst_checked_s = time.perf_counter() - started
        await read_by_patient(last)
        undecrypted = len(patient.undecrypted.get(room, []))
        if undecrypted:
            raise RuntimeError(f"{undecrypted} posts stayed unreadable for the patient")
    finally:
        await patient.close()
        await app.stop()
    return Figures(
        read_ms=statistics.median(timings) * 1000,
        verified_ms=verified,
        cpu_ms=(cpu1 - cpu0) / POSTS * 1000,
        synapse_cpu_ms=None if syn0 is None or syn1 is None else (syn1 - syn0) / POSTS * 1000,
        burst_ms=burst_s / POSTS * 1000,
        burst_verified_ms=burst_checked_s / POSTS * 1000 if witness else None,
    )


async def run() -> list[Row]:
    """The self-check's figures as benchmark rows (witness off is the baseline)."""
    with tempfile.TemporaryDirectory(prefix="confidant-bench-selfcheck-") as tmp:
        async with temporary_homeserver() as hs:
            raw = await measure_baseline(hs, n=BASELINE_MESSAGES)
            off = await _measure(hs, Path(tmp), witness=False)
            on = await _measure(hs, Path(tmp), witness=True)
    rows = [
        Row("selfcheck queued -> read by patient", on.read_ms, "ms", off.read_ms),
        Row("selfcheck bridge CPU per post", on.cpu_ms, "ms", off.cpu_ms),
    ]
    if on.synapse_cpu_ms is not None and off.synapse_cpu_ms is not None:
        rows.append(
            Row("selfcheck Synapse CPU per post", on.synapse_cpu_ms, "ms", off.synapse_cpu_ms)
        )
    rows.append(Row(f"selfcheck {POSTS} at once, sent per post", on.burst_ms, "ms", off.burst_ms))
    assert on.verified_ms is not None and on.burst_verified_ms is not None
    rows += [
        Row("selfcheck queued -> read by witness", on.verified_ms, "ms", raw["latency_p50_ms"]),
        Row(f"selfcheck {POSTS} at once, read by witness", on.burst_verified_ms, "ms/post"),
    ]
    return rows


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("nio").setLevel(logging.ERROR)
    print(format_table(asyncio.run(run())))
