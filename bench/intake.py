"""Intake: how fast messages in pair rooms become audit entries, against the raw send rate.

On a temporary homeserver, `BENCH_INTAKE_PAIRS` (default 4) pairs are provisioned through the
bridge; each patient and therapist is an independent nio client (`tests.support.nio_user`) in
this process, with its own device. Then, twice, every client sends `BENCH_INTAKE_MESSAGES`
(default 100) encrypted texts into its pair room, `IN_FLIGHT` at a time, as fast as the
homeserver takes them:

1. with the bridge stopped: the raw send rate of these clients through this homeserver (the
   bot's device is still in every room, so the clients encrypt as much as in 2);
2. with the bridge running in its own process (`python -m bridge run`, as a practice runs
   it), after it has caught up with the messages of 1 (that catch-up is measured too).

The figure is the rate at which audit entries for the sent event ids appear in the bridge's
database (read-only, polled every 50 ms), as a ratio to the raw send rate; with the send
rate while the bridge runs, the lag from send to audit entry, and the CPU time per message
of the bridge and of Synapse. Every wait is bounded; a message never audited is counted,
not waited for forever.

`python -m bench intake` puts the rows in the common table; `python -m bench.intake` runs
only this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench._process import AuditWatch, BridgeProcess, cpu_s, synapse_pid, write_config
from bench.baseline import temporary_homeserver
from bench.table import Row, format_table
from bridge.app import App
from dev.devhs import DevHomeserver
from tests.support.bridge_app import bridge_config, notice_containing
from tests.support.nio_user import NioUser

DEFAULT_PAIRS = 4
DEFAULT_MESSAGES = 100
IN_FLIGHT = 4
#: Bound on any single wait: a client up, a member joined, the bridge ready.
WAIT_S = 120.0
#: Bound on waiting for the audit entries of one round once its last send was answered.
AUDIT_WAIT_S = 180.0


def _now() -> datetime:
    return datetime.now(UTC)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def _user(hs: DevHomeserver, role: str) -> tuple[str, str]:
    localpart = f"bench-in-{role}-{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(12)
    user_id, _ = await asyncio.to_thread(hs.register_user, localpart, password)
    return user_id, password


async def _send_round(
    senders: list[tuple[NioUser, str]], messages: int, tag: str
) -> tuple[dict[str, float], float]:
    """Every client sends `messages` texts, IN_FLIGHT at a time; (answered at per event id, s)."""
    answered: dict[str, float] = {}

    async def client(user: NioUser, room_id: str, n: int) -> None:
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def one(i: int) -> None:
            async with gate:
                event_id = await user.send_text(room_id, f"{tag} {n}.{i}")
                answered[event_id] = time.perf_counter()

        await asyncio.gather(*(one(i) for i in range(messages)))

    started = time.perf_counter()
    await asyncio.gather(*(client(u, r, n) for n, (u, r) in enumerate(senders)))
    return answered, time.perf_counter() - started


async def measure(pairs: int, messages: int) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="confidant-bench-intake-") as tmp:
        workdir = Path(tmp)
        async with temporary_homeserver() as hs:
            synapse = synapse_pid(hs)
            bot = await _user(hs, "bot")
            people = [(await _user(hs, "pat"), await _user(hs, "doc")) for _ in range(pairs)]
            data_dir = workdir / "bridge"
            clients: list[NioUser] = []
            senders: list[tuple[NioUser, str]] = []
            try:
                # Provisioning in this process; the measured bridge runs in its own below.
                app = App(bridge_config(hs, *bot, data_dir))
                try:
                    await asyncio.wait_for(app.start(), WAIT_S)
                    assert app.parts is not None
                    for n, (patient, therapist) in enumerate(people):
                        record, _ = await app.parts.pairs.add_pair(patient[0], therapist[0], _now())
                        assert record.room_id is not None
                        for role, (user_id, password) in (("pat", patient), ("doc", therapist)):
                            user = await NioUser.create(
                                hs.url, user_id, password, workdir / f"{role}{n}"
                            )
                            clients.append(user)
                            senders.append((user, record.room_id))
                    # Both members joined and the welcome readable: keys are exchanged.
                    for n, (patient, therapist) in enumerate(people):
                        (pat, room_id), (doc, _) = senders[2 * n], senders[2 * n + 1]
                        await pat.wait_joined(room_id, therapist[0], WAIT_S)
                        await doc.wait_joined(room_id, patient[0], WAIT_S)
                        await pat.wait_for(room_id, notice_containing("Welcome"), WAIT_S)
                finally:
                    await app.stop()

                total = pairs * 2 * messages
                syn0, own0 = cpu_s(synapse), time.process_time()
                raw_sent, raw_s = await _send_round(senders, messages, "raw")
                syn1, own1 = cpu_s(synapse), time.process_time()
                raw_rate = total / raw_s

                config = write_config(hs, *bot, data_dir)
                bridge = BridgeProcess(config, workdir / "bridge.log")
                watch = AuditWatch(data_dir / "confidant.db")
                try:
                    started = time.perf_counter()
                    await bridge.start(WAIT_S)
                    caught_up = await watch.wait_for(set(raw_sent), AUDIT_WAIT_S)
                    catch_up_s = time.perf_counter() - started
                    await asyncio.sleep(1.0)  # let the catch-up's own posts settle

                    cpu0, syn2, own2 = cpu_s(bridge.pid), cpu_s(synapse), time.process_time()
                    started = time.perf_counter()
                    following = asyncio.create_task(watch.follow())
                    try:
                        sent, sent_s = await _send_round(senders, messages, "bridged")
                        audited = await watch.wait_for(set(sent), AUDIT_WAIT_S)
                    finally:
                        following.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await following
                    cpu1, syn3, own3 = cpu_s(bridge.pid), cpu_s(synapse), time.process_time()
                finally:
                    await bridge.stop()
            finally:
                for user in clients:
                    await user.close()

    seen = {e: watch.seen_at[e] for e in sent if e in watch.seen_at}
    audit_s = (max(seen.values()) - started) if seen else float("inf")
    lags = [(seen[e] - sent[e]) * 1000 for e in seen]
    label = f"{pairs} pairs, {total:,} msgs, {IN_FLIGHT} in flight per client"
    rows += [
        Row(f"intake audited/s ({label})", audited / audit_s, "msg/s", raw_rate),
        Row("intake send rate, bridge running", total / sent_s, "msg/s", raw_rate),
        Row("intake messages audited", audited, "msgs", total),
        Row("intake sent -> audit entry p50", statistics.median(lags), "ms"),
        Row("intake sent -> audit entry p99", _percentile(lags, 99), "ms"),
        Row(
            f"intake catch-up after start, {total:,} waiting",
            catch_up_s,
            "s",
        ),
        Row("intake catch-up audited", caught_up, "msgs", total),
    ]
    if cpu0 is not None and cpu1 is not None:
        rows.append(Row("intake bridge CPU per message", (cpu1 - cpu0) / total * 1000, "ms"))
    if None not in (syn0, syn1, syn2, syn3):
        assert syn0 is not None and syn1 is not None and syn2 is not None and syn3 is not None
        rows.append(
            Row(
                "intake Synapse CPU per message",
                (syn3 - syn2) / total * 1000,
                "ms",
                (syn1 - syn0) / total * 1000,
            )
        )
        # The clients run here, on the same cores: when the machine is saturated, what the
        # bridge and its syncs cost is taken from the clients' send rate.
        raw_total = (syn1 - syn0) + (own1 - own0)
        rows.append(
            Row(
                "intake clients' CPU per message",
                (own3 - own2) / total * 1000,
                "ms",
                (own1 - own0) / total * 1000,
            )
        )
        if cpu0 is not None and cpu1 is not None:
            bridged_total = (syn3 - syn2) + (own3 - own2) + (cpu1 - cpu0)
            rows.append(
                Row(
                    "intake CPU per message, all processes",
                    bridged_total / total * 1000,
                    "ms",
                    raw_total / total * 1000,
                )
            )
    return rows


async def run() -> list[Row]:
    """Rows for `python -m bench`; BENCH_INTAKE_PAIRS and BENCH_INTAKE_MESSAGES set the sizes."""
    return await measure(
        int(os.environ.get("BENCH_INTAKE_PAIRS", DEFAULT_PAIRS)),
        int(os.environ.get("BENCH_INTAKE_MESSAGES", DEFAULT_MESSAGES)),
    )


def main() -> None:
    """Measure and print this benchmark's table."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("nio").setLevel(logging.ERROR)
    print(format_table(asyncio.run(run())))


if __name__ == "__main__":
    main()
