"""The composition root: builds every part from the config, starts and stops them in order."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bridge.adapters.matrix.client import MatrixBot
from bridge.adapters.matrix.crosssign import CrossSigner, load_or_create_keys
from bridge.adapters.matrix.rest import MatrixRest
from bridge.adapters.matrix.session import BotCredentials, ensure_credentials
from bridge.adapters.render import Renderer
from bridge.adapters.scheduler import Scheduler
from bridge.audit.log import AuditLog
from bridge.config import Config
from bridge.outbox import OutboxWorker
from bridge.provision import PairManager, PracticeFacts
from bridge.sealing import Sealer
from bridge.service import Service
from bridge.store import open_database
from bridge.store.base import Database

log = logging.getLogger(__name__)

#: A feature: given the built (not yet started) App, it registers hooks, handlers and
#: its own start/stop callbacks.
Installer = Callable[["App"], Awaitable[None]]


def default_features() -> list[Installer]:
    """Every feature the bridge runs, in installation order."""
    from bridge import features

    return features.ALL


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_sealer(cfg: Config) -> Sealer:
    keys = {key_id: key.get_secret_value() for key_id, key in cfg.audit.content_keys.items()}
    return Sealer(keys, cfg.audit.current_key_id or next(iter(keys)))


def practice_facts(cfg: Config, bot_user_id: str) -> PracticeFacts:
    policy = cfg.policies["default"]
    return PracticeFacts(
        bot_user_id=bot_user_id,
        practice_name=cfg.practice.name,
        crisis_line=cfg.practice.crisis_line,
        federate=cfg.practice.federate,
        inbound_domain=cfg.smtp.inbound_domain if cfg.smtp.enabled else None,
        reply_window=human_duration(policy.window.total_seconds()),
        working_time=policy.window_clock == "working",
        ask_consent=cfg.practice.ask_consent,
        video_enabled=cfg.jitsi.domain is not None,
    )


def human_duration(seconds: float) -> str:
    hours = seconds / 3600
    if hours >= 24 and hours % 24 == 0:
        days = int(hours // 24)
        return f"{days} day" + ("s" if days != 1 else "")
    if hours >= 1:
        whole = int(hours) if hours == int(hours) else round(hours, 1)
        return f"{whole} hour" + ("s" if whole != 1 else "")
    minutes = max(1, round(seconds / 60))
    return f"{minutes} minute" + ("s" if minutes != 1 else "")


@dataclass
class Parts:
    """Everything the command line needs without the Matrix sync (pair admin, audit)."""

    cfg: Config
    db: Database
    rest: MatrixRest
    renderer: Renderer
    sealer: Sealer
    audit: AuditLog
    creds: BotCredentials
    pairs: PairManager

    async def close(self) -> None:
        await self.rest.close()
        await self.db.close()


async def open_parts(cfg: Config, *, templates_dir: Path | None = None) -> Parts:
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    db = await open_database(cfg.database_url)
    rest = MatrixRest(cfg.homeserver.url, None, verify_tls=cfg.homeserver.verify_tls)
    try:
        creds = await ensure_credentials(
            rest,
            cfg.data_dir,
            user_id=cfg.bot.user_id,
            password=cfg.bot.password.get_secret_value() if cfg.bot.password else None,
            access_token=cfg.bot.access_token.get_secret_value() if cfg.bot.access_token else None,
            device_name=cfg.bot.device_name,
        )
    except BaseException:
        await rest.close()
        await db.close()
        raise
    renderer = Renderer(templates_dir)
    sealer = make_sealer(cfg)
    audit = AuditLog(
        db,
        sealer,
        cfg.audit.signing_key.get_secret_value(),
        checkpoint_every=cfg.audit.checkpoint_every,
    )
    manager = PairManager(db, rest, renderer, sealer, audit, practice_facts(cfg, creds.user_id))
    return Parts(cfg, db, rest, renderer, sealer, audit, creds, manager)


@dataclass
class App:
    """The running bridge."""

    cfg: Config
    templates_dir: Path | None = None
    parts: Parts | None = None
    service: Service | None = None
    bot: MatrixBot | None = None
    outbox: OutboxWorker | None = None
    scheduler: Scheduler | None = None
    cross_signing: str = ""
    #: How long an undecryptable event waits for its key before it is recorded as a failure.
    undecryptable_grace: float = 60.0
    #: Feature installers to run (None: `default_features()`); tests may pick their own.
    features: list[Installer] | None = None
    starters: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    stoppers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        """Build every part, install the features, then start talking to the world.

        Features are installed before the first sync so that no event is handled
        without their hooks (the SLA clock, media capture, ...).
        """
        cfg = self.cfg
        parts = self.parts = await open_parts(cfg, templates_dir=self.templates_dir)
        service = self.service = Service(
            db=parts.db,
            rest=parts.rest,
            renderer=parts.renderer,
            sealer=parts.sealer,
            audit=parts.audit,
            bot_user_id=parts.creds.user_id,
            clock=utcnow,
        )
        await service.refresh_rooms()
        self.bot = MatrixBot(
            homeserver_url=cfg.homeserver.url,
            creds=parts.creds,
            store_dir=cfg.crypto_store_dir,
            pickle_key=cfg.bot.pickle_key.get_secret_value(),
            handler=service,
            undecryptable_grace=self.undecryptable_grace,
        )
        self.outbox = OutboxWorker(parts.db, parts.sealer, self.bot, clock=utcnow)
        service.outbox = self.outbox
        self.scheduler = Scheduler(service.fire_timer)
        service.scheduler = self.scheduler
        installed: list[Installer] = []
        for install in self.features if self.features is not None else default_features():
            if install in installed:
                continue  # listed twice (e.g. a test adding a default feature again)
            installed.append(install)
            await install(self)
        await self.bot.start()
        signer = CrossSigner(
            parts.rest,
            parts.creds.user_id,
            parts.creds.device_id,
            cfg.bot.password.get_secret_value() if cfg.bot.password else None,
        )
        keys = load_or_create_keys(
            cfg.data_dir / "cross-signing.sealed", cfg.bot.pickle_key.get_secret_value()
        )
        self.cross_signing = await signer.ensure(keys)
        log.info("cross-signing", extra={"state": self.cross_signing})
        self.outbox.start()
        self.scheduler.start()
        await self.scheduler.rebuild(parts.db)
        for start in self.starters:
            await start()
        log.info(
            "bridge started",
            extra={"user_id": parts.creds.user_id, "device_id": parts.creds.device_id},
        )

    def on_start(self, start: Callable[[], Awaitable[None]]) -> None:
        """Run `start` once the bridge is syncing (listeners, workers of a feature)."""
        self.starters.append(start)

    def on_stop(self, stop: Callable[[], Awaitable[None]]) -> None:
        """Run `stop` first when the bridge stops (in reverse order of registration)."""
        self.stoppers.append(stop)

    async def stop(self) -> None:
        for stop in reversed(self.stoppers):
            try:
                await stop()
            except Exception as exc:
                log.warning("feature stop failed", extra={"error": type(exc).__name__})
        if self.scheduler:
            self.scheduler.stop()
        if self.outbox:
            await self.outbox.stop()
        if self.bot:
            await self.bot.stop()
        if self.parts:
            await self.parts.close()
        self._stopped.set()
        log.info("bridge stopped")

    async def run_until_signalled(self) -> None:
        """Start, then run until SIGINT or SIGTERM, then stop cleanly."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await self.start()
            await stop.wait()
        finally:
            await self.stop()
