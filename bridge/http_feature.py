"""Runs the admin HTTP API, dashboard, /health and /metrics inside the bridge."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.adapters.http import HttpServer

if TYPE_CHECKING:
    from collections.abc import Callable

    from bridge.host import Host, Installer


def http_installer(
    *,
    host: str | None = None,
    port: int | None = None,
    on_ready: Callable[[HttpServer], None] | None = None,
) -> Installer:
    """An installer serving HTTP on `host`/`port` (default: cfg.http; port 0 picks a free one).

    `on_ready` gets the server once it listens (its `port` is then the bound one).
    """

    async def install(app: Host) -> None:
        cfg = app.cfg.http
        if not cfg.enabled:
            return
        server = HttpServer(
            app, host if host is not None else cfg.host, port if port is not None else cfg.port
        )

        async def start() -> None:
            await server.start()
            if on_ready is not None:
                on_ready(server)

        # Before the homeserver answers: /health must say why the bridge is degraded.
        app.on_listen(start)
        app.on_stop(server.stop)

    return install


async def install_http(app: Host) -> None:
    """Serve the admin HTTP API on cfg.http.host and cfg.http.port (if http is enabled)."""
    await http_installer()(app)
