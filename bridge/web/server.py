"""The aiohttp application (every route table, both middlewares) and the server that runs it."""

from __future__ import annotations

import logging

from aiohttp import web

from bridge.adapters.listen import ListenError
from bridge.web import (
    audit,
    clocks,
    dashboard,
    dashboard_actions,
    dashboard_email,
    dashboard_session,
    dashboard_trends,
    health,
    invitations,
    openapi,
    pairs,
    policies,
    sla_report,
    transcripts,
    voice,
)
from bridge.web.auth import SESSIONS_KEY, Sessions, auth_middleware
from bridge.web.deps import DEPS_KEY, WebDeps
from bridge.web.errors import error_middleware

log = logging.getLogger(__name__)

#: One table per area, in the order their routes are matched.
ROUTE_TABLES = (
    health.routes,
    openapi.routes,
    pairs.routes,
    voice.routes,
    transcripts.routes,
    invitations.routes,
    policies.routes,
    clocks.routes,
    sla_report.routes,
    audit.routes,
    dashboard_session.routes,
    dashboard.routes,
    dashboard_trends.routes,
    dashboard_actions.routes,
    dashboard_email.routes,
)

#: The largest request body taken (voice uploads stream past it in pieces).
CLIENT_MAX_SIZE = 1 << 20


def build_web_app(deps: WebDeps, sessions: Sessions | None = None) -> web.Application:
    """The aiohttp application with every route and both middlewares."""
    web_app = web.Application(
        middlewares=[error_middleware, auth_middleware], client_max_size=CLIENT_MAX_SIZE
    )
    web_app[DEPS_KEY] = deps
    web_app[SESSIONS_KEY] = sessions if sessions is not None else Sessions()
    for table in ROUTE_TABLES:
        web_app.add_routes(table)
    return web_app


class HttpServer:
    """The web application bound to one host and port; `port` is the bound one."""

    def __init__(self, deps: WebDeps, host: str, port: int) -> None:
        self.deps = deps
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self.web_app = build_web_app(deps)
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        runner = web.AppRunner(self.web_app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.requested_port)
        try:
            await site.start()
        except OSError as err:
            await runner.cleanup()
            raise ListenError("http", self.host, self.requested_port, err) from err
        self._runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1]) if sockets else self.requested_port
        log.info("admin http listening", extra={"host": self.host, "port": self.port})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
