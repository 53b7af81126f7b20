"""The composition root: builds every part from the config, starts and stops them in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from bridge.adapters.matrix.bringup import (
    Backoff,
    BringUp,
    Step,
    first_sync,
    upload_device_keys,
)
from bridge.adapters.matrix.client import MatrixBot
from bridge.adapters.matrix.crosssign import CrossSigner, shared_keys
from bridge.adapters.matrix.rest import MatrixRest
from bridge.adapters.matrix.session import (
    BotCredentials,
)
from bridge.adapters.matrix.warm import WarmStandby
from bridge.adapters.scheduler import Scheduler
from bridge.config import Config
from bridge.core.command_set import build_commands
from bridge.host import Installer
from bridge.outbox import OutboxWorker
from bridge.parts import (
    Parts,
    bot_credentials,
    bot_password,
    human_duration,
    log_in,
    make_sealer,
    open_parts,
    practice_facts,
    utcnow,
)
from bridge.ports import Ports, SelfCheckFace
from bridge.service import Service
from bridge.standby import is_postgres
from bridge.store import open_database
from bridge.store.base import Database

# The command line and the tests take the parts' builders from the composition root too.
__all__ = [
    "App",
    "Installer",
    "Parts",
    "bot_credentials",
    "cross_sign_device",
    "default_features",
    "human_duration",
    "make_sealer",
    "open_parts",
    "practice_facts",
    "utcnow",
    "warm_standby",
]

log = logging.getLogger(__name__)


def default_features() -> list[Installer]:
    """Every feature the bridge runs, in installation order."""
    from bridge.features.installed import ALL

    return ALL


async def cross_sign_device(
    cfg: Config, db: Database, rest: MatrixRest, creds: BotCredentials
) -> str:
    """Sign this instance's device with the bot's one identity, kept in the database."""
    keys = await shared_keys(
        db, cfg.data_dir / "cross-signing.sealed", cfg.bot.pickle_key.get_secret_value()
    )
    signer = CrossSigner(rest, creds.user_id, creds.device_id, bot_password(cfg))
    return await signer.ensure(keys)


def warm_standby(cfg: Config) -> WarmStandby | None:
    """What keeps this instance's own device supplied with room keys while it waits as a
    standby (PostgreSQL only: with SQLite there is no second instance)."""
    if not is_postgres(cfg.database_url):
        return None
    rest = MatrixRest(cfg.homeserver.url, None, verify_tls=cfg.homeserver.verify_tls)

    async def credentials() -> BotCredentials:
        return await log_in(cfg, rest)

    async def cross_sign(creds: BotCredentials) -> None:
        db = await open_database(cfg.database_url)
        try:
            state = await cross_sign_device(cfg, db, rest, creds)
        finally:
            await db.close()
        log.info("standby cross-signing", extra={"state": state})

    return WarmStandby(
        homeserver_url=cfg.homeserver.url,
        store_dir=cfg.crypto_store_dir,
        pickle_key=cfg.bot.pickle_key.get_secret_value(),
        credentials=credentials,
        cross_sign=cross_sign,
        close=rest.close,
    )


class DeviceMismatch(RuntimeError):
    """The login answered for another user or device than the bot was built with."""


@dataclass
class Running:
    """The built bridge that features are installed on: every part exists.

    `App.start` builds it in one go before any feature is installed, so a feature (typed
    against `bridge.host.Host`) never sees a part that is not there yet. What a feature
    registers (listeners, workers, stop callbacks) is collected here for the App to run.
    """

    cfg: Config
    templates_dir: Path | None
    parts: Parts
    service: Service
    bot: MatrixBot
    outbox: OutboxWorker
    scheduler: Scheduler
    ports: Ports
    #: The self-check of the bot's posts (its witness device), once its feature installed it.
    selfcheck: SelfCheckFace | None = None
    #: The bot's bring-up on the homeserver (login, keys, cross-signing, sync), once started.
    matrix: BringUp | None = None
    listeners: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    starters: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    stoppers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def on_listen(self, start: Callable[[], Awaitable[None]]) -> None:
        """Run `start` before the homeserver is needed (listeners that take work into the
        database: SMTP, HTTP); a port that cannot be bound stops the start."""
        self.listeners.append(start)

    def on_start(self, start: Callable[[], Awaitable[None]]) -> None:
        """Run `start` once the bot is up on the homeserver (a feature's workers)."""
        self.starters.append(start)

    def on_stop(self, stop: Callable[[], Awaitable[None]]) -> None:
        """Run `stop` first when the bridge stops (in reverse order of registration)."""
        self.stoppers.append(stop)


@dataclass
class App:
    """The bridge: built from the config by `start`, run until `stop`.

    Before `start` the parts below are None (the command line and tests read them after
    it); features never see that state: they are installed on the `Running` bridge.
    """

    cfg: Config
    templates_dir: Path | None = None
    cross_signing: str = ""
    #: What the installed features offer each other (`bridge.ports`).
    ports: Ports = field(default_factory=Ports)
    #: Waits between bring-up attempts (tests may shorten them).
    backoff: Backoff = field(default_factory=Backoff)
    #: How long an undecryptable event waits for its key before it is recorded as a failure.
    undecryptable_grace: float = 60.0
    #: Feature installers to run (None: `default_features()`); tests may pick their own.
    features: list[Installer] | None = None
    running: Running | None = None
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)
    _bring_up: asyncio.Task[None] | None = None

    @property
    def parts(self) -> Parts | None:
        return self.running.parts if self.running else None

    @property
    def service(self) -> Service | None:
        return self.running.service if self.running else None

    @property
    def bot(self) -> MatrixBot | None:
        return self.running.bot if self.running else None

    @property
    def outbox(self) -> OutboxWorker | None:
        return self.running.outbox if self.running else None

    @property
    def scheduler(self) -> Scheduler | None:
        return self.running.scheduler if self.running else None

    @property
    def selfcheck(self) -> SelfCheckFace | None:
        return self.running.selfcheck if self.running else None

    @property
    def matrix(self) -> BringUp | None:
        return self.running.matrix if self.running else None

    async def start(self) -> None:
        """Build every part and install the features; start what needs only the database;
        then bring the bot up on the homeserver in the background.

        Features are installed before the first sync so that no event is handled without
        their hooks (the SLA clock, media capture, ...). Timers and listeners (SMTP, HTTP)
        start next: they need only the database, so mail is committed and /health answers
        while the homeserver is down or answering 5xx. The bot's steps (the first login,
        device keys, cross-signing, the sync loop up to its first batch) then run in a task
        that retries each one with capped backoff and never gives up; only when they are
        done do the outbox and the features' workers start, so nothing is posted from a
        device that is not yet cross-signed or that does not know its rooms yet.

        Without a saved session the bot still has its device from the start: its id is
        chosen locally and the first login asks for it (`reserved_device_id`), so the crypto
        store, the bot and every feature are built with the final user and device id and
        only the access token comes later. A configured access token instead of a password
        names a device only the homeserver knows: that one case waits for it, retrying,
        before anything starts.

        Returns when the first round of the bring-up is known: fully started when the
        homeserver answers, otherwise started without Matrix, which keeps trying.
        """
        cfg = self.cfg
        parts = await open_parts(cfg, templates_dir=self.templates_dir, defer_login=True)
        service = Service(
            db=parts.db,
            rest=parts.rest,
            renderer=parts.renderer,
            sealer=parts.sealer,
            audit=parts.audit,
            bot_user_id=parts.creds.user_id,
            commands=build_commands(),
            clock=utcnow,
        )
        await service.refresh_rooms()
        bot = MatrixBot(
            homeserver_url=cfg.homeserver.url,
            creds=parts.creds,
            store_dir=cfg.crypto_store_dir,
            pickle_key=cfg.bot.pickle_key.get_secret_value(),
            handler=service,
            undecryptable_grace=self.undecryptable_grace,
        )
        outbox = OutboxWorker(parts.db, parts.sealer, bot, clock=utcnow)
        service.outbox = outbox
        scheduler = Scheduler(service.fire_timer)
        service.scheduler = scheduler
        running = self.running = Running(
            cfg, self.templates_dir, parts, service, bot, outbox, scheduler, self.ports
        )
        await self._install_features(running)
        scheduler.start()
        await scheduler.rebuild(parts.db)
        for listen in running.listeners:
            await listen()
        running.matrix = BringUp(self._matrix_steps(running), backoff=self.backoff)
        self._bring_up = asyncio.create_task(self._run_bring_up(), name="matrix-bring-up")
        await self._first_round()
        log.info(
            "bridge started",
            extra={
                "user_id": parts.creds.user_id,
                "device_id": parts.creds.device_id,
                "matrix": running.matrix.detail,
            },
        )

    async def _install_features(self, running: Running) -> None:
        installed: list[Installer] = []
        for install in self.features if self.features is not None else default_features():
            if install in installed:
                continue  # listed twice (e.g. a test adding a default feature again)
            installed.append(install)
            await install(running)

    def _matrix_steps(self, running: Running) -> list[Step]:
        bot = running.bot
        steps: list[Step] = []
        if not running.parts.creds.logged_in:
            steps.append(("login", self._log_in))
        # Signing needs only the device keys, so it comes before the sync loop: from its first
        # round on, the device is one that Element's "exclude insecure devices" mode accepts.
        steps += [
            ("keys upload", lambda: upload_device_keys(bot)),
            ("cross-signing", self._cross_sign),
            ("sync start", bot.start),
            ("first sync", lambda: first_sync(bot)),
        ]
        return steps

    async def _log_in(self) -> None:
        """The first login, onto the device the bot was built with; the token fills in."""
        assert self.running is not None
        parts, bot = self.running.parts, self.running.bot
        creds = await log_in(self.cfg, parts.rest)
        if (creds.user_id, creds.device_id) != (bot.user_id, bot.device_id):
            raise DeviceMismatch(f"logged in as {creds.user_id} {creds.device_id}")
        bot.client.access_token = creds.access_token
        parts.creds = creds

    async def _cross_sign(self) -> None:
        assert self.running is not None
        parts = self.running.parts
        self.cross_signing = await cross_sign_device(self.cfg, parts.db, parts.rest, parts.creds)
        log.info("cross-signing", extra={"state": self.cross_signing})

    async def _run_bring_up(self) -> None:
        """The bot on the homeserver, then everything that posts or downloads."""
        assert self.running is not None and self.running.matrix is not None
        await self.running.matrix.run()
        self.running.outbox.start()
        for start in self.running.starters:
            await start()
        log.info("matrix ready")

    async def _first_round(self) -> None:
        """Wait until the bring-up is done or has failed once; re-raise a feature's error."""
        assert self.matrix is not None and self._bring_up is not None
        failed = asyncio.create_task(self.matrix.first_failure.wait())
        try:
            await asyncio.wait({self._bring_up, failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            failed.cancel()
        if self._bring_up.done():
            self._bring_up.result()

    async def stop(self) -> None:
        if self._bring_up is not None:
            self._bring_up.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._bring_up
        running = self.running
        if running is not None:
            for stop in reversed(running.stoppers):
                try:
                    await stop()
                except Exception as exc:
                    log.warning("feature stop failed", extra={"error": type(exc).__name__})
            running.scheduler.stop()
            await running.outbox.stop()
            await running.bot.stop()
            await running.parts.close()
        self._stopped.set()
        log.info("bridge stopped")

    async def run_until_signalled(self) -> None:
        """Start, then run until SIGINT or SIGTERM, then stop cleanly.

        A signal also ends a start that is still waiting for the homeserver. If a feature
        fails to start once the homeserver came back, the bridge stops and re-raises.
        """
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        starting = asyncio.create_task(self.start(), name="bridge-start")
        try:
            if await _until_stopped(starting, stop) and self._bring_up is not None:
                await _until_stopped(self._bring_up, stop)
            await stop.wait()
        finally:
            if not starting.done():
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
            await self.stop()


async def _until_stopped(task: asyncio.Task[None], stop: asyncio.Event) -> bool:
    """Wait for `task` or `stop`; True (and the task's error raised) if the task ended first."""
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not task.done():
        return False
    task.result()
    return True
