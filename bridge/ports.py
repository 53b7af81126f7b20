"""What one feature offers the others and the faces: typed ports, filled at install time.

A feature never imports another feature. When one needs something another owns, the owner
puts it into `Host.ports` when it is installed, and the user reads it from there when it
needs it (at that moment, not at its own install time, so the order in which features are
installed does not matter). A port is None while no installed feature provides it.

| port | provided by | used by |
| --- | --- | --- |
| `meetings` | video | sessions (links of a video session) |
| `invitations` | onboarding | the HTTP API |
| `voice_uploads` | voice | the HTTP API |
| `Host.selfcheck` | self-check | /health, /metrics |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from bridge.core.model import Pair
from bridge.store.invitations import InvitationRecord


class PortMissing(RuntimeError):
    """A port was used while the feature that provides it is not installed."""

    def __init__(self, port: str, feature: str) -> None:
        super().__init__(f"{port} needs the {feature} feature, which is not installed")
        self.port = port
        self.feature = feature


# ---------------------------------------------------------------- video


@dataclass(frozen=True, slots=True)
class MeetingLinks:
    """The links of one meeting: plain, and personal ones when Jitsi wants tokens."""

    plain: str
    patient: str | None = None
    therapist: str | None = None


class MeetingLinker(Protocol):
    """The links of a Jitsi meeting for the members of a pair."""

    def __call__(self, meeting: str, pair: Pair, now: datetime) -> MeetingLinks:
        """The plain link and, with `jitsi.jwt`, each member's personal link."""
        ...


# ---------------------------------------------------------------- onboarding

#: How long an invitation code stays valid unless told otherwise.
DEFAULT_VALIDITY = timedelta(days=7)


class OnboardingError(Exception):
    """An onboarding step that cannot be done; the text says what to do, in one line."""


class AdminUnavailable(OnboardingError):
    """The Synapse admin API cannot be used (not Synapse, no token, not an admin)."""


class ResendLimited(OnboardingError):
    """An invitation was e-mailed too often lately; it may go again in `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Invited:
    """A stored invitation and whether its e-mail went out (`email_error` says why not)."""

    record: InvitationRecord
    email_sent: bool
    email_error: str | None = None


class InvitationDesk(Protocol):
    """The invitation use cases, acting as the API.

    They raise `OnboardingError` (`AdminUnavailable` when the homeserver's admin API cannot
    be used) and the mailer's `MailError`.
    """

    def mail_on(self) -> bool:
        """Whether outbound e-mail is enabled right now."""
        ...

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
        """Store the invitation, then e-mail it when e-mail is on (a relay failure keeps it).

        `language`: the e-mail's and the patient's texts' (None: the practice's)."""
        ...

    async def resend(self, invitation_id: str) -> InvitationRecord: ...

    async def revoke(self, invitation_id: str) -> InvitationRecord: ...

    async def match(self, invitation_id: str, user_id: str) -> InvitationRecord:
        """Pair the invitation with the account that used it; the bridge picks the pair up."""
        ...


# ---------------------------------------------------------------- voice


@dataclass(frozen=True)
class QueuedVoice:
    job_id: str
    duration_ms: int


class VoiceUploads(Protocol):
    """Audio converted to a voice message and queued for the pair room, acting as the API."""

    @property
    def max_bytes(self) -> int:
        """The largest upload taken, in bytes."""
        ...

    async def __call__(self, pair_id: str, data: bytes, filename: str | None) -> QueuedVoice:
        """Raises `AudioError` (with a one-line reason) when it cannot become a voice message."""
        ...


# ---------------------------------------------------------------- self-check


@dataclass
class SelfCheckFigures:
    """What /metrics shows of the self-check of the bot's posts (counts only)."""

    up: bool
    #: Every ended check by outcome: readable, unreadable (re-posted or not), unchecked.
    checks: dict[str, int] = field(default_factory=dict)
    waiting: int = 0
    reposts: int = 0
    repairs_pending: int = 0


class SelfCheckFace(Protocol):
    """The self-check as /health and /metrics read it."""

    async def health(self) -> tuple[bool, str, dict[str, Any]]: ...
    async def figures(self) -> SelfCheckFigures | None: ...


# ---------------------------------------------------------------- the registry


@dataclass
class Ports:
    """The ports of the running bridge; each is filled by the feature named beside it."""

    #: Video.
    meetings: MeetingLinker | None = None
    #: Onboarding.
    invitations: InvitationDesk | None = None
    #: Voice.
    voice_uploads: VoiceUploads | None = None
