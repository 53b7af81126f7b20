"""Runs the admin HTTP API, dashboard, /health and /metrics inside the bridge.

The web face (`bridge.web`) knows the bridge only as a `WebDeps`; this installer builds
one from the running bridge: its parts, the clock, where /health looks, and the use
cases the API calls, each acting as "api": the audit check here (it writes nothing),
invitations and voice uploads through the ports the onboarding and voice features fill
(`bridge.ports`), read per request. The transcript export and the SLA report are the
command line's use cases too; the handlers call them with the parts
(`bridge.features.export`, `.sla`).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from bridge import metrics
from bridge.audit.verify import verify
from bridge.core.audit import VerifyResult, public_key_bytes
from bridge.core.model import AppendAudit, Invoke
from bridge.ports import (
    InvitationDesk,
    Invited,
    PortMissing,
    Ports,
    QueuedVoice,
    VoiceUploads,
)
from bridge.store.invitations import InvitationRecord
from bridge.web.dashboard_names import ProfileNames, profile_path
from bridge.web.deps import HealthSources, MetricsSource, WebDeps
from bridge.web.server import HttpServer

if TYPE_CHECKING:
    from collections.abc import Callable

    from bridge.host import Host, Installer

log = logging.getLogger(__name__)

ACTOR = "api"


class _Invitations:
    """The onboarding feature's invitation desk, looked up per call (it may be installed
    after this one)."""

    def __init__(self, ports: Ports) -> None:
        self.ports = ports

    def _desk(self) -> InvitationDesk:
        desk = self.ports.invitations
        if desk is None:
            raise PortMissing("invitations", "onboarding")
        return desk

    def mail_on(self) -> bool:
        return self._desk().mail_on()

    async def invite(
        self,
        email: str,
        therapist: str,
        *,
        name: str | None,
        policy: str,
        valid_for: timedelta,
        language: str | None = None,
    ) -> Invited:
        return await self._desk().invite(
            email, therapist, name=name, policy=policy, valid_for=valid_for, language=language
        )

    async def resend(self, invitation_id: str) -> InvitationRecord:
        return await self._desk().resend(invitation_id)

    async def revoke(self, invitation_id: str) -> InvitationRecord:
        return await self._desk().revoke(invitation_id)

    async def match(self, invitation_id: str, user_id: str) -> InvitationRecord:
        return await self._desk().match(invitation_id, user_id)


class _VoiceUploads:
    """The voice feature's upload queue, looked up per call."""

    def __init__(self, ports: Ports) -> None:
        self.ports = ports

    def _uploads(self) -> VoiceUploads:
        uploads = self.ports.voice_uploads
        if uploads is None:
            raise PortMissing("voice_uploads", "voice")
        return uploads

    @property
    def max_bytes(self) -> int:
        return self._uploads().max_bytes

    async def __call__(self, pair_id: str, data: bytes, filename: str | None) -> QueuedVoice:
        return await self._uploads()(pair_id, data, filename)


def web_deps(app: Host) -> WebDeps:
    """What the web face may use of `app` (built, not necessarily started)."""
    parts, service, cfg = app.parts, app.service, app.cfg
    clock = service.clock

    def matrix() -> tuple[bool, str] | None:
        # Logged in, keys up, syncing and cross-signed; until then nothing is posted.
        bring_up = app.matrix
        return None if bring_up is None else (bring_up.ready.is_set(), bring_up.detail)

    tally = metrics.AuditTally()

    async def scrape() -> bytes:
        # One tally for the server's life: each scrape reads only the audit entries since the last.
        return metrics.render(await metrics.gather(app, clock(), tally))

    async def verify_audit(pair_id: str | None, check_content: bool) -> VerifyResult:
        audit = parts.audit
        result = await verify(
            parts.db,
            pair_id,
            trusted_key=public_key_bytes(audit.signing_key.public_key()),
            sealer=parts.sealer if check_content else None,
        )
        # Nothing is written to the chain it checks (as `confidant audit verify`): a check
        # that appended would move the head every external checkpoint has to match.
        log.info(
            "audit verify (api): ok=%s count=%d broken_seq=%s",
            result.ok,
            result.count,
            result.broken_seq,
        )
        return result

    async def record_audit(entry: AppendAudit) -> None:
        now = clock()
        async with parts.db.transaction() as tx:
            await service.apply_durable(tx, [entry], now)

    async def invoke(operation: Invoke) -> None:
        await service.apply_after([operation])

    smtp = cfg.smtp
    return WebDeps(
        parts=parts,
        db=parts.db,
        pairs=parts.pairs,
        clock=clock,
        token_ok=cfg.http.token_ok,
        practice_name=cfg.practice.name,
        practice_tz=cfg.practice.tzinfo,
        policies={name: policy.model_dump() for name, policy in cfg.policies.items()},
        render_page=parts.renderer.page,
        health=HealthSources(
            homeserver=lambda: parts.rest.request("GET", "/_matrix/client/versions", retries=1),
            matrix=matrix,
            sync=lambda: app.bot.stats if app.bot is not None else None,
            witness=lambda: app.selfcheck,
            smtp=(smtp.host, smtp.port) if smtp.enabled else None,
        ),
        metrics=MetricsSource(scrape=scrape, content_type=metrics.CONTENT_TYPE),
        invitations=_Invitations(app.ports),
        voice=_VoiceUploads(app.ports),
        verify_audit=verify_audit,
        names=ProfileNames(
            lambda user_id: parts.rest.request("GET", profile_path(user_id), retries=0)
        ),
        invoke=invoke,
        record_audit=record_audit,
    )


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
        # Pairs made, handed over or closed through the API are posted about at once.
        app.parts.pairs.wake_outbox = app.outbox.kick
        server = HttpServer(
            web_deps(app),
            host if host is not None else cfg.host,
            port if port is not None else cfg.port,
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
