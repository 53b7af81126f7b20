"""Inbound e-mail in the running bridge: the SMTP listener and the relay worker.

`install_email(app)` does nothing unless `smtp.enabled`. Otherwise the listener takes
mail for the pairs' addresses from the start, homeserver or not; a message is sealed and
committed in the inbox before the sender gets `250` (`451 4.3.0` when the commit
fails), and the relay worker hands it to the service as an inbound message, which posts it
into the pair room through the outbox and lets the pair hooks (the reply clock) see the
patient's message. Refused messages of a known pair are audited as "email.rejected" with
their reason code only. Delivery reports about the mail sent to patients come back to each
mail's own return path and are recorded against that mail (`bounces.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bridge.adapters.smtp import InboundHandler, SmtpListener, SmtpSettings
from bridge.adapters.voice import VoiceLimits
from bridge.core import inbound as core
from bridge.email.authcheck import Resolver
from bridge.email.inbox import make_inbox_accept, make_pair_routing
from bridge.features.email.bounces import BounceDesk
from bridge.features.email.inbound import CHANNEL
from bridge.features.email.outbound import OutboundMail, install_outbound
from bridge.features.email.relay import ACTOR, EmailRelay, InboundPipeline, Uploader
from bridge.sealing import Sealer
from bridge.store.base import Database, to_ms

if TYPE_CHECKING:
    from bridge.audit.log import AuditLog
    from bridge.config import Config
    from bridge.host import Host

__all__ = [
    "REJECTED_ACTION",
    "BounceDesk",
    "EmailFeature",
    "attach_email",
    "build_email",
    "install_email",
]

log = logging.getLogger(__name__)

REJECTED_ACTION = f"{CHANNEL}.rejected"
#: The refusal that a later delivery may get past (the sender's DNS did not answer).
TEMPORARY_REFUSALS = frozenset({"dns_temperror"})
#: Longest audio attachment turned into a voice message; longer audio is posted as a file.
VOICE_MAX_SECONDS = 15 * 60


@dataclass
class EmailFeature:
    """The running parts of inbound e-mail (tests read the bound port from `listener`)."""

    listener: SmtpListener
    relay: EmailRelay | None
    #: Answers by e-mail (`smtp.replies`), when on.
    outbound: OutboundMail | None = None

    async def start(self) -> None:
        """Listen for mail, then relay whatever is pending."""
        await self.listen()
        await self.start_relay()

    async def listen(self) -> None:
        """Take mail: this needs only the database, so it runs while the homeserver is down."""
        await self.listener.start()

    async def start_relay(self) -> None:
        """Relay whatever is pending (once the bot can upload and post)."""
        if self.relay is not None:
            self.relay.start()

    async def stop(self) -> None:
        """Stop taking mail, then stop relaying (pending mail waits for the next start)."""
        await self.listener.stop()
        if self.relay is not None:
            await self.relay.stop()


async def install_email(app: Host) -> None:
    """The feature installer for `bridge.features`: inbound e-mail when smtp is enabled."""
    await attach_email(app)


async def attach_email(
    app: Host,
    *,
    port: int | None = None,
    resolver: Resolver | None = None,
    run_relay: bool = True,
) -> EmailFeature | None:
    """Install inbound e-mail on the App and return its parts (None when smtp is disabled).

    `port` overrides the configured one (0: any free port); `resolver` replaces the
    system DNS for direct sender authentication; `run_relay=False` only accepts mail
    and leaves relaying to a later start.
    """
    if not app.cfg.smtp.enabled:
        return None
    service, parts = app.service, app.parts
    domain = app.cfg.smtp.inbound_domain
    # On whenever mail is taken, answers by e-mail or not: mail sent before they were
    # turned off may still bounce.
    bounces = (
        None
        if domain is None
        else BounceDesk(
            db=parts.db,
            sealer=parts.sealer,
            audit=parts.audit,
            renderer=parts.renderer,
            clock=service.clock,
            inbound_domain=domain,
            timezone=app.cfg.practice.timezone,
            wake_outbox=app.outbox.kick,
        )
    )
    feature = build_email(
        app.cfg,
        db=parts.db,
        sealer=parts.sealer,
        audit=parts.audit,
        template_env=parts.renderer.env,
        environment_for=parts.renderer.environment,
        uploader=app.bot,
        clock=service.clock,
        pipeline=service,
        port=port,
        resolver=resolver,
        run_relay=run_relay,
        bounces=bounces,
    )
    app.on_listen(feature.listen)
    app.on_start(feature.start_relay)
    app.on_stop(feature.stop)
    feature.outbound = await install_outbound(app)
    if feature.outbound is not None and feature.relay is not None:
        feature.relay.decrypt = feature.outbound.decryptor
    log.info("inbound e-mail installed", extra={"relay": run_relay})
    return feature


def build_email(
    cfg: Config,
    *,
    db: Database,
    sealer: Sealer,
    audit: AuditLog,
    template_env: Any,
    uploader: Uploader,
    clock: Callable[[], datetime],
    environment_for: Callable[[str | None], Any] | None = None,
    pipeline: InboundPipeline | None = None,
    port: int | None = None,
    resolver: Resolver | None = None,
    run_relay: bool = True,
    bounces: BounceDesk | None = None,
) -> EmailFeature:
    """The listener and relay from their parts, not started (see `attach_email`).

    `pipeline` (the Service) takes each relayed e-mail; it is needed unless `run_relay`
    is False. `bounces` takes the delivery reports sent to the return paths of our mail;
    without it they are refused as unknown recipients.
    """
    domain = cfg.smtp.inbound_domain
    if domain is None:
        raise ValueError("smtp.inbound_domain is required for inbound e-mail")
    settings = SmtpSettings.from_config(cfg.smtp)
    if port is not None:
        settings = replace(settings, port=port)

    relay: EmailRelay | None = None
    if run_relay:
        if pipeline is None:
            raise ValueError("relaying e-mail needs the service's pipeline")
        relay = EmailRelay(
            db=db,
            sealer=sealer,
            audit=audit,
            template_env=template_env,
            environment_for=environment_for,
            uploader=uploader,
            pipeline=pipeline,
            clock=clock,
            inbound_domain=domain,
            voice_limits=VoiceLimits(
                max_input_bytes=cfg.smtp.max_message_bytes, max_seconds=VOICE_MAX_SECONDS
            ),
        )

    async def stored(pair_id: str, email_id: str, duplicate: bool) -> None:
        if relay is not None and not duplicate:
            relay.kick()

    async def rejected(pair_id: str, reason: str, digest: str) -> None:
        now = clock()
        entry = core.rejected(
            CHANNEL, pair_id, ACTOR, reason, digest, temporary=reason in TEMPORARY_REFUSALS
        )
        async with db.transaction() as tx:
            await audit.append(tx, entry, now)

    resolve_recipient, allowed_senders = make_pair_routing(db, sealer, domain)
    handler = InboundHandler(
        resolve_recipient=resolve_recipient,
        allowed_senders=allowed_senders,
        accept=make_inbox_accept(db, sealer, lambda: to_ms(clock()), on_stored=stored),
        policy=settings.auth,
        resolver=resolver,
        parse_limits=settings.parse_limits,
        on_rejected=rejected,
        resolve_bounce=None if bounces is None else bounces.resolve,
        on_report=None if bounces is None else bounces.record,
    )
    return EmailFeature(SmtpListener(settings, handler), relay)
