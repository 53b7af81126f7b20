"""Who may call what: the admin bearer token, the dashboard's sessions and its CSRF check.

The API and /metrics take a bearer token (checked by `cfg.http.token_ok`, hashed in the
config, constant time). The dashboard takes the same token once in a login form and then
holds a session cookie (HttpOnly, SameSite=Strict); every POST it serves carries a CSRF
token (double submit: form field and cookie, plus an Origin check).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from bridge.web import API
from bridge.web.deps import deps
from bridge.web.errors import ApiError

SESSION_COOKIE = "confidant_session"
CSRF_COOKIE = "confidant_csrf"
CSRF_FIELD = "csrf_token"
SESSION_LIFETIME = 8 * 3600
#: Paths anyone may read: liveness for load balancers and the API's own description.
PUBLIC_PATHS = frozenset({"/health", f"{API}/openapi.json"})


def bearer_token(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Require the admin bearer token on the API and /metrics (the dashboard has sessions)."""
    path = request.path
    needs_token = (path.startswith("/api/") or path == "/metrics") and path not in PUBLIC_PATHS
    if needs_token and not deps(request).token_ok(bearer_token(request)):
        raise ApiError("unauthorized")
    return await handler(request)


class Sessions:
    """Dashboard sessions in memory: SHA-256 of the cookie -> expiry (monotonic seconds).

    A restart logs everyone out, which is what a practice expects of an admin page.
    """

    def __init__(self, lifetime: float = SESSION_LIFETIME) -> None:
        self.lifetime = lifetime
        self._expiry: dict[str, float] = {}

    def new(self) -> str:
        """A fresh session; returns the cookie value (only its digest is kept)."""
        self._expire()
        cookie = secrets.token_urlsafe(32)
        self._expiry[_digest(cookie)] = time.monotonic() + self.lifetime
        return cookie

    def ok(self, cookie: str | None) -> bool:
        if not cookie:
            return False
        expiry = self._expiry.get(_digest(cookie))
        return expiry is not None and expiry > time.monotonic()

    def end(self, cookie: str | None) -> None:
        if cookie:
            self._expiry.pop(_digest(cookie), None)

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, expiry in self._expiry.items() if expiry <= now]:
            del self._expiry[key]


def _digest(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


SESSIONS_KEY = web.AppKey("sessions", Sessions)


def logged_in(request: web.Request) -> bool:
    return request.app[SESSIONS_KEY].ok(request.cookies.get(SESSION_COOKIE))


def csrf_ok(request: web.Request, form_value: object) -> bool:
    """The form's CSRF token matches the cookie, and the POST did not come from another site."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not isinstance(form_value, str):
        return False
    origin = request.headers.get("Origin")
    # Browsers send Origin on every POST; one from another site is refused outright.
    if origin and origin != "null" and urlsplit(origin).netloc != request.host:
        return False
    return hmac.compare_digest(cookie.encode(), form_value.encode())


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str) -> None:
    """A dashboard cookie: HttpOnly, SameSite=Strict, Secure behind TLS, session lifetime."""
    response.set_cookie(
        name,
        value,
        path="/dashboard",
        httponly=True,
        samesite="Strict",
        # Behind a TLS reverse proxy aiohttp sees plain HTTP; the proxy says it was HTTPS.
        secure=request.secure or request.headers.get("X-Forwarded-Proto") == "https",
        max_age=SESSION_LIFETIME,
    )
