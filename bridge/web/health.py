"""/health (public, for load balancers) and /metrics (Prometheus, behind the admin token)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bridge.store import clocks
from bridge.web.deps import WebDeps, deps

routes = web.RouteTableDef()

#: How long one check may take before it counts as failed.
CHECK_TIMEOUT = 5
#: A long-poll sync returns at least every 30 s; two missed rounds is a problem.
SYNC_STALE_AFTER = 90


@dataclass
class HealthCheck:
    name: str
    ok: bool
    detail: str = ""


async def check_health(d: WebDeps) -> list[HealthCheck]:
    """Homeserver reachable, bot ready on it, database answering, SMTP listening (if
    enabled), sync lag, the self-check of the bot's posts."""
    sources = d.health
    checks: list[HealthCheck] = []
    try:
        await asyncio.wait_for(sources.homeserver(), CHECK_TIMEOUT)
        checks.append(HealthCheck("homeserver", True))
    except Exception as exc:
        checks.append(HealthCheck("homeserver", False, type(exc).__name__))
    matrix = sources.matrix()
    if matrix is not None:
        # Logged in, keys up, syncing and cross-signed; until then nothing is posted.
        checks.append(HealthCheck("matrix", *matrix))
    try:
        await asyncio.wait_for(d.db.fetchval("SELECT 1"), CHECK_TIMEOUT)
        checks.append(HealthCheck("database", True, d.db.dialect))
    except Exception as exc:
        checks.append(HealthCheck("database", False, type(exc).__name__))
    if sources.smtp is not None:
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(*sources.smtp), CHECK_TIMEOUT
            )
            writer.close()
            await writer.wait_closed()
            checks.append(HealthCheck("smtp", True))
        except (OSError, TimeoutError) as exc:
            checks.append(HealthCheck("smtp", False, type(exc).__name__))
    stats = sources.sync()
    if stats is not None:
        if not stats.last_sync_ok_at:
            checks.append(HealthCheck("sync", False, "no sync yet"))
        else:
            age = max(0.0, time.time() - stats.last_sync_ok_at)
            checks.append(
                HealthCheck(
                    "sync",
                    age < SYNC_STALE_AFTER,
                    f"lag {stats.lag_seconds:.1f}s, last {age:.0f}s ago",
                )
            )
    witness = sources.witness()
    if witness is not None:
        # Degraded while an unreadable post waits for its repair, or could not be repaired.
        ok, detail, _ = await witness.health()
        checks.append(HealthCheck("witness", ok, detail))
    return checks


@routes.get("/health")
async def get_health(request: web.Request) -> web.Response:
    d = deps(request)
    checks = await check_health(d)
    ok = all(c.ok for c in checks)
    body: dict[str, Any] = {
        "status": "ok" if ok else "degraded",
        "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in checks},
    }
    stats = d.health.sync()
    if stats is not None:
        body["sync_lag_seconds"] = round(stats.lag_seconds, 3)
    witness = d.health.witness()
    if witness is not None:
        body["witness"] = (await witness.health())[2]
    # What needs a person, not a failover: escalations that reached no supervisor yet are
    # retried, never dropped, and shown here (they do not make the instance unhealthy).
    try:
        waiting = await asyncio.wait_for(clocks.count_waiting_escalations(d.db), CHECK_TIMEOUT)
        body["attention"] = {"escalations_waiting": waiting}
    except Exception:
        body["attention"] = {"escalations_waiting": None}
    return web.json_response(body, status=200 if ok else 503)


@routes.get("/metrics")
async def get_metrics(request: web.Request) -> web.Response:
    metrics = deps(request).metrics
    return web.Response(body=await metrics.scrape(), headers={"Content-Type": metrics.content_type})
