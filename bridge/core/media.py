"""Media in pair rooms as the audit records it: a member's attachment kept, a voice message
queued and relayed (policy only, no I/O).

Media bytes are kept sealed apart from the chain (`KeepMedia`); an entry's sealed content
names them by their SHA-256 (`media_ref`), which is how a transcript export finds the
recording next to the room event it belongs to.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bridge.core.audit import sha256_hex
from bridge.core.model import AppendAudit, Effect, KeepMedia, Kind, PostContent

#: The entry of a member's attachment, kept (or not) after its event.
STORED_ACTION = "media.stored"
#: The entries of a voice message queued by the command line or the API, and posted.
QUEUED_ACTION = "voice.queued"
RELAYED_ACTION = "relay.voice"
#: Keys of an attachment's `info` that the audit keeps.
_INFO_KEYS = ("mimetype", "size", "duration", "w", "h")


def _json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False).encode()


def media_record(
    content: Mapping[str, Any], media_ref: str, size: int, duration_ms: int | None
) -> dict[str, Any]:
    """The sealed content of a `media.stored` entry: what the export shows and links."""
    raw_info = content.get("info")
    info: dict[str, Any] = dict(raw_info) if isinstance(raw_info, dict) else {}
    info["size"] = size
    if duration_ms is not None:
        info["duration"] = duration_ms
    record: dict[str, Any] = {
        "msgtype": content.get("msgtype"),
        "body": content.get("body"),
        "filename": content.get("filename") or content.get("body") or "media",
        "info": {k: v for k, v in info.items() if k in _INFO_KEYS},
        "media_ref": media_ref,
    }
    if "org.matrix.msc3245.voice" in content:
        record["org.matrix.msc3245.voice"] = {}
    return record


def media_stored(
    pair_id: str | None,
    sender: str,
    event_id: str,
    kind: str,
    content: Mapping[str, Any],
    data: bytes | None,
    *,
    failure: str | None = None,
    duration_ms: int | None = None,
    codec: str | None = None,
    audio_error: str | None = None,
) -> list[Effect]:
    """Keep the attachment of `sender`'s media event `event_id` and record it.

    `data` is None when it could not be had (`failure` says why: no_attachment, too_big,
    download); the entry then records the failure and no content. `codec`, `audio_error`
    and `duration_ms` are what the audio probe found of a voice note or audio file.
    """
    details: dict[str, Any] = {"kind": kind, "relates_to": event_id}
    if failure is not None:
        details["reason"] = failure
    if codec is not None:
        details["codec"] = codec
    if audio_error is not None:
        details["audio"] = audio_error
    effects: list[Effect] = []
    sealed: bytes | None = None
    if data is not None:
        ref = sha256_hex(data)
        effects.append(KeepMedia(data))
        details.update({"media_ref": ref, "size": len(data)})
        if duration_ms is not None:
            details["duration_ms"] = duration_ms
        sealed = _json(media_record(content, ref, len(data), duration_ms))
    effects.append(
        AppendAudit(
            pair_id,
            STORED_ACTION,
            sender,
            details,
            event_id=event_id,
            content=sealed,
            outcome="failed" if failure is not None else "ok",
        )
    )
    return effects


def voice_queued(
    pair_id: str, actor: str, job_id: str, media_ref: str, size: int, duration_ms: int
) -> AppendAudit:
    """The entry of a voice message queued for the running bridge to post."""
    return AppendAudit(
        pair_id,
        QUEUED_ACTION,
        actor,
        {"job_id": job_id, "media_ref": media_ref, "size": size, "duration_ms": duration_ms},
    )


def without_keys(content: Mapping[str, Any]) -> dict[str, Any]:
    """Content for the audit: the media itself is kept, so the upload's keys are not."""
    out = {k: v for k, v in content.items() if k != "file"}
    file_block = out.get("org.matrix.msc1767.file")
    if isinstance(file_block, dict):
        out["org.matrix.msc1767.file"] = {k: v for k, v in file_block.items() if k != "file"}
    return out


def voice_relayed(
    pair_id: str,
    room_id: str,
    actor: str,
    job_id: str,
    post: dict[str, Any],
    *,
    media_ref: str,
    size: int,
    duration_ms: int,
    filename: str,
) -> list[Effect]:
    """Post a queued voice message (uploaded as `post`) and record it, keys left out."""
    return [
        PostContent(room_id, post, f"voice.{job_id}", "voice", pair_id=pair_id),
        AppendAudit(
            pair_id,
            RELAYED_ACTION,
            actor,
            {
                "kind": Kind.VOICE.value,
                "job_id": job_id,
                "media_ref": media_ref,
                "size": size,
                "duration_ms": duration_ms,
            },
            content=_json({**without_keys(post), "media_ref": media_ref, "filename": filename}),
        ),
    ]


def voice_relay_failed(pair_id: str, actor: str, job_id: str, reason: str) -> AppendAudit:
    """A queued voice message that cannot be posted (no room, its media gone)."""
    return AppendAudit(
        pair_id,
        RELAYED_ACTION,
        actor,
        {"job_id": job_id, "reason": reason},
        outcome="failed",
    )
