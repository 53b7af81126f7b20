"""Classify what happened in a pair room: who did it (role) and what it is (kind)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from bridge.core.model import Kind, Pair, Role

_MSGTYPE_KINDS = {
    "m.text": Kind.TEXT,
    "m.notice": Kind.NOTICE,
    "m.emote": Kind.EMOTE,
    "m.image": Kind.IMAGE,
    "m.file": Kind.FILE,
    "m.audio": Kind.AUDIO,
    "m.video": Kind.VIDEO,
    "m.location": Kind.LOCATION,
}


def role_of(sender: str, pair: Pair, bot_id: str) -> Role:
    if sender == bot_id:
        return Role.BOT
    if sender == pair.patient_id:
        return Role.PATIENT
    if sender == pair.therapist_id:
        return Role.THERAPIST
    return Role.OUTSIDER


def kind_of(event_type: str, content: dict[str, Any], state_key: str | None) -> Kind:
    """The kind of a decrypted event, as the audit and the SLA clock see it."""
    if event_type == "m.room.encrypted":
        return Kind.UNDECRYPTABLE
    if event_type == "m.room.redaction":
        return Kind.REDACTION
    if event_type == "m.reaction":
        return Kind.REACTION
    if event_type == "m.room.member":
        return Kind.MEMBERSHIP
    if state_key is not None:
        return Kind.STATE
    if event_type == "m.sticker":
        return Kind.IMAGE
    if event_type != "m.room.message":
        return Kind.OTHER
    relates = content.get("m.relates_to")
    if isinstance(relates, dict) and relates.get("rel_type") == "m.replace":
        return Kind.EDIT
    msgtype = str(content.get("msgtype", ""))
    if msgtype == "m.audio" and "org.matrix.msc3245.voice" in content:
        return Kind.VOICE
    return _MSGTYPE_KINDS.get(msgtype, Kind.OTHER)


def relates_to(content: dict[str, Any], redacts: str | None) -> str | None:
    """The event this one points at: redaction target, edit target, or reply target."""
    if redacts:
        return redacts
    relates = content.get("m.relates_to")
    if not isinstance(relates, dict):
        return None
    if "event_id" in relates:
        return str(relates["event_id"])
    reply = relates.get("m.in_reply_to")
    if isinstance(reply, dict) and "event_id" in reply:
        return str(reply["event_id"])
    return None


def command_text(kind: Kind, content: dict[str, Any]) -> str | None:
    """`!command args` when a text message is a command; None otherwise."""
    if kind is not Kind.TEXT:
        return None
    body = str(content.get("body", "")).strip()
    if body.startswith("!") and len(body) > 1 and not body[1].isspace():
        return body
    return None


def content_digest(content: dict[str, Any]) -> str:
    """SHA-256 of the decrypted content in canonical JSON (what the audit chain holds)."""
    data = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode()).hexdigest()
