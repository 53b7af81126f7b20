"""The dashboard with a practice of 5,000 pairs: time to first byte and page weight.

A practice of `BENCH_DASHBOARD_PAIRS` pairs (default 5,000) over 50 therapists is written to
SQLite through the store: every fifth pair waits for a reply (a tenth of those past due),
nine in ten patients joined (their join in the audit chain), twelve weeks of answered clocks
for the trends. The real aiohttp application (`build_web_app`) serves it on loopback, signed
in as the admin, and each page is fetched `ROUNDS` times: the median time to the first byte
of the body, and the page's size (the trends page also cold: its first read, before the
report's rows are kept). The baseline of each row is /health's own time to first
byte in the same run (a page that reads nothing of the practice).

`python -m bench dashboard` puts the rows in the common table; `python -m bench.dashboard`
runs only this one.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp import web

from bench.table import Row, format_table
from bridge.config import minimal_config
from bridge.config.minimal import MINIMAL_ADMIN_TOKEN
from bridge.core.model import AppendAudit
from bridge.core.sla import Clock, ClockState, clock_id_for
from bridge.parts import Parts, open_parts
from bridge.store import clocks, pairs
from bridge.store.base import to_ms
from bridge.web.auth import CSRF_COOKIE
from bridge.web.deps import HealthSources, MetricsSource, WebDeps
from bridge.web.server import build_web_app

PAIRS = int(os.environ.get("BENCH_DASHBOARD_PAIRS", "5000"))
THERAPISTS = 50
ROUNDS = 9
NOW = datetime(2026, 12, 1, 11, 0, tzinfo=UTC)


def therapist_id(n: int) -> str:
    return f"@therapist{n:02d}:localhost"


async def _nothing() -> bytes:
    return b""


async def _versions() -> object:
    return {}


def offline_deps(parts: Parts, clock: Callable[[], datetime]) -> WebDeps:
    """What the web face sees of a bridge that is not running: its parts and this clock.

    /health's homeserver answers at once; no bot, sync or witness; names are the ids.
    """
    cfg = parts.cfg
    return WebDeps(
        parts=parts,
        db=parts.db,
        pairs=parts.pairs,
        clock=clock,
        token_ok=cfg.http.token_ok,
        practice_name=cfg.practice.name,
        practice_tz=cfg.practice.tzinfo,
        policies={name: p.model_dump() for name, p in cfg.policies.items()},
        render_page=parts.renderer.page,
        health=HealthSources(
            homeserver=_versions, matrix=lambda: None, sync=lambda: None, witness=lambda: None
        ),
        metrics=MetricsSource(scrape=_nothing, content_type="text/plain"),
        invitations=None,  # type: ignore[arg-type]
        voice=None,  # type: ignore[arg-type]
        verify_audit=None,  # type: ignore[arg-type]
    )


def _clock(pair_id: str, therapist: str, event: str, opened: datetime, **kw: object) -> Clock:
    return Clock(
        pair_id=pair_id,
        clock_id=clock_id_for(pair_id, event),
        therapist_id=therapist,
        policy="default",
        opened_at=opened,
        first_event_id=event,
        first_kind="text",
        due_at=opened + timedelta(hours=24),
        escalate_at=opened + timedelta(hours=48),
        **kw,  # type: ignore[arg-type]
    )


async def seed(parts: Parts, count: int, now: datetime) -> None:
    """`count` pairs with open and answered clocks and the joins of most patients."""
    db = parts.db
    open_clocks: list[Clock] = []
    closed: list[Clock] = []
    joined: list[AppendAudit] = []
    async with db.transaction() as tx:
        for n in range(count):
            therapist = therapist_id(n % THERAPISTS)
            patient = f"@patient{n:05d}:localhost"
            record = await pairs.create(
                tx,
                patient_id=patient,
                therapist_id=therapist,
                now=to_ms(now - timedelta(days=120)),
                room_id=f"!room{n:05d}:localhost",
                consent_state="accepted" if n % 13 else "pending",
            )
            if n % 10:
                joined.append(AppendAudit(record.pair_id, "room.membership", patient, {}))
            if n % 5 == 0:
                # One in ten waiting clocks is past due.
                opened = now - timedelta(hours=30 if n % 50 == 0 else 2 + n % 20)
                open_clocks.append(_clock(record.pair_id, therapist, f"$open{n}", opened))
            for week in range(12):
                opened = now - timedelta(weeks=week, hours=30 + n % 40)
                hours = 1 + (n + week) % 30
                closed.append(
                    _clock(
                        record.pair_id,
                        therapist,
                        f"$closed{n}.{week}",
                        opened,
                        state=ClockState.CLOSED,
                        closed_at=opened + timedelta(hours=hours),
                        response_working=timedelta(hours=hours),
                        response_calendar=timedelta(hours=hours),
                        met=hours <= 24,
                    )
                )
        await clocks.insert_many(tx, [*open_clocks, *closed])
    for entry in joined:
        await parts.audit.record(entry, now)


async def _fetch(http: aiohttp.ClientSession, path: str) -> tuple[float, int]:
    """Seconds to the body's first byte, and the body's size."""
    started = time.perf_counter()
    async with http.get(path) as resp:
        first = await resp.content.readany()
        ttfb = time.perf_counter() - started
        rest = await resp.read()
        assert resp.status == 200, (path, resp.status)
    return ttfb, len(first) + len(rest)


async def _sign_in(http: aiohttp.ClientSession) -> None:
    async with http.get("/dashboard/login") as resp:
        assert resp.status == 200
    csrf = next(c.value for c in http.cookie_jar if c.key == CSRF_COOKIE)
    async with http.post(
        "/dashboard/login", data={"token": MINIMAL_ADMIN_TOKEN, "csrf_token": csrf}
    ) as resp:
        assert resp.status == 200, resp.status  # followed to /dashboard


PAGES = (
    ("queue", "/dashboard"),
    ("pairs, first page", "/dashboard/pairs"),
    ("pairs, page 100", "/dashboard/pairs?page=100"),
    (
        "pairs, one therapist's overdue",
        f"/dashboard/pairs?therapist={therapist_id(0)}&state=overdue",
    ),
    ("pairs, never joined", "/dashboard/pairs?state=never_joined"),
    ("pairs, label search", "/dashboard/pairs?q=A"),
    ("trends, 12 weeks", "/dashboard/trends"),
    ("trends, 12 weeks with the table per therapist", "/dashboard/trends?table=therapists"),
)


async def measure(base_url: str) -> list[Row]:
    rows: list[Row] = []
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(base_url, cookie_jar=jar) as http:
        await _sign_in(http)
        health = statistics.median([(await _fetch(http, "/health"))[0] for _ in range(ROUNDS)])
        for name, path in PAGES:
            got = [await _fetch(http, path) for _ in range(ROUNDS)]
            if path.startswith("/dashboard/trends"):
                # The first read computes every week; the others find them kept.
                rows.append(
                    Row(
                        f"dashboard {name}, first byte, cold", got[0][0] * 1000, "ms", health * 1000
                    )
                )
                got = got[1:]
            ttfb = statistics.median(t for t, _ in got)
            rows.append(Row(f"dashboard {name}, first byte", ttfb * 1000, "ms", health * 1000))
            rows.append(Row(f"dashboard {name}, weight", got[-1][1] / 1024, "KiB"))
    return rows


async def run() -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        cfg = minimal_config(data_dir=str(Path(tmp) / "data"))
        parts = await open_parts(cfg, defer_login=True)
        try:
            started = time.perf_counter()
            await seed(parts, PAIRS, NOW)
            seeded = time.perf_counter() - started
            runner = web.AppRunner(build_web_app(offline_deps(parts, lambda: NOW)))
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            try:
                rows = await measure(f"http://127.0.0.1:{port}")
            finally:
                await runner.cleanup()
        finally:
            await parts.close()
    return [Row(f"dashboard: seeding {PAIRS:,} pairs", seeded, "s"), *rows]


if __name__ == "__main__":
    print(format_table(asyncio.run(run())))
