"""How every dashboard page is served: its template, headers, CSRF cookie and who is viewing.

Pages come from `templates/admin/`; each is served with a strict Content-Security-Policy
(nothing loads from anywhere, no script), no caching and no framing. A viewer is the practice's
admin (signed in with an admin token: the whole practice) or one therapist (signed in from
their desk room: their own pairs and queue only).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bridge.store import dashboard
from bridge.store.base import to_ms
from bridge.web.auth import CSRF_COOKIE, SESSION_COOKIE, set_cookie
from bridge.web.deps import deps

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
)
#: A list that keeps itself current runs one script of this server's (no inline script,
#: nothing from elsewhere) and fetches its own page.
LIVE_POLICY = CONTENT_SECURITY_POLICY + "; script-src 'self'; connect-src 'self'"
LIVE_SCRIPT = "/dashboard/static/live.js"
ADMIN = "admin"
#: How often a list that changes (queue, pairs) is fetched again, in seconds.
REFRESH_SECONDS = 30


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who a dashboard session belongs to."""

    who: str

    @property
    def is_admin(self) -> bool:
        return self.who == ADMIN

    @property
    def therapist(self) -> str | None:
        """The therapist whose pairs alone this viewer sees; None for the admin."""
        return None if self.is_admin else self.who


def cookie_digest(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


def harden(response: web.StreamResponse, *, live: bool = False) -> None:
    """No caching, no framing, no sniffing, no referrer, nothing loaded from elsewhere."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Content-Security-Policy"] = LIVE_POLICY if live else CONTENT_SECURITY_POLICY


async def current_viewer(request: web.Request) -> Viewer | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    d = deps(request)
    who = await dashboard.session_viewer(d.db, cookie_digest(cookie), to_ms(d.clock()))
    return None if who is None else Viewer(who)


async def require_viewer(request: web.Request) -> Viewer:
    """The signed-in viewer, or off to the sign-in form."""
    viewer = await current_viewer(request)
    if viewer is None:
        raise web.HTTPSeeOther("/dashboard/login")
    return viewer


def page(
    request: web.Request,
    name: str,
    context: dict[str, Any],
    *,
    viewer: Viewer | None = None,
    status: int = 200,
    refresh: bool = False,
) -> web.Response:
    """Render `admin/NAME.html.j2` with the practice, the CSRF token and the viewer."""
    d = deps(request)
    csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
    html = d.render_page(
        f"admin/{name}.html.j2",
        {
            "practice_name": d.practice_name,
            "csrf_token": csrf,
            "viewer": viewer,
            "refresh_seconds": REFRESH_SECONDS if refresh else None,
            "live_script": LIVE_SCRIPT,
            "here": request.path_qs,
            **context,
        },
    )
    response = web.Response(text=html, content_type="text/html", status=status)
    harden(response, live=refresh)
    if CSRF_COOKIE not in request.cookies:
        set_cookie(request, response, CSRF_COOKIE, csrf)
    return response


def see_other(location: str) -> web.Response:
    response = web.Response(status=303, headers={"Location": location})
    harden(response)
    return response
