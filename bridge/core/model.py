"""Shared vocabulary of the core: roles, message kinds, events in and effects out.

Adapters translate the outside world into these events and perform these effects;
the core never awaits anything. Times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Role(enum.StrEnum):
    """Who a Matrix user is in a pair room."""

    PATIENT = "patient"
    THERAPIST = "therapist"
    BOT = "bot"
    OUTSIDER = "outsider"


class Kind(enum.StrEnum):
    """What an event in a pair room is."""

    TEXT = "text"
    NOTICE = "notice"
    EMOTE = "emote"
    IMAGE = "image"
    FILE = "file"
    AUDIO = "audio"
    VOICE = "voice"
    VIDEO = "video"
    LOCATION = "location"
    REACTION = "reaction"
    EDIT = "edit"
    REDACTION = "redaction"
    MEMBERSHIP = "membership"
    EMAIL = "email"
    STATE = "state"
    UNDECRYPTABLE = "undecryptable"
    OTHER = "other"


#: Kinds that count as a message for the SLA clock (a patient wrote something).
CONVERSATIONAL_KINDS = frozenset(
    {
        Kind.TEXT,
        Kind.EMOTE,
        Kind.IMAGE,
        Kind.FILE,
        Kind.AUDIO,
        Kind.VOICE,
        Kind.VIDEO,
        Kind.LOCATION,
        Kind.EMAIL,
    }
)


@dataclass(frozen=True, slots=True)
class Pair:
    """One patient with one therapist, and the E2EE room they share."""

    pair_id: str
    patient_id: str
    therapist_id: str
    room_id: str
    policy: str = "default"
    label: str = ""
    status: str = "active"


# ---------------------------------------------------------------- events in

#: The channel of what members write in the pair room itself.
MATRIX = "matrix"


@dataclass(frozen=True, slots=True)
class RoomEvent:
    """Something seen in a pair room (after decryption)."""

    pair_id: str
    room_id: str
    event_id: str
    sender: str
    role: Role
    kind: Kind
    origin_ts: datetime
    seen_at: datetime
    content_sha256: str
    #: The command text when the event is a `!command` (never logged).
    command: str | None = None
    #: Event ids this one points at (edit target, redaction target, reply).
    relates_to: str | None = None
    membership: str | None = None
    state_key: str | None = None
    #: Where it came from: the pair room itself (`MATRIX`) or another channel ("email"),
    #: whose message the bot posted into the room on the sender's behalf.
    channel: str = MATRIX
    #: The Matrix event type, when the event came from the room ("m.room.power_levels").
    event_type: str | None = None


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A scheduled timer came due (or was found overdue at start)."""

    timer_id: str
    timer_kind: str
    pair_id: str | None
    due_at: datetime


# ---------------------------------------------------------------- effects out


@dataclass(frozen=True, slots=True)
class SendMessage:
    """Post a message, rendered from `template`, into a room through the outbox."""

    room_id: str
    template: str
    context: dict[str, Any] = field(default_factory=dict)
    #: Stable transaction id: the same logical message always gets the same one.
    txn_id: str = ""
    pair_id: str | None = None
    msgtype: str = "m.notice"
    #: The member the notice is for (first contact): it waits until they have joined and
    #: have a device, so that device receives the post's room key.
    await_member: str | None = None
    #: The language to write it in; None: that of whoever reads the room (the pair room's
    #: patient, the desk room's therapist), else the practice's.
    language: str | None = None


@dataclass(frozen=True, slots=True)
class PostContent:
    """Post content that is ready as it is (a relayed message, an uploaded attachment)
    through the outbox; SendMessage is for the bot's own texts, rendered from templates."""

    room_id: str
    content: dict[str, Any] = field(repr=False)
    #: Stable transaction id, as for SendMessage.
    txn_id: str
    #: What the outbox row is, for metrics and logs ("email", "email_attachment", ...).
    kind: str
    pair_id: str | None = None
    event_type: str = "m.room.message"
    #: When the channel accepted the message this post relays: the room's posts leave in
    #: that order, whatever order retries and restarts relay them in.
    accepted_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class KeepMedia:
    """Keep bytes sealed in the audit media store; entries name them by their SHA-256."""

    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class AppendAudit:
    """Record one audit entry. `content` is stored encrypted, apart from the chain."""

    pair_id: str | None
    action: str
    actor: str
    details: dict[str, Any] = field(default_factory=dict)
    event_id: str | None = None
    content: bytes | None = None
    outcome: str = "ok"


@dataclass(frozen=True, slots=True)
class ScheduleTimer:
    """Make sure a timer fires at `at` (replaces a timer with the same id)."""

    timer_id: str
    timer_kind: str
    at: datetime
    pair_id: str | None = None


@dataclass(frozen=True, slots=True)
class CancelTimer:
    timer_id: str


@dataclass(frozen=True, slots=True)
class SendEmail:
    """Send a notification e-mail through the practice relay (never clinical content)."""

    to: str
    template: str
    context: dict[str, Any] = field(default_factory=dict)
    #: The language to write it in; None: the recipient's, else the practice's.
    language: str | None = None


@dataclass(frozen=True, slots=True)
class RoomAction:
    """Change membership: kick an outsider, invite a member, or leave a room."""

    room_id: str
    action: str  # "kick" | "invite" | "leave"
    user_id: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Invoke:
    """Ask the service to run a named operation that needs I/O (export, video, due list).

    Keeps command policy pure: the core decides *that* something happens and with which
    parameters; the service owns *how* (database reads, uploads, rendering).
    """

    operation: str
    room_id: str
    params: dict[str, Any] = field(default_factory=dict)
    pair_id: str | None = None


Effect = (
    SendMessage
    | PostContent
    | KeepMedia
    | AppendAudit
    | ScheduleTimer
    | CancelTimer
    | SendEmail
    | RoomAction
    | Invoke
)
