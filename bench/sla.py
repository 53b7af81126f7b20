"""SLA timers at scale: rebuilding them at start, the periodic re-scan, and reminder lateness.

On a fresh SQLite database: `BENCH_SLA_CLOCKS` (default 100,000) open clocks of as many
active pairs across 100 therapists, each with its three timers (heads-up, due,
escalation) due over the coming four weeks, written with executemany. Then the bridge's own
start sequence: APScheduler started, `Scheduler.rebuild` reads the pending timers due within
its arming horizon (a day) and arms only those; we time it, count armed against stored and
take the resident memory it added. The baseline is what start used to do: arming every
stored timer, on a scheduler of its own that is thrown away afterwards.

The periodic re-scan is `rebuild` again on the running scheduler: once with nothing new
(every timer in the horizon already armed), once as it runs half a horizon later (the
horizon stretched by half a day: the armed ones re-armed, the next half day's armed anew).

Then, with the horizon's timers still armed, `BENCH_SLA_BURST` (default 2,000) more clocks
whose due reminders fall within two seconds. Each fires through the real path
(`Service.fire_timer`: claim the timer, the SLA core, audit entries and the reminder in
the outbox, one transaction). Lateness is the moment the handler started, and the moment
its transaction committed, minus the due time.

`python -m bench sla` puts the rows in the common table; `python -m bench.sla` runs only
this one.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.table import Row, format_table
from bridge.adapters.render import Renderer
from bridge.adapters.scheduler import HORIZON, Scheduler
from bridge.audit.log import AuditLog
from bridge.config import minimal_config
from bridge.core.sla import Clock, Step
from bridge.features.sla import install_sla
from bridge.sealing import Sealer
from bridge.service import Service
from bridge.store import clocks, open_database, outbox, timers
from bridge.store.base import Database, to_ms

DEFAULT_CLOCKS = 100_000
DEFAULT_BURST = 2_000
THERAPISTS = 100
SUPERVISOR = "@sup:bench"
#: The burst's due times are spread over this span, starting this long after they are made.
BURST_SPAN = timedelta(seconds=2)
BURST_LEAD = timedelta(seconds=2)
BATCH = 10_000
#: The first clock falls due this long after the start, so that its heads-up (an hour before)
#: is still ahead and nothing of the large set fires during the run.
FIRST_DUE = timedelta(hours=2)
SPREAD = timedelta(days=28)
ALL_DAY = dict.fromkeys(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), "00:00-24:00")


def _now() -> datetime:
    return datetime.now(UTC)


def _rss_kib() -> int:
    """This process's resident set size (VmRSS) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def _therapists(db: Database, created: int) -> None:
    await db.executemany(
        "INSERT INTO therapists (user_id, desk_room_id, email, supervisor_id, away_until, "
        "cover_id, created_at) VALUES (?, ?, NULL, NULL, NULL, NULL, ?)",
        [
            *((f"@doc{t}:bench", f"!desk{t}:bench", created) for t in range(THERAPISTS)),
            (SUPERVISOR, "!desk-sup:bench", created),
        ],
    )


async def _open_clocks(
    db: Database, prefix: str, count: int, due: list[datetime], opened: datetime
) -> list[Clock]:
    """`count` active pairs, each with an open clock due at `due[i]` and its three timers."""
    made: list[Clock] = []
    created = to_ms(opened)
    for start in range(0, count, BATCH):
        span = range(start, min(count, start + BATCH))
        batch: list[Clock] = []
        pair_rows = []
        timer_rows = []
        for i in span:
            pair_id = f"{prefix}{i:07d}"
            therapist = f"@doc{i % THERAPISTS}:bench"
            pair_rows.append(
                (
                    pair_id,
                    f"{prefix.upper()}{i:07d}",
                    f"@pat-{prefix}{i}:bench",
                    therapist,
                    f"!room-{prefix}{i}:bench",
                    "active",
                    "default",
                    None,
                    f"tok-{prefix}{i}",
                    "not_required",
                    created,
                )
            )
            at = due[i]
            clock = Clock(
                pair_id=pair_id,
                clock_id=f"c{prefix}{i}",
                therapist_id=therapist,
                policy="default",
                opened_at=opened,
                first_event_id=f"$open-{prefix}{i}",
                first_kind="text",
                due_at=at,
                heads_up_at=at - timedelta(hours=1),
                escalate_at=at + timedelta(hours=1),
            )
            batch.append(clock)
            for step in Step:
                step_at = clock.step_at(step)
                assert step_at is not None
                timer_rows.append(
                    (clock.timer_id(step), step.timer_kind, pair_id, to_ms(step_at), "{}")
                )
        async with db.transaction() as tx:
            await tx.executemany(
                "INSERT INTO pairs (pair_id, label, patient_id, therapist_id, room_id, status, "
                "policy, patient_email_sealed, email_token, consent_state, created_at, removed_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                pair_rows,
            )
            await clocks.insert_many(tx, batch)
            await tx.executemany(
                "INSERT INTO timers (timer_id, kind, pair_id, due_at, payload, fired_at) "
                "VALUES (?, ?, ?, ?, ?, NULL)",
                timer_rows,
            )
        made += batch
    return made


