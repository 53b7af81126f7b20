"""The parts every entry point needs, built from the config: database, homeserver client,
the bot's credentials, sealer, audit log and pair manager.

The running bridge (`bridge.app.App`), the command line and the tests build them the same
way, here; nothing in this module starts a sync or a listener.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bridge.adapters.matrix.bringup import Backoff, retry
from bridge.adapters.matrix.rest import MatrixRest
from bridge.adapters.matrix.session import (
    BotCredentials,
    deferred_credentials,
    ensure_credentials,
)
from bridge.adapters.render import Renderer
from bridge.audit.log import AuditLog
from bridge.config import Config, Policy
from bridge.provision import PairManager, PracticeFacts, ReplyWindow
from bridge.sealing import Sealer
from bridge.store import invitations, open_database, pairs
from bridge.store.base import Database


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_sealer(cfg: Config) -> Sealer:
    keys = {key_id: key.get_secret_value() for key_id, key in cfg.audit.content_keys.items()}
    return Sealer(keys, cfg.audit.current_key_id or next(iter(keys)))


def reply_window(policy: Policy) -> ReplyWindow:
    """How `policy`'s reply time reads in the bot's texts."""
    seconds = policy.window.total_seconds()
    return ReplyWindow(human_duration(seconds), policy.window_clock == "working", seconds)


def practice_facts(cfg: Config, bot_user_id: str, policy: Policy | None = None) -> PracticeFacts:
    """What the bot's texts say about the practice, with every policy's reply window; the
    practice-wide window (`reply_window`) is `policy`'s, the default policy's when none is
    given. A pair's texts quote its own policy (`PracticeFacts.window_of`)."""
    policy = policy if policy is not None else cfg.policies["default"]
    default = reply_window(policy)
    return PracticeFacts(
        bot_user_id=bot_user_id,
        practice_name=cfg.practice.name,
        crisis_line=cfg.practice.crisis_line,
        federate=cfg.practice.federate,
        inbound_domain=cfg.smtp.inbound_domain if cfg.smtp.enabled else None,
        reply_window=default.text,
        working_time=default.working_time,
        ask_consent=cfg.practice.ask_consent,
        video_enabled=cfg.jitsi.domain is not None,
        reply_windows={name: reply_window(p) for name, p in cfg.policies.items()},
        room_version=cfg.pairs.room_version,
        email_replies=cfg.smtp.enabled and cfg.smtp.replies.enabled and cfg.outbound_email.enabled,
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


async def open_parts(
    cfg: Config, *, templates_dir: Path | None = None, defer_login: bool = False
) -> Parts:
    """The database, the homeserver client and the bot's credentials.

    Without a saved session the command line logs in here. The running bridge passes
    `defer_login`: with a password it then gets the bot's reserved device without a token
    and logs in later, in the background (see `App.start`).
    """
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    db = await open_database(cfg.database_url)
    sealer = make_sealer(cfg)
    try:
        # Invitations and pair addresses an older Confidant kept in clear are sealed before
        # anything reads them.
        async with db.transaction() as tx:
            await invitations.seal_clear_rows(tx, sealer)
            sealed_addresses = await pairs.seal_clear_rows(tx, sealer)
        if sealed_addresses:
            await pairs.reclaim_space(db)
    except BaseException:
        await db.close()
        raise
    rest = MatrixRest(cfg.homeserver.url, None, verify_tls=cfg.homeserver.verify_tls)
    try:
        creds = await bot_credentials(cfg, rest, defer_login=defer_login)
    except BaseException:
        await rest.close()
        await db.close()
        raise
    renderer = Renderer(templates_dir, overrides=cfg.templates_dir, language=cfg.practice.language)
    audit = AuditLog(
        db,
        sealer,
        cfg.audit.signing_key.get_secret_value(),
        checkpoint_every=cfg.audit.checkpoint_every,
    )
    manager = PairManager(db, rest, renderer, sealer, audit, practice_facts(cfg, creds.user_id))
    return Parts(cfg, db, rest, renderer, sealer, audit, creds, manager)


def bot_password(cfg: Config) -> str | None:
    return cfg.bot.password.get_secret_value() if cfg.bot.password else None


def bot_access_token(cfg: Config) -> str | None:
    return cfg.bot.access_token.get_secret_value() if cfg.bot.access_token else None


async def log_in(cfg: Config, rest: MatrixRest) -> BotCredentials:
    """The saved session, or a login now (which saves it)."""
    return await ensure_credentials(
        rest,
        cfg.data_dir,
        user_id=cfg.bot.user_id,
        password=bot_password(cfg),
        access_token=bot_access_token(cfg),
        device_name=cfg.bot.device_name,
    )


async def bot_credentials(cfg: Config, rest: MatrixRest, *, defer_login: bool) -> BotCredentials:
    """The bot's credentials, asking the homeserver only when that cannot wait."""
    if not defer_login:
        return await log_in(cfg, rest)
    creds = deferred_credentials(
        cfg.data_dir,
        user_id=cfg.bot.user_id,
        password=bot_password(cfg),
        access_token=bot_access_token(cfg),
    )
    if creds is None:
        # A configured access token names a device only the homeserver knows.
        return await retry("login", lambda: log_in(cfg, rest), Backoff())
    rest.access_token = creds.access_token or None
    return creds
