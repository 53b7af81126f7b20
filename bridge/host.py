"""What a feature, the HTTP face and the metrics may know of the running bridge.

The composition root (`bridge.app.App`) builds every part and installs the features; the
features are below it and must not import it, or the two would form one import cycle with
every feature in it. They see the running bridge through `Host`, a protocol that `App`
satisfies, and register themselves with the `Installer` signature. What one feature needs
of another goes through `Host.ports` (see `bridge.ports`), never through an import.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from bridge.adapters.matrix.bringup import BringUp
from bridge.adapters.matrix.client import MatrixBot
from bridge.adapters.scheduler import Scheduler
from bridge.config import Config
from bridge.outbox import OutboxWorker
from bridge.parts import Parts
from bridge.ports import Ports, SelfCheckFace
from bridge.service import Service


class Host(Protocol):
    """The running bridge as its features see it: built parts, registration of callbacks.

    Every part exists when a feature is installed (`bridge.app.Running`); the self-check is
    filled by its own feature, the bring-up once the bridge starts talking to Matrix.
    """

    cfg: Config
    templates_dir: Path | None
    parts: Parts
    service: Service
    bot: MatrixBot
    outbox: OutboxWorker
    scheduler: Scheduler
    selfcheck: SelfCheckFace | None
    matrix: BringUp | None
    #: What features offer each other (`bridge.ports`); each fills its own at install time.
    ports: Ports

    def on_listen(self, start: Callable[[], Awaitable[None]]) -> None:
        """Run `start` as soon as the database is open (listeners: SMTP, HTTP)."""
        ...

    def on_start(self, start: Callable[[], Awaitable[None]]) -> None:
        """Run `start` once the bot is up on the homeserver (workers that post)."""
        ...

    def on_stop(self, stop: Callable[[], Awaitable[None]]) -> None:
        """Run `stop` first when the bridge stops (in reverse order of registration)."""
        ...


#: A feature: given the built (not yet started) bridge, it registers hooks, handlers and
#: its own start/stop callbacks.
Installer = Callable[[Host], Awaitable[None]]