@dataclass
class FireLog:
    """When each timer's handler started and committed (epoch seconds)."""

    expected: int
    times: dict[str, tuple[float, float]] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, timer_id: str, started: float, committed: float) -> None:
        self.times[timer_id] = (started, committed)
        if len(self.times) >= self.expected:
            self.done.set()


def _service(db: Database, fire_log: FireLog) -> tuple[Service, Scheduler]:
    """The service with the SLA installed, and a scheduler that records each firing."""
    cfg = minimal_config(
        practice={"timezone": "UTC", "working_hours": ALL_DAY},
        policies={
            "default": {
                "window": "4h",
                "window_clock": "calendar",
                "heads_up_before": "1h",
                "escalate_after": "1h",
                "supervisors": [SUPERVISOR],
                "patient_notice": "never",
            }
        },
    )
    sealer = Sealer({"k1": bytes(range(32))}, "k1")
    service = Service(
        db=db,
        rest=None,  # type: ignore[arg-type]  # SLA timers never act on rooms directly
        renderer=Renderer(),
        sealer=sealer,
        audit=AuditLog(db, sealer, bytes(range(32, 64))),
        bot_user_id="@confidant:bench",
        clock=_now,
    )
    install_sla(service, cfg)

    async def fire(timer_id: str) -> None:
        started = time.time()
        await service.fire_timer(timer_id)
        fire_log.record(timer_id, started, time.time())

    scheduler = Scheduler(fire)
    service.scheduler = scheduler
    return service, scheduler


