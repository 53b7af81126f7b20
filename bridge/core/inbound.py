"""Messages that reach a pair by another channel than its room, and what the bridge does
about one (policy only, no I/O).

E-mail is such a channel; an SMS gateway or a web form would be the next. The channel's
converter turns what arrived into an `InboundMessage`: its sender authenticated as a member
of the pair, its content converted into the pair-room post, its attachments uploaded.
`decide_inbound` then decides, as `decide_pair_event` does for the room's own events: the
post and its attachments go out through the outbox under txn ids derived from the
message's own, the audit entry keeps the complete original (sealed), and the `RoomEvent`
it returns runs through the same pair hooks as a member's message in the room, so a
patient's e-mail opens the reply clock like any other patient message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bridge.core.audit import message_content, sha256_hex
from bridge.core.model import (
    AppendAudit,
    Effect,
    KeepMedia,
    Kind,
    Pair,
    PostContent,
    Role,
    RoomEvent,
)


@dataclass(frozen=True, slots=True)
class Media:
    """Bytes the audit keeps with an entry, and how the transcript names them."""

    filename: str
    mimetype: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class InboundAttachment:
    """One attachment of a message: as posted into the room (uploaded already) and kept."""

    media: Media
    #: The pair-room content it is posted as (`m.image`, `m.file`, a voice message).
    post: dict[str, Any] = field(repr=False)
    #: Audio that became a voice message.
    voice: bool = False


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One message of another channel, converted for its pair room."""

    channel: str
    pair_id: str
    #: Who sent it, as the channel authenticated them (a member of the pair).
    role: Role
    #: When the channel accepted it (an e-mail's acceptance): the room's posts leave in
    #: this order.
    origin_ts: datetime
    #: SHA-256 of the original as it arrived.
    content_sha256: str
    kind: Kind
    #: Stable id of the message: its post's outbox txn id, and the event id the pair hooks
    #: see (the reply clock's first event).
    txn_id: str
    #: The pair-room content that relays it ("E-mail from ...").
    post: dict[str, Any] = field(repr=False)
    #: The complete original, kept sealed with the audit entry.
    original: Media | None = None
    attachments: tuple[InboundAttachment, ...] = ()
    #: The channel's facts for the audit entry's details: ids, authentication, counts;
    #: never content.
    details: Mapping[str, Any] = field(default_factory=dict)
    #: Extra keys of the entry's sealed content (an e-mail's subject, addresses, Message-ID).
    record: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class InboundDecision:
    """What an inbound message does: its own effects, and the event the pair hooks see."""

    event: RoomEvent
    effects: list[Effect]


def relayed_action(channel: str) -> str:
    """The audit action of a relayed message ("relay.email")."""
    return f"relay.{channel}"


def attachment_txn_id(relay_txn: str, index: int) -> str:
    """The outbox txn id of the `index`-th attachment (from 1); sorts after the post's own."""
    return f"{relay_txn}.a{index:02d}"


def sender_of(pair: Pair, role: Role) -> str:
    """The Matrix user a channel's message is from: the pair's patient or therapist."""
    if role is Role.PATIENT:
        return pair.patient_id
    if role is Role.THERAPIST:
        return pair.therapist_id
    raise ValueError(f"an inbound message comes from a member of the pair, not a {role.value}")


def inbound_event(pair: Pair, msg: InboundMessage, now: datetime) -> RoomEvent:
    """The message as the pair hooks see it: the member's own message, in their room."""
    return RoomEvent(
        pair_id=pair.pair_id,
        room_id=pair.room_id,
        event_id=msg.txn_id,
        sender=sender_of(pair, msg.role),
        role=msg.role,
        kind=msg.kind,
        origin_ts=msg.origin_ts,
        seen_at=now,
        content_sha256=msg.content_sha256,
        channel=msg.channel,
    )


def relayed_entry(pair: Pair, msg: InboundMessage) -> tuple[list[KeepMedia], AppendAudit]:
    """The audit entry of a relayed message and the media its sealed content names."""
    media: list[KeepMedia] = []
    attachments: list[dict[str, Any]] = []
    for attachment in msg.attachments:
        kept = attachment.media
        media.append(KeepMedia(kept.data))
        attachments.append(
            {
                "filename": kept.filename,
                "mimetype": kept.mimetype,
                "size": len(kept.data),
                "media_ref": sha256_hex(kept.data),
                "voice": attachment.voice,
            }
        )
    original = msg.original
    if original is not None:
        media.append(KeepMedia(original.data))
    formatted = msg.post.get("formatted_body")
    content = message_content(
        msg.channel,
        str(msg.post.get("body", "")),
        formatted_body=None if formatted is None else str(formatted),
        filename=None if original is None else original.filename,
        mimetype=None if original is None else original.mimetype,
        media_ref=None if original is None else sha256_hex(original.data),
        attachments=attachments,
        **msg.record,
    )
    entry = AppendAudit(
        pair_id=pair.pair_id,
        action=relayed_action(msg.channel),
        actor=sender_of(pair, msg.role),
        details={
            **msg.details,
            "role": msg.role.value,
            "kind": msg.kind.value,
            "txn_id": msg.txn_id,
            "attachments": len(msg.attachments),
        },
        content=content,
    )
    return media, entry


def decide_inbound(pair: Pair, msg: InboundMessage, now: datetime) -> InboundDecision:
    """Post the message and its attachments, keep the original in the audit, and hand the
    pair hooks the member's message (the reply clock, ...)."""
    if msg.pair_id != pair.pair_id:
        raise ValueError("an inbound message is decided with its own pair")
    effects: list[Effect] = [
        PostContent(
            pair.room_id,
            msg.post,
            msg.txn_id,
            msg.channel,
            pair_id=pair.pair_id,
            accepted_at=msg.origin_ts,
        )
    ]
    for index, attachment in enumerate(msg.attachments, start=1):
        effects.append(
            PostContent(
                pair.room_id,
                attachment.post,
                attachment_txn_id(msg.txn_id, index),
                f"{msg.channel}_attachment",
                pair_id=pair.pair_id,
                accepted_at=msg.origin_ts,
            )
        )
    media, entry = relayed_entry(pair, msg)
    effects += media
    effects.append(entry)
    return InboundDecision(inbound_event(pair, msg, now), effects)


def relay_failed(
    channel: str, pair_id: str, actor: str, details: Mapping[str, Any], reason: str
) -> AppendAudit:
    """The entry of a message that can never be relayed ("email.relay_failed");
    `reason` is a code, safe to store."""
    return AppendAudit(
        pair_id=pair_id,
        action=f"{channel}.relay_failed",
        actor=actor,
        details={**details, "reason": reason},
        outcome="failed",
    )


def rejected(
    channel: str, pair_id: str, actor: str, reason: str, digest: str, *, temporary: bool
) -> AppendAudit:
    """The entry of a message of a known pair that the channel refused ("email.rejected"):
    its reason code and a digest of its bytes only. A temporary refusal is deferred."""
    return AppendAudit(
        pair_id=pair_id,
        action=f"{channel}.rejected",
        actor=actor,
        details={"reason": reason, "digest": digest},
        outcome="deferred" if temporary else "refused",
    )
