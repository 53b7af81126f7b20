"""Runs the admin HTTP API, dashboard, /health and /metrics inside the bridge.

The web face (`bridge.web`) knows the bridge only as a `WebDeps`; this installer builds
one from the running bridge: its parts, the clock, the outbox kick, where /health looks,
and the use cases the API calls (invitations, voice, transcript export, audit check),
each acting as "api".
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from bridge import metrics
from bridge.adapters.mailer import Mailer, MailError
from bridge.adapters.voice import convert_to_voice_async
from bridge.audit.export import export_pair
from bridge.audit.verify import verify
from bridge.core.audit import VerifyResult, public_key_bytes
from bridge.onboarding import Onboarding
from bridge.store.invitations import InvitationRecord
from bridge.voice_feature import VOICE_LIMITS, queue_voice
from bridge.web.deps import HealthSources, Invited, MetricsSource, QueuedVoice, WebDeps
from bridge.web.server import HttpServer

if TYPE_CHECKING:
    from collections.abc import Callable

    from bridge.host import Host, Installer
    from bridge.parts import Parts
    from bridge.service import Service

ACTOR = "api"


class _Invitations:
    """The invitation use cases with the bridge's mailer at the time of the call."""

    def __init__(self, app: Host, parts: Parts, service: Service) -> None:
        self.app = app
        self.parts = parts
        self.service = service

    def _onboarding(self) -> Onboarding:
        mailer = self.service.mailer
        return Onboarding(
            self.parts,
            mailer if isinstance(mailer, Mailer) else None,
            actor=ACTOR,
            clock=self.service.clock,
        )

    def mail_on(self) -> bool:
        return self._onboarding().mailer is not None

    async def invite(
        self, email: str, therapist: str, *, name: str | None, policy: str, valid_for: timedelta
    ) -> Invited:
        onboarding = self._onboarding()
        mailer, onboarding.mailer = onboarding.mailer, None
        # Stored first, e-mailed second: a relay failure must not lose the invitation.
        record = await onboarding.invite(
            email, therapist, self.service.clock(), name=name, policy=policy, valid_for=valid_for
        )
        if mailer is None:
            return Invited(record, email_sent=False)
        onboarding.mailer = mailer
        try:
            await onboarding.send(record, self.service.clock())
        except MailError as err:
            return Invited(await onboarding.get(record.invitation_id), False, str(err))
        return Invited(await onboarding.get(record.invitation_id), email_sent=True)

    async def resend(self, invitation_id: str) -> InvitationRecord:
        return await self._onboarding().resend(invitation_id, self.service.clock())

    async def revoke(self, invitation_id: str) -> InvitationRecord:
        return await self._onboarding().revoke(invitation_id, self.service.clock())

    async def match(self, invitation_id: str, user_id: str) -> InvitationRecord:
        record = await self._onboarding().match(invitation_id, user_id, self.service.clock())
        # The pair was made outside an event: let the running bridge pick it up.
        await self.service.refresh_rooms()
        if self.app.outbox is not None:
            self.app.outbox.kick()
        return record


class _VoiceUploads:
    """Audio converted to Ogg Opus and queued, sealed, for the voice worker to post."""

    max_bytes = VOICE_LIMITS.max_input_bytes

    def __init__(self, parts: Parts, service: Service) -> None:
        self.parts = parts
        self.service = service

    async def __call__(self, pair_id: str, data: bytes, filename: str | None) -> QueuedVoice:
        clip = await convert_to_voice_async(data, filename_hint=filename, limits=VOICE_LIMITS)
        now = self.service.clock()
        async with self.parts.db.transaction() as tx:
            job_id = await queue_voice(tx, self.parts.audit, pair_id, clip, ACTOR, now)
        return QueuedVoice(job_id, clip.duration_ms)


def web_deps(app: Host) -> WebDeps:
    """What the web face may use of `app` (built, not necessarily started)."""
    assert app.parts is not None and app.service is not None
    parts, service, cfg = app.parts, app.service, app.cfg
    clock = service.clock

    def kick_outbox() -> None:
        if app.outbox is not None:
            app.outbox.kick()

    def matrix() -> tuple[bool, str] | None:
        # Logged in, keys up, syncing and cross-signed; until then nothing is posted.
        bring_up = app.matrix
        return None if bring_up is None else (bring_up.ready.is_set(), bring_up.detail)

    tally = metrics.AuditTally()

    async def scrape() -> bytes:
        # One tally for the server's life: each scrape reads only the audit entries since the last.
        return metrics.render(await metrics.gather(app, clock(), tally))

    async def export_transcript(
        pair_id: str, start: datetime | None, end: datetime | None, out: Path
    ) -> str:
        result = await export_pair(
            parts.db,
            parts.sealer,
            cfg.audit.signing_key.get_secret_value(),
            pair_id,
            start,
            end,
            out,
            parts.renderer.templates_dir,
            now=clock(),
            actor=ACTOR,
            tz=cfg.practice.timezone,
            audit_log=parts.audit,
        )
        return result.sha256

    async def verify_audit(pair_id: str | None, check_content: bool) -> VerifyResult:
        audit = parts.audit
        result = await verify(
            parts.db,
            pair_id,
            trusted_key=public_key_bytes(audit.signing_key.public_key()),
            sealer=parts.sealer if check_content else None,
        )
        details: dict[str, object] = {"count": result.count, "head": result.head_hash.hex()}
        if not result.ok:
            details.update({"broken_seq": result.broken_seq, "kind": str(result.kind)})
        # The check itself goes into the chain, as `confidant audit verify` does.
        await audit.record(
            {
                "pair_id": pair_id,
                "action": "audit.verify",
                "actor": ACTOR,
                "details": details,
                "outcome": "ok" if result.ok else "failed",
            },
            clock(),
        )
        return result

    smtp = cfg.smtp
    return WebDeps(
        db=parts.db,
        pairs=parts.pairs,
        clock=clock,
        kick_outbox=kick_outbox,
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
        invitations=_Invitations(app, parts, service),
        voice=_VoiceUploads(parts, service),
        export_transcript=export_transcript,
        verify_audit=verify_audit,
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