async def measure(count: int, burst: int) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-sla-") as tmp:
        db = await open_database(f"sqlite://{Path(tmp) / 'bench.db'}")
        try:
            start = _now()
            await _therapists(db, to_ms(start))
            # Due over the coming four weeks from FIRST_DUE on: nothing fires during the run,
            # and a few percent fall within the arming horizon.
            spread_s = SPREAD.total_seconds()
            due = [
                start + FIRST_DUE + timedelta(seconds=i * spread_s / count) for i in range(count)
            ]
            await _open_clocks(db, "p", count, due, start - timedelta(hours=1))

            fire_log = FireLog(expected=burst)
            _, scheduler = _service(db, fire_log)
            scheduler.start()
            stored = int(
                str(await db.fetchval("SELECT COUNT(*) FROM timers WHERE fired_at IS NULL"))
            )
            t0 = time.perf_counter()
            in_horizon = len(await timers.get_pending(db, due_before=to_ms(_now() + HORIZON)))
            read_s = time.perf_counter() - t0
            gc.collect()
            before = _rss_kib()
            t0 = time.perf_counter()
            armed = await scheduler.rebuild(db)
            rebuild_s = time.perf_counter() - t0
            gc.collect()
            added_mib = (_rss_kib() - before) / 1024
            # Behaviour, not timing: what was armed is what the scheduler holds, and it is
            # the horizon's share of what is stored (the boundary may move by a timer or so).
            if armed != scheduler.armed() or not 0 < armed < stored:
                raise RuntimeError(f"armed {armed} (holds {scheduler.armed()}) of {stored}")
            if abs(armed - in_horizon) > len(Step):
                raise RuntimeError(f"armed {armed}, {in_horizon} due within the horizon")

            t0 = time.perf_counter()
            again = await scheduler.rebuild(db)
            rescan_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            later = await scheduler.rebuild(db, horizon=HORIZON * 1.5)
            rescan_later_s = time.perf_counter() - t0
            # What start did before the horizon: every stored timer armed.
            _, everything = _service(db, FireLog(expected=0))
            everything.start()
            gc.collect()
            before_all = _rss_kib()
            t0 = time.perf_counter()
            armed_all = await everything.rebuild(db, horizon=SPREAD + timedelta(days=1))
            rebuild_all_s = time.perf_counter() - t0
            gc.collect()
            all_mib = (_rss_kib() - before_all) / 1024
            everything.stop()
            del everything
            gc.collect()

            hours = HORIZON.total_seconds() / 3600
            rows += [
                Row(
                    f"rebuild {count:,} clocks: armed {armed:,} of {stored:,} timers",
                    rebuild_s,
                    "s",
                    rebuild_all_s,
                ),
                Row(f"timers armed within {hours:.0f} h / stored", armed / stored * 100, "%"),
                Row(f"reading the {in_horizon:,} due within {hours:.0f} h alone", read_s, "s"),
                Row("rebuild per armed timer", rebuild_s / armed * 1e6, "us"),
                Row("memory added by armed timers", added_mib, "MiB", all_mib),
                Row(
                    "memory per armed timer",
                    added_mib * 1024 * 1024 / armed,
                    "B",
                    all_mib * 1024 * 1024 / armed_all,
                ),
                Row(f"re-scan, nothing new ({again:,} re-armed)", rescan_s, "s", rebuild_s),
                Row(
                    f"re-scan {hours / 2:.0f} h later ({later:,} armed, {later - armed:,} new)",
                    rescan_later_s,
                    "s",
                    rebuild_s,
                ),
            ]

            # The burst: due reminders within BURST_SPAN, on top of everything armed above.
            now = _now()
            first = now + BURST_LEAD
            step = BURST_SPAN / burst
            burst_due = [first + i * step for i in range(burst)]
            made = await _open_clocks(db, "b", burst, burst_due, now - timedelta(hours=4))
            due_at = {c.timer_id(Step.DUE): c.due_at.timestamp() for c in made}
            for clock in made:
                scheduler.arm(clock.timer_id(Step.DUE), clock.due_at)
            try:
                await asyncio.wait_for(fire_log.done.wait(), 120)
            finally:
                scheduler.stop()
            queued = await db.fetchval(
                "SELECT COUNT(*) FROM outbox WHERE kind = 'sla_reminder' AND status = 'pending'"
            )
            assert queued == burst, queued
            fired = fire_log.times
            started = [(fired[t][0] - d) * 1000 for t, d in due_at.items()]
            committed = [(fired[t][1] - d) * 1000 for t, d in due_at.items()]
            span_s = max(e for _, e in fired.values()) - min(s for s, _ in fired.values())
            label = f"{burst:,} reminders due in {BURST_SPAN.total_seconds():.0f} s"
            rows += [
                Row(f"{label}: handler start late p50", statistics.median(started), "ms"),
                Row(f"{label}: handler start late p99", _percentile(started, 99), "ms"),
                Row(f"{label}: committed late p50", statistics.median(committed), "ms"),
                Row(f"{label}: committed late p99", _percentile(committed, 99), "ms"),
                Row(f"{label}: committed late max", max(committed), "ms"),
                Row(f"{label}: committed per second", burst / span_s, "reminders/s"),
            ]
            # Every reminder is in the outbox and readable; the first one checked end to end.
            sample = await db.fetchval(
                "SELECT txn_id FROM outbox WHERE kind = 'sla_reminder' ORDER BY txn_id LIMIT 1"
            )
            item = await outbox.get(db, str(sample), Sealer({"k1": bytes(range(32))}, "k1"))
            assert item is not None and item.content is not None
        finally:
            await db.close()
    return rows


async def run() -> list[Row]:
    """Rows for `python -m bench`; BENCH_SLA_CLOCKS and BENCH_SLA_BURST set the sizes."""
    return await measure(
        int(os.environ.get("BENCH_SLA_CLOCKS", DEFAULT_CLOCKS)),
        int(os.environ.get("BENCH_SLA_BURST", DEFAULT_BURST)),
    )


def main() -> None:
    """Measure and print this benchmark's table."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    print(format_table(asyncio.run(run())))


if __name__ == "__main__":
    main()
