"""A weekend's held reminders at Monday's opening: how late each reaches its desk room.

A practice closed over the weekend holds every reminder that fell due until it opens;
the SLA spreads them after the opening by when they fell due (`held_until`), and the
outbox posts them. Here `BENCH_BURST` reminders (default 1,500; the issue's practice is
5,000) are held for ten therapists' desk rooms on a temporary homeserver. Their due
times are spread as a weekend's would be, compressed so the reminders arrive at the same
rate per second as 5,000 would: the figures of a smaller run stand for the real burst.
The bridge starts with them armed; each reminder's lateness is the time from its held
time to the moment the outbox had posted it (p50, p99, max). The drain rate is compared
with the raw encrypted send rate of two nio clients on the same homeserver, same run.

`python -m bench sla_burst` puts the rows in the common table.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.baseline import measure_baseline, temporary_homeserver
from bench.table import Row
from bridge.app import App
from bridge.config import Config
from bridge.core.model import Kind, Pair
from bridge.core.sla import Step, on_patient_message
from bridge.core.sla.hours import HOLD_COMPRESSION, HOLD_REACH
from bridge.features.sla import sla_policy, working_calendar
from bridge.store import clocks, open_database, pairs, timers
from bridge.store.base import to_ms
from dev.devhs import DevHomeserver
from tests.support.bridge_app import bridge_config, notice_containing
from tests.support.nio_user import NioUser

BURST = int(os.environ.get("BENCH_BURST", "1500"))
#: The practice the figures stand for: its weekend holds this many reminders.
PRACTICE_BURST = 5000
THERAPISTS = 10
#: A weekend: Friday 17:30 to Monday 09:00.
WEEKEND = timedelta(hours=63, minutes=30)
#: Time to restart the bridge before the first held reminder is due.
LEAD = timedelta(seconds=20)
DRAIN_TIMEOUT_S = 900.0
ALL_DAY = dict.fromkeys(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), "00:00-24:00")


async def _user(hs: DevHomeserver, prefix: str, workdir: Path) -> NioUser:
    localpart = f"{prefix}-{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(12)
    user_id, _ = await asyncio.to_thread(hs.register_user, localpart, password)
    return await NioUser.create(hs.url, user_id, password, workdir / localpart)


def _held_times(opening: datetime, count: int) -> list[datetime]:
    """When each of `count` weekend reminders goes out after `opening` (as `held_until`).

    Due times are spread evenly over the weekend, compressed by `count / PRACTICE_BURST`
    so that the rate per second after the opening is the real practice's.
    """
    window = WEEKEND * (count / PRACTICE_BURST)
    start = opening - window
    out = []
    for n in range(count):
        due = start + window * (n / count)
        since = due - (opening - HOLD_REACH)
        # The due times' compression carries over: the held spread shrinks with them.
        out.append(opening + min(max(since, timedelta(0)), HOLD_REACH) / HOLD_COMPRESSION)
    return out


async def _seed(cfg: Config, desks: list[str], opening: datetime) -> None:
    """Pairs, open clocks past due, and their due timers held until after `opening`."""
    db = await open_database(cfg.database_url)
    try:
        policy = sla_policy("default", cfg.policies["default"], cfg.practice)
        cal = working_calendar(cfg.practice)
        held = _held_times(opening, BURST)
        batch = []
        async with db.transaction() as tx:
            for n, at in enumerate(held):
                therapist = desks[n % len(desks)]
                record = await pairs.create(
                    tx,
                    patient_id=f"@patient{n}:bench",
                    therapist_id=therapist,
                    now=to_ms(opening - WEEKEND),
                    room_id=f"!bench-pair-{n}:bench",
                    consent_state="not_required",
                )
                pair = Pair(record.pair_id, record.patient_id, therapist, record.room_id or "")
                opened = opening - WEEKEND - timedelta(hours=9)
                clock, _ = on_patient_message(
                    None, pair, policy, cal, Kind.TEXT, f"$bench{n}", opened
                )
                assert clock is not None
                batch.append(replace(clock, due_at=at - timedelta(hours=1), heads_up_at=None))
                await timers.schedule(
                    tx,
                    timer_id=clock.timer_id(Step.DUE),
                    kind=Step.DUE.timer_kind,
                    due_at=to_ms(at),
                    pair_id=record.pair_id,
                )
            await clocks.insert_many(tx, batch)
    finally:
        await db.close()


async def _drain(app: App, count: int) -> tuple[list[float], float]:
    """Lateness in seconds of every posted reminder once all `count` have been posted, and
    the seconds from the first held time to the last post."""
    assert app.parts is not None
    db = app.parts.db
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        sent = await db.fetchval(
            "SELECT COUNT(*) FROM outbox WHERE kind = 'sla_reminder' AND status = 'sent'"
        )
        if int(str(sent)) >= count:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {sent} of {count} reminders posted in time")
        await asyncio.sleep(0.5)
    rows = await db.fetch(
        "SELECT o.sent_at AS sent_at, t.due_at AS due_at FROM outbox o "
        "JOIN timers t ON o.txn_id = t.timer_id || ':desk' WHERE o.kind = 'sla_reminder'"
    )
    sent_ms = [int(str(r["sent_at"])) for r in rows]
    due_ms = [int(str(r["due_at"])) for r in rows]
    lateness = [max(0.0, (s - d) / 1000) for s, d in zip(sent_ms, due_ms, strict=True)]
    return lateness, (max(sent_ms) - min(due_ms)) / 1000


async def run() -> list[Row]:
    async with temporary_homeserver() as hs:
        raw = await measure_baseline(hs, n=100)
        with tempfile.TemporaryDirectory(prefix="confidant-burst-") as tmp:
            workdir = Path(tmp)
            bot_local = f"bot-{secrets.token_hex(4)}"
            bot_password = secrets.token_urlsafe(12)
            bot_id, _ = await asyncio.to_thread(hs.register_user, bot_local, bot_password)
            cfg = bridge_config(
                hs,
                bot_id,
                bot_password,
                workdir / "bridge",
                practice={"timezone": "UTC", "working_hours": ALL_DAY},
                policies={"default": {"window": "1h", "window_clock": "calendar"}},
            )
            staff = [await _user(hs, "therapist", workdir) for _ in range(THERAPISTS)]
            app = App(cfg)
            await app.start()
            try:
                assert app.parts is not None and app.service is not None
                desks = []
                for person in staff:
                    desk = await app.parts.pairs.ensure_therapist(
                        person.user_id, app.service.clock()
                    )
                    await person.wait_for(desk, notice_containing("private desk"), timeout=60)
                    desks.append(person.user_id)
            finally:
                await app.stop()
            opening = datetime.now(UTC) + LEAD
            await _seed(cfg, desks, opening)
            app = App(cfg)
            await app.start()
            try:
                lateness, span = await _drain(app, BURST)
            finally:
                await app.stop()
                for person in staff:
                    await person.close()
    cuts = statistics.quantiles(lateness, n=100, method="inclusive")
    rate = BURST / max(span, 1e-6)
    held = _held_times(datetime.now(UTC), BURST)
    arriving = BURST / max((held[-1] - held[0]).total_seconds(), 1e-6)
    return [
        Row("held burst: reminders falling due per second after the opening", arriving, "msg/s"),
        Row(f"held burst: {BURST} reminders, lateness p50", statistics.median(lateness), "s"),
        Row(f"held burst: {BURST} reminders, lateness p99", cuts[98], "s"),
        Row(f"held burst: {BURST} reminders, lateness max", max(lateness), "s"),
        Row(
            # The outbox keeps up when lateness stays near zero: then this is the rate at
            # which they fell due, not what the outbox could do.
            "held burst: reminders posted per second vs raw e2ee (8 in flight)",
            rate,
            "msg/s",
            raw["throughput_msg_s"],
        ),
    ]
