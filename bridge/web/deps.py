"""What the web face may use of the running bridge: one typed object, built by the installer.

Handlers read `deps(request)` and nothing else of the bridge; the use cases they share
with the command line (the transcript export, the SLA report in `bridge.features`) take
their parts from here. What changes while the bridge runs (the bot's bring-up, its sync,
the self-check, the mailer) is read at request time, through the callables and use cases
here, so a page shows the bridge as it is now.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, Protocol

from aiohttp import web

from bridge.core.audit import VerifyResult
from bridge.core.model import AppendAudit, Invoke
from bridge.parts import Parts
from bridge.ports import InvitationDesk, VoiceUploads
from bridge.provision import PairManager
from bridge.store.base import Database
from bridge.web.dashboard_cache import ReportCache


class SyncReading(Protocol):
    """The bot's sync loop as /health reads it."""

    @property
    def lag_seconds(self) -> float: ...

    @property
    def last_sync_ok_at(self) -> float: ...


class WitnessHealth(Protocol):
    """The self-check of the bot's posts as /health reads it."""

    async def health(self) -> tuple[bool, str, dict[str, Any]]:
        """(healthy, one-line detail, the figures /health shows under "witness")."""
        ...


@dataclass(frozen=True)
class HealthSources:
    """Where /health looks, besides the database."""

    #: Answers when the homeserver does; raises otherwise.
    homeserver: Callable[[], Awaitable[object]]
    #: (ready, one-line detail) of the bot's bring-up on the homeserver; None before it began.
    matrix: Callable[[], tuple[bool, str] | None]
    #: The bot's sync figures; None without a bot.
    sync: Callable[[], SyncReading | None]
    #: The self-check of the bot's posts; None when it is not installed.
    witness: Callable[[], WitnessHealth | None]
    #: Where the SMTP server listens, when it is enabled.
    smtp: tuple[str, int] | None = None


@dataclass(frozen=True)
class MetricsSource:
    """The Prometheus scrape: the rendered text and its content type."""

    scrape: Callable[[], Awaitable[bytes]]
    content_type: str


class AuditCheck(Protocol):
    async def __call__(self, pair_id: str | None, check_content: bool) -> VerifyResult:
        """Verify the chain (and the sealed content if asked); nothing is written to it."""
        ...


class DisplayNames(Protocol):
    """Therapists' display names for the dashboard (their ids where none is known)."""

    async def names(self, user_ids: Iterable[str]) -> dict[str, str]: ...


class IdsAsNames:
    """Names nobody looked up: each user id stands for itself."""

    async def names(self, user_ids: Iterable[str]) -> dict[str, str]:
        return {user_id: user_id for user_id in user_ids}


@dataclass(frozen=True)
class WebDeps:
    """Everything the web face uses of the running bridge."""

    #: What the use cases the handlers call work with (`bridge.features`).
    parts: Parts
    db: Database
    #: The pair use cases; each wakes the outbox worker for the posts it queued.
    pairs: PairManager
    #: The bridge's clock (UTC).
    clock: Callable[[], datetime]
    #: Whether a token is one of the admin tokens (constant time).
    token_ok: Callable[[str], bool]
    practice_name: str
    practice_tz: tzinfo
    #: The SLA policies by name, as their settings.
    policies: Mapping[str, Mapping[str, Any]]
    #: Renders a dashboard template (`admin/NAME.html.j2`) with a context.
    render_page: Callable[[str, dict[str, Any]], str]
    health: HealthSources
    metrics: MetricsSource
    invitations: InvitationDesk
    voice: VoiceUploads
    verify_audit: AuditCheck
    #: Therapists' display names, looked up once and kept (the dashboard shows them).
    names: DisplayNames = field(default_factory=IdsAsNames)
    #: Runs an operation a feature performs (the SLA's away and back), as a desk command would.
    invoke: Callable[[Invoke], Awaitable[None]] | None = None
    #: Appends one audit entry the core built, in a transaction of its own.
    record_audit: Callable[[AppendAudit], Awaitable[None]] | None = None
    #: The SLA report's rows the trends page read lately.
    reports: ReportCache = field(default_factory=ReportCache)


DEPS_KEY = web.AppKey("deps", WebDeps)


def deps(request: web.Request) -> WebDeps:
    return request.app[DEPS_KEY]
