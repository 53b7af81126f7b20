"""The practice dashboard (/dashboard): open clocks by therapist, this week's breaches, pairs,
health. Pages come from `templates/admin/`; no page shows message content.

Login takes the admin token once and sets a session cookie (see `auth`); every POST carries
the CSRF token; every page is served with a strict Content-Security-Policy and no caching.
"""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict
from datetime import datetime, timedelta, tzinfo
from typing import Any

from aiohttp import web

from bridge.store import clocks, pairs
from bridge.web.auth import (
    CSRF_COOKIE,
    CSRF_FIELD,
    SESSION_COOKIE,
    SESSIONS_KEY,
    csrf_ok,
    logged_in,
    set_cookie,
)
from bridge.web.deps import deps
from bridge.web.errors import ApiError
from bridge.web.health import check_health

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
)


def harden(response: web.StreamResponse) -> None:
    """No caching, no framing, no sniffing, no referrer, nothing loaded from elsewhere."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY


def _page(
    request: web.Request, name: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    d = deps(request)
    csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
    html = d.render_page(
        f"admin/{name}.html.j2",
        {"practice_name": d.practice_name, "csrf_token": csrf, **context},
    )
    response = web.Response(text=html, content_type="text/html", status=status)
    harden(response)
    if CSRF_COOKIE not in request.cookies:
        set_cookie(request, response, CSRF_COOKIE, csrf)
    return response


def _see_other(location: str) -> web.Response:
    response = web.Response(status=303, headers={"Location": location})
    harden(response)
    return response


@routes.get("/dashboard/login")
async def login_form(request: web.Request) -> web.Response:
    return _page(request, "login", {"error": None})


@routes.post("/dashboard/login")
async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    if not csrf_ok(request, form.get(CSRF_FIELD)):
        return _page(request, "login", {"error": "The form expired; please try again."}, 403)
    token = form.get("token")
    if not isinstance(token, str) or not deps(request).token_ok(token):
        log.info("dashboard login refused")
        return _page(request, "login", {"error": "That token is not valid."}, 401)
    response = _see_other("/dashboard")
    set_cookie(request, response, SESSION_COOKIE, request.app[SESSIONS_KEY].new())
    # A fresh CSRF token for the session: the one seen before login is not reused.
    set_cookie(request, response, CSRF_COOKIE, secrets.token_urlsafe(32))
    return response


@routes.post("/dashboard/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    if not csrf_ok(request, form.get(CSRF_FIELD)):
        raise ApiError("forbidden")
    request.app[SESSIONS_KEY].end(request.cookies.get(SESSION_COOKIE))
    response = _see_other("/dashboard/login")
    response.del_cookie(SESSION_COOKIE, path="/dashboard")
    return response


def _local(value: datetime | None, tz: tzinfo) -> str:
    if value is None:
        return ""
    return value.astimezone(tz).strftime("%a %d %b %H:%M")


@routes.get("/dashboard")
async def overview(request: web.Request) -> web.StreamResponse:
    if not logged_in(request):
        raise web.HTTPSeeOther("/dashboard/login")
    d = deps(request)
    db, tz = d.db, d.practice_tz
    now = d.clock()
    records = await pairs.list_pairs(db)
    labels = {r.pair_id: r.label for r in records}
    open_clocks = await clocks.list_open(db)
    by_therapist: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for clock in open_clocks:
        by_therapist[clock.therapist_id].append(
            {
                "label": labels.get(clock.pair_id, "?"),
                "opened": _local(clock.opened_at, tz),
                "due": _local(clock.due_at, tz),
                "overdue": clock.due_at < now,
                "paused": clock.paused_since is not None,
            }
        )
    local_now = now.astimezone(tz)
    week_start = datetime.combine(
        local_now.date() - timedelta(days=local_now.weekday()), datetime.min.time(), tz
    )
    closed = await clocks.list_closed(db, week_start, now + timedelta(seconds=1))
    breaches = [
        {
            "label": labels.get(c.pair_id, "?"),
            "therapist_id": c.therapist_id,
            "due": _local(c.due_at, tz),
            "answered": _local(c.closed_at, tz),
        }
        for c in closed
        if c.met is False
    ] + [
        {
            "label": labels.get(c.pair_id, "?"),
            "therapist_id": c.therapist_id,
            "due": _local(c.due_at, tz),
            "answered": "",
        }
        for c in open_clocks
        if week_start <= c.due_at < now
    ]
    return _page(
        request,
        "dashboard",
        {
            "now": _local(now, tz),
            "by_therapist": sorted(by_therapist.items()),
            "open_count": len(open_clocks),
            "breaches": breaches,
            "pairs": [
                {
                    "label": r.label,
                    "therapist_id": r.therapist_id,
                    "status": r.status.value,
                    "policy": r.policy,
                    "consent": r.consent_state,
                }
                for r in records
            ],
            "checks": await check_health(d),
        },
    )


@routes.get("/")
async def root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/dashboard")
