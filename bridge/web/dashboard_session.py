"""Signing in to the dashboard and out of it: the admin token, a desk-room link, sessions.

The admin types an admin token once; a therapist opens the single-use link `!dashboard`
posted into their E2EE desk room (opening shows a button, so a link preview cannot use it up).
Either way a session cookie is set (HttpOnly, SameSite=Strict) whose SHA-256 is stored with
the viewer and an expiry; a new CSRF token comes with it. "Sign out everywhere" ends every
session of the viewer. Each sign-in and each sign-out everywhere is an audit entry.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from aiohttp import web

from bridge.core import dashboard_commands
from bridge.core.model import AppendAudit
from bridge.features.dashboard import link_digest
from bridge.store import dashboard
from bridge.store.base import to_ms
from bridge.web.auth import CSRF_COOKIE, CSRF_FIELD, SESSION_COOKIE, csrf_ok, set_cookie
from bridge.web.dashboard_page import (
    ADMIN,
    LIVE_SCRIPT,
    cookie_digest,
    harden,
    page,
    require_viewer,
    see_other,
)
from bridge.web.deps import deps
from bridge.web.errors import ApiError

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

#: How long a dashboard session lasts, however it began.
SESSION_LIFETIME = timedelta(hours=8)


async def _audit(request: web.Request, entry: AppendAudit) -> None:
    record = deps(request).record_audit
    if record is not None:
        await record(entry)


async def _start_session(request: web.Request, viewer: str, via: str) -> web.Response:
    d = deps(request)
    now = d.clock()
    cookie = secrets.token_urlsafe(32)
    await dashboard.add_session(
        d.db, cookie_digest(cookie), viewer, to_ms(now), to_ms(now + SESSION_LIFETIME)
    )
    await _audit(request, dashboard_commands.signed_in(viewer, via))
    response = see_other("/dashboard")
    set_cookie(request, response, SESSION_COOKIE, cookie)
    # A fresh CSRF token for the session: the one seen before signing in is not reused.
    set_cookie(request, response, CSRF_COOKIE, secrets.token_urlsafe(32))
    return response


@routes.get("/dashboard/login")
async def login_form(request: web.Request) -> web.Response:
    return page(request, "login", {"error": None})


@routes.post("/dashboard/login")
async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    if not csrf_ok(request, form.get(CSRF_FIELD)):
        return page(request, "login", {"error": "The form expired; please try again."}, status=403)
    token = form.get("token")
    if not isinstance(token, str) or not deps(request).token_ok(token):
        log.info("dashboard login refused")
        return page(request, "login", {"error": "That token is not valid."}, status=401)
    return await _start_session(request, ADMIN, "token")


@routes.get("/dashboard/link/{token}")
async def link_form(request: web.Request) -> web.Response:
    # Only a form: a GET must not use the link up (chat clients and scanners fetch links).
    return page(request, "link", {"token": request.match_info["token"], "error": None})


@routes.post("/dashboard/link/{token}")
async def link_login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    token = request.match_info["token"]
    if not csrf_ok(request, form.get(CSRF_FIELD)):
        return page(
            request,
            "link",
            {"token": token, "error": "The form expired; please try again."},
            status=403,
        )
    d = deps(request)
    therapist = await dashboard.use_link(d.db, link_digest(token), to_ms(d.clock()))
    if therapist is None:
        log.info("dashboard link refused")
        await _audit(request, dashboard_commands.link_refused("unknown, used or expired"))
        error = (
            "This link was used already or has expired; "
            "type !dashboard in your desk room for a new one."
        )
        return page(request, "link", {"token": None, "error": error}, status=401)
    return await _start_session(request, therapist, "desk_link")


@routes.post("/dashboard/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    if not csrf_ok(request, form.get(CSRF_FIELD)):
        raise ApiError("forbidden")
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        await dashboard.end_session(deps(request).db, cookie_digest(cookie))
    response = see_other("/dashboard/login")
    response.del_cookie(SESSION_COOKIE, path="/dashboard")
    return response


@routes.post("/dashboard/logout/everywhere")
async def logout_everywhere(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    if not csrf_ok(request, form.get(CSRF_FIELD)):
        raise ApiError("forbidden")
    viewer = await require_viewer(request)
    ended = await dashboard.end_sessions_of(deps(request).db, viewer.who)
    await _audit(request, dashboard_commands.signed_out_everywhere(viewer.who, ended))
    response = see_other("/dashboard/login")
    response.del_cookie(SESSION_COOKIE, path="/dashboard")
    return response


@routes.get(LIVE_SCRIPT)
async def live_script(request: web.Request) -> web.Response:
    """The one script of the dashboard: keeps the queue and the pairs list current."""
    text = deps(request).render_page("admin/live.js.j2", {})
    response = web.Response(text=text, content_type="text/javascript")
    harden(response)
    return response


@routes.get("/")
async def root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/dashboard")


__all__ = ["SESSION_LIFETIME", "routes"]
