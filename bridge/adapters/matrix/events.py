"""Room events as the service sees them, and what is kept of one that waits for its key.

No nio types leave the adapter: `to_incoming` translates a decrypted nio event, and a held
event keeps only its Megolm envelope (`megolm_source`), rebuilt by `megolm_event`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from nio import MegolmEvent


@dataclass(frozen=True)
class IncomingEvent:
    """One room event as the service sees it: decrypted content, no nio types."""

    room_id: str
    event_id: str
    sender: str
    type: str
    content: dict[str, Any]
    origin_server_ts: int
    state_key: str | None = None
    redacts: str | None = None
    encrypted: bool = False
    #: False when the event stayed undecryptable after the grace period.
    decrypted: bool = True


@dataclass(frozen=True)
class HeldEvent:
    """An encrypted event kept durably while it waits for its room key.

    `source` holds the Megolm ciphertext and routing fields only (see `megolm_source`);
    `first_seen_ms` is wall-clock time, so the grace survives restarts and takeovers.
    """

    room_id: str
    event_id: str
    sender: str
    origin_server_ts: int
    source: dict[str, Any]
    first_seen_ms: int


#: The fields of an encrypted event's content worth keeping: the Megolm envelope, and the
#: relation the homeserver sees in the clear (nio copies it into the decrypted event).
_MEGOLM_CONTENT_KEYS = (
    "algorithm",
    "ciphertext",
    "device_id",
    "m.relates_to",
    "sender_key",
    "session_id",
)


def megolm_source(room_id: str, ev: MegolmEvent) -> dict[str, Any]:
    """What is stored of an event that waits for its key: ciphertext and routing only.

    Anything else the homeserver sent along (`unsigned`: relations, redactions) is left
    out, so a held row can never carry more than the homeserver itself could read.
    """
    content = ev.source.get("content", {})
    return {
        "type": "m.room.encrypted",
        "room_id": room_id,
        "event_id": ev.event_id,
        "sender": ev.sender,
        "origin_server_ts": ev.server_timestamp,
        "content": {k: content[k] for k in _MEGOLM_CONTENT_KEYS if k in content},
    }


def megolm_event(held: HeldEvent) -> MegolmEvent | None:
    """Rebuild the nio event from a held source; None if it no longer parses."""
    ev = MegolmEvent.from_dict({**held.source, "room_id": held.room_id})
    if not isinstance(ev, MegolmEvent):
        return None
    ev.room_id = held.room_id
    return ev


def to_incoming(room_id: str, ev: Any) -> IncomingEvent | None:
    """Translate a (decrypted) nio event; unknown shapes still keep their source."""
    source: dict[str, Any] = getattr(ev, "source", None) or {}
    event_id = getattr(ev, "event_id", None) or source.get("event_id")
    if not event_id:
        return None
    content = source.get("content", {}) if isinstance(source.get("content"), dict) else {}
    return IncomingEvent(
        room_id=room_id,
        event_id=str(event_id),
        sender=str(getattr(ev, "sender", None) or source.get("sender", "")),
        type=str(source.get("type", "")),
        content=content,
        origin_server_ts=int(
            getattr(ev, "server_timestamp", 0) or source.get("origin_server_ts", 0)
        ),
        state_key=source.get("state_key"),
        redacts=source.get("redacts"),
        encrypted=bool(getattr(ev, "decrypted", False)),
    )


EventCallback = Callable[[IncomingEvent], Awaitable[None]]
