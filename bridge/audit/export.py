"""Export a pair's transcript as a zip that proves itself, and check such a zip offline.

What is in the zip:

- ``transcript.html``: the printable transcript (``transcript.html.j2``, looked up like
  every other template: the practice's ``templates_dir`` first, then the shipped one), no
  external resources; media are linked by relative path inside the zip.
- ``transcript.json``: the same entries as data (each with its chain entry and content).
- ``content/<seq>.bin``: the exact content bytes of each exported entry (decrypted).
- ``media/<sha256 prefix>-<name>``: decrypted media (voice, images, attachments).
- ``chain.json``: the proof (below).
- ``manifest.json``: pair, range, entry count, chain head, the signed checkpoint, the
  SHA-256 of every other file, and an Ed25519 signature over all of it.

How a part of one practice-wide chain is proved without showing other pairs
---------------------------------------------------------------------------
Every entry carries ``pair_prev``, the hash of the previous entry of the same pair, and
that field is inside the entry's hash. So a pair's entries form a hash-linked list
*within* the chain. Exporting starts by appending an ``audit.export`` entry for the pair
and signing a checkpoint in the same transaction, so that entry is the head of the chain
and its hash is the checkpoint's ``head_hash``.

``chain.json`` lists, for the pair only, every entry from the first one in the range up
to that export entry: the full entry, the 32-byte hash of the chain entry just before it
(``prev_hash``, an opaque value that says nothing about that other entry) and its hash.
An offline verifier recomputes each ``SHA256(prev_hash || canonical_json(entry))``, checks
that each entry's ``pair_prev`` is the previous listed entry's hash, and that the last
one is the signed head. Changing, removing or reordering any listed entry, or any content
(bound by ``content_sha256``) or media (bound by the hash in the content), breaks that
path to the signature. Other pairs' entries contribute only their opaque hashes as
``prev_hash``: no pair id, actor, time or action of anyone else is in the zip.

Entries of the pair after the range (up to the export entry) are listed as metadata only,
without content, because the links must reach the signed head. What the zip cannot show
is anything before its first entry; the range start is stated in the manifest.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import re
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import nh3
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bridge.adapters.i18n import Message
from bridge.adapters.render import Renderer
from bridge.audit.checkpoint import load_signing_key, write_checkpoint
from bridge.audit.log import AuditLog, open_content
from bridge.core.audit import (
    SignedCheckpoint,
    canonical_json,
    entry_hash,
    key_fingerprint,
    public_key_bytes,
    sha256_hex,
)
from bridge.sealing import Sealer, SealError
from bridge.store import audit as audit_store
from bridge.store.audit import AuditRow
from bridge.store.base import from_ms, to_ms

log = logging.getLogger(__name__)

EXPORT_FORMAT = "confidant-export/1"
EXPORT_ACTION = "audit.export"
_MANIFEST_DOMAIN = b"confidant export manifest v1\n"
TEMPLATE_NAME = "transcript.html.j2"

_MSGTYPE_KIND = {
    "m.text": "text",
    "m.notice": "notice",
    "m.emote": "emote",
    "m.image": "image",
    "m.file": "file",
    "m.audio": "audio",
    "m.video": "video",
    "m.location": "location",
    "email": "email",
    "video_link": "video_link",
    "sla": "sla",
    "membership": "membership",
    "notice": "notice",
}

_KIND_LABEL = {
    "text": "Message",
    "notice": "Notice",
    "emote": "Action",
    "image": "Image",
    "file": "File",
    "audio": "Audio",
    "voice": "Voice message",
    "video": "Video",
    "location": "Location",
    "email": "E-mail",
    "video_link": "Video call",
    "sla": "Response time",
    "membership": "Membership",
    "edit": "Edit",
    "redaction": "Redaction",
    "reaction": "Reaction",
    "undecryptable": "Undecryptable message",
    "state": "Room setting",
    "command": "Command",
    "audit": "Audit",
}

#: Who an entry's actor is, as the transcript shows it (translated there).
ROLE_LABELS = ("patient", "therapist", "bot", "outsider", "supervisor")


def label_messages() -> list[Message]:
    """The entry labels and roles the transcript translates (`_(it.label)`, `_(it.role)`)."""
    return [Message(text, TEMPLATE_NAME, 1) for text in (*_KIND_LABEL.values(), *ROLE_LABELS)]


_ALLOWED_TAGS = {
    "a", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6",
    "hr", "i", "li", "ol", "p", "pre", "s", "span", "strong", "sub", "sup", "table", "tbody",
    "td", "th", "thead", "tr", "u", "ul",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What an export wrote."""

    path: Path
    entry_count: int
    export_seq: int
    checkpoint: SignedCheckpoint
    sha256: str


# ---------------------------------------------------------------- export


async def export_pair(
    db: Any,
    sealer: Sealer,
    signing_key: Ed25519PrivateKey | str | bytes,
    pair_id: str,
    start: datetime | None,
    end: datetime | None,
    out_path: str | Path,
    renderer: Renderer,
    *,
    now: datetime | None = None,
    actor: str = "cli",
    tz: str = "UTC",
    title: str | None = None,
    audit_log: AuditLog | None = None,
    language: str | None = None,
) -> ExportResult:
    """Write the transcript of `pair_id` for [start, end) to `out_path` as a zip.

    The export is recorded in the chain first (and a checkpoint signed with it), so the
    zip proves the pair's entries up to and including its own export entry.
    `transcript.html` is rendered by `renderer`, so a practice's override of
    `transcript.html.j2` (in its `templates_dir`, or `templates_dir/<lang>/`) is the one used,
    in `language` (the renderer's practice language when None).
    """
    key = load_signing_key(signing_key)
    now = now or datetime.now(UTC)
    audit = audit_log or AuditLog(db, sealer, key)
    start_ms = to_ms(start) if start is not None else None
    end_ms = to_ms(end) if end is not None else None
    async with db.transaction() as tx:
        export_seq = await audit.append(
            tx,
            {
                "pair_id": pair_id,
                "action": EXPORT_ACTION,
                "actor": actor,
                "details": {"from": start_ms, "to": end_ms},
            },
            now,
        )
        checkpoint = await write_checkpoint(tx, key, to_ms(now), "export")
    rows = await audit_store.pair_entries(db, pair_id, export_seq)

    def in_range(row: AuditRow) -> bool:
        ts = int(row.ts)
        return (start_ms is None or ts >= start_ms) and (end_ms is None or ts < end_ms)

    first = next(
        (i for i, row in enumerate(rows) if in_range(row) and row.action != EXPORT_ACTION),
        len(rows) - 1,
    )
    proof_rows = rows[first:]
    files: dict[str, bytes] = {}
    chain_records: list[dict[str, Any]] = []
    exported: list[tuple[dict[str, Any], bytes | None, str]] = []
    for row in proof_rows:
        entry = row.entry()
        shown = in_range(row) and row.seq != export_seq
        record: dict[str, Any] = {
            "entry": entry,
            "prev_hash": row.prev_hash.hex(),
            "hash": row.entry_hash.hex(),
            "in_range": shown,
        }
        chain_records.append(record)
        if not shown:
            continue
        content, status = _open(sealer, row)
        if content is not None:
            files[f"content/{entry['seq']}.bin"] = content
        exported.append((entry, content, status))

    media_paths: dict[str, str] = {}
    for _entry, content, _status in exported:
        for ref, name in _media_refs(_parse(content)):
            if ref in media_paths:
                continue
            data = await audit.load_media(db, ref)
            if data is None:
                continue
            zip_name = f"media/{ref[:16]}-{_safe_name(name)}"
            files[zip_name] = data
            media_paths[ref] = zip_name

    items = _render_items(exported, media_paths, ZoneInfo(tz))
    transcript = {
        "format": "confidant-transcript/1",
        "pair_id": pair_id,
        "from": start_ms,
        "to": end_ms,
        "timezone": tz,
        "entries": [
            {
                "entry": entry,
                "content_status": status,
                "content": _parse(content) if content is not None else None,
                "media": [
                    {"ref": ref, "path": media_paths[ref]}
                    for ref, _ in _media_refs(_parse(content))
                    if ref in media_paths
                ],
            }
            for entry, content, status in exported
        ],
    }
    files["transcript.json"] = _pretty(transcript)
    files["chain.json"] = _pretty(
        {"format": "confidant-chain-proof/1", "pair_id": pair_id, "records": chain_records}
    )
    context: dict[str, Any] = {
        "title": title or f"Transcript {pair_id}",
        "pair_id": pair_id,
        "period_from": _fmt(start_ms, ZoneInfo(tz)) if start_ms is not None else None,
        "period_to": _fmt(end_ms, ZoneInfo(tz)) if end_ms is not None else None,
        "created": _fmt(to_ms(now), ZoneInfo(tz)),
        "timezone": tz,
        "items": items,
        "head_hash": checkpoint.checkpoint.head_hash.hex(),
        "chain_count": checkpoint.count,
        "key_id": checkpoint.key_id,
    }
    files["transcript.html"] = renderer.page(TEMPLATE_NAME, context, language).encode("utf-8")
    manifest: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "pair_id": pair_id,
        "from": start_ms,
        "to": end_ms,
        "created_at": to_ms(now),
        "entry_count": len(exported),
        "export_seq": export_seq,
        "chain": {"count": checkpoint.count, "head_hash": checkpoint.checkpoint.head_hash.hex()},
        "checkpoint": checkpoint.to_json(),
        "files": {name: sha256_hex(data) for name, data in sorted(files.items())},
        "public_key": base64.b64encode(public_key_bytes(key.public_key())).decode("ascii"),
    }
    manifest["signature"] = base64.b64encode(key.sign(_manifest_bytes(manifest))).decode("ascii")
    files["manifest.json"] = _pretty(manifest)
    path = Path(out_path)
    digest = await asyncio.to_thread(_write_zip, path, files)
    log.info(
        "audit export: pair=%s entries=%d media=%d seq=%d",
        pair_id,
        len(exported),
        len(media_paths),
        export_seq,
    )
    return ExportResult(path, len(exported), export_seq, checkpoint, digest)


def _open(sealer: Sealer, row: AuditRow) -> tuple[bytes | None, str]:
    if row.content_sha256 is None:
        return None, "none"
    if row.sealed is None:
        return None, "purged"
    try:
        return open_content(sealer, int(row.seq), row.content_sha256, row.sealed), "present"
    except SealError:
        return None, "unreadable"


def _write_zip(path: Path, files: Mapping[str, bytes]) -> str:
    """Write the zip next to its final name, then move it there; return its SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".export-", suffix=".zip", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in ["manifest.json", *sorted(n for n in files if n != "manifest.json")]:
                zf.writestr(name, files[name])
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pretty(value: Any) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8")


def _manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return _MANIFEST_DOMAIN + canonical_json(body)


def _parse(content: bytes | None) -> dict[str, Any] | None:
    if content is None:
        return None
    try:
        value = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _media_refs(content: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """(media_ref, file name) pairs a content refers to, attachments included."""
    if not content:
        return []
    refs: list[tuple[str, str]] = []
    candidates = [content, *[a for a in content.get("attachments") or [] if isinstance(a, dict)]]
    for item in candidates:
        ref = item.get("media_ref")
        if isinstance(ref, str) and re.fullmatch(r"[0-9a-f]{64}", ref):
            refs.append((ref, str(item.get("filename") or item.get("body") or "media")))
    return refs


def _safe_name(name: str) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "media"
    return base[-60:]


def _fmt(ms: int, tz: ZoneInfo) -> str:
    return from_ms(ms).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")


# ---------------------------------------------------------------- rendering


def _kind(entry: Mapping[str, Any], content: Mapping[str, Any] | None) -> str:
    details = entry.get("details") or {}
    kind = details.get("kind") if isinstance(details, dict) else None
    if isinstance(kind, str) and kind:
        return kind
    if content:
        msgtype = str(content.get("msgtype", ""))
        if msgtype == "m.audio" and (content.get("voice") or "org.matrix.msc3245.voice" in content):
            return "voice"
        if "m.new_content" in content:
            return "edit"
        if msgtype in _MSGTYPE_KIND:
            return _MSGTYPE_KIND[msgtype]
    action = str(entry.get("action", ""))
    head, _, tail = action.partition(".")
    if head == "room" and tail:
        return tail
    return head or "event"


def _media_item(
    ref: str, name: str, content: Mapping[str, Any], paths: Mapping[str, str]
) -> dict[str, Any]:
    raw_info = content.get("info")
    info: dict[str, Any] = raw_info if isinstance(raw_info, dict) else {}
    mimetype = str(content.get("mimetype") or info.get("mimetype") or "")
    category = mimetype.split("/", 1)[0] if mimetype else "file"
    duration = content.get("duration_ms") or info.get("duration")
    return {
        "path": paths.get(ref),
        "filename": name,
        "mimetype": mimetype,
        "category": category if category in ("image", "audio", "video") else "file",
        "size": content.get("size") or info.get("size"),
        "duration_s": round(int(duration) / 1000) if isinstance(duration, int) else None,
    }


def _render_items(
    exported: Sequence[tuple[dict[str, Any], bytes | None, str]],
    media_paths: Mapping[str, str],
    tz: ZoneInfo,
) -> list[dict[str, Any]]:
    """Turn entries into what the template shows; originals of edits and redactions are kept."""
    items: list[dict[str, Any]] = []
    by_event: dict[str, dict[str, Any]] = {}
    for entry, raw, status in exported:
        content = _parse(raw)
        raw_details = entry.get("details")
        details: dict[str, Any] = raw_details if isinstance(raw_details, dict) else {}
        kind = _kind(entry, content)
        item: dict[str, Any] = {
            "seq": entry["seq"],
            "time": _fmt(int(entry["ts"]), tz),
            "actor": entry.get("actor"),
            "role": entry.get("role") or details.get("role"),
            "action": entry.get("action"),
            "outcome": entry.get("outcome"),
            "event_id": entry.get("event_id"),
            "kind": kind,
            "label": _KIND_LABEL.get(kind, str(entry.get("action", kind))),
            "status": status,
            "text": None,
            "html": None,
            "media": None,
            "attachments": [],
            "email": None,
            "link": None,
            "relates_to": details.get("relates_to"),
            "relates_seq": None,
            "edited_by": [],
            "redacted_by": None,
            "notes": [],
        }
        if content is not None:
            shown = content.get("m.new_content") if kind == "edit" else content
            if not isinstance(shown, dict):
                shown = content
            body = shown.get("body")
            item["text"] = str(body) if body is not None else None
            html = shown.get("formatted_body")
            if isinstance(html, str) and html:
                item["html"] = nh3.clean(
                    html,
                    tags=_ALLOWED_TAGS,
                    attributes={"a": {"href"}},
                    url_schemes={"http", "https", "mailto"},
                )
            refs = _media_refs(content)
            own = [r for r in refs if r[0] == content.get("media_ref")]
            if own:
                item["media"] = _media_item(own[0][0], own[0][1], content, media_paths)
            for attachment in content.get("attachments") or []:
                if isinstance(attachment, dict) and attachment.get("media_ref"):
                    name = str(attachment.get("filename") or "attachment")
                    item["attachments"].append(
                        _media_item(str(attachment["media_ref"]), name, attachment, media_paths)
                    )
            if kind == "email" or content.get("subject") is not None:
                item["email"] = {
                    "from": content.get("from"),
                    "to": content.get("to"),
                    "subject": content.get("subject"),
                }
            url = content.get("url")
            if isinstance(url, str) and url.startswith(("https://", "http://")):
                item["link"] = url
            if kind == "redaction" and not item["relates_to"]:
                item["relates_to"] = content.get("redacts")
            if kind == "edit" and not item["relates_to"]:
                rel = content.get("m.relates_to")
                if isinstance(rel, dict):
                    item["relates_to"] = rel.get("event_id")
        if kind == "membership":
            member = details.get("state_key") or (content or {}).get("target")
            change = details.get("membership") or (content or {}).get("membership")
            item["text"] = item["text"] or f"{member or entry.get('actor')}: {change or 'changed'}"
        for key in sorted(details):
            if key in ("role", "kind", "content_sha256"):
                continue
            value = details[key]
            item["notes"].append((key, json.dumps(value) if not isinstance(value, str) else value))
        target = by_event.get(str(item["relates_to"])) if item["relates_to"] else None
        if target is not None:
            item["relates_seq"] = target["seq"]
            if kind == "edit":
                target["edited_by"].append(item["seq"])
            elif kind == "redaction":
                target["redacted_by"] = item["seq"]
        if item["event_id"]:
            by_event.setdefault(str(item["event_id"]), item)
        items.append(item)
    return items


# ---------------------------------------------------------------- offline verification


class _Invalid(Exception):
    pass


def verify_export(zip_path: str | Path, public_key: bytes | str | None = None) -> tuple[bool, str]:
    """Check an export zip on its own: files, signatures and the pair's chain to the head.

    `public_key` (raw 32 bytes, hex, base64 or PEM) is the practice's audit key; without
    it the zip is checked against the key it names, which proves it is intact but not who
    made it. Returns (ok, one line for the CLI).
    """
    try:
        return True, _verify_export(Path(zip_path), public_key)
    except _Invalid as exc:
        return False, f"FAILED: {exc}"
    except (OSError, zipfile.BadZipFile) as exc:
        return False, f"FAILED: cannot read {zip_path}: {exc}"
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return False, f"FAILED: malformed export ({type(exc).__name__}: {exc})"


def _verify_export(path: Path, public_key: bytes | str | None) -> str:
    from bridge.audit.checkpoint import load_public_key

    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        if "manifest.json" not in names:
            raise _Invalid("no manifest.json")
        files = {name: zf.read(name) for name in names}
    manifest = _load_json(files, "manifest.json")
    if manifest.get("format") != EXPORT_FORMAT:
        raise _Invalid("not a Confidant export (unknown manifest format)")
    embedded = base64.b64decode(str(manifest.get("public_key", "")))
    trusted = load_public_key(public_key) if public_key is not None else embedded
    if trusted != embedded:
        raise _Invalid(
            f"wrong key: signed by {key_fingerprint(embedded)}, expected {key_fingerprint(trusted)}"
        )
    try:
        Ed25519PublicKey.from_public_bytes(trusted).verify(
            base64.b64decode(str(manifest.get("signature", ""))), _manifest_bytes(manifest)
        )
    except (InvalidSignature, ValueError) as exc:
        raise _Invalid("manifest signature does not verify") from exc

    listed: dict[str, str] = manifest.get("files") or {}
    extra = names - set(listed) - {"manifest.json"}
    if extra:
        raise _Invalid(f"files not in the manifest: {', '.join(sorted(extra))}")
    for name, file_sha in listed.items():
        if name not in files:
            raise _Invalid(f"{name} is missing")
        if sha256_hex(files[name]) != file_sha:
            raise _Invalid(f"{name} was changed (SHA-256 differs from the manifest)")

    try:
        checkpoint = SignedCheckpoint.from_json(manifest["checkpoint"])
    except (KeyError, ValueError) as exc:
        raise _Invalid("manifest has no valid checkpoint") from exc
    if not checkpoint.signature_valid(trusted):
        raise _Invalid("wrong key: checkpoint is not signed by the audit key")
    if checkpoint.checkpoint.head_hash.hex() != manifest["chain"]["head_hash"]:
        raise _Invalid("manifest chain head differs from its checkpoint")

    pair_id = manifest.get("pair_id")
    chain = _load_json(files, "chain.json")
    records = chain.get("records") or []
    if not records:
        raise _Invalid("chain.json lists no entries")
    previous: bytes | None = None
    last_seq = 0
    by_seq: dict[int, dict[str, Any]] = {}
    for record in records:
        entry = record["entry"]
        seq = int(entry["seq"])
        if seq <= last_seq:
            raise _Invalid(f"entry {seq}: reordered")
        if entry.get("pair_id") != pair_id:
            raise _Invalid(f"entry {seq}: belongs to another pair")
        digest = entry_hash(bytes.fromhex(record["prev_hash"]), entry)
        if digest.hex() != record["hash"]:
            raise _Invalid(f"entry {seq}: changed (hash differs)")
        if previous is not None and entry.get("pair_prev") != previous.hex():
            if entry.get("pair_prev") in {str(r.get("hash")) for r in records}:
                raise _Invalid(f"entry {seq}: reordered")
            raise _Invalid(f"entry {seq}: missing an earlier entry of the pair")
        previous, last_seq = digest, seq
        by_seq[seq] = record
    last = records[-1]["entry"]
    if last_seq != checkpoint.count or previous != checkpoint.checkpoint.head_hash:
        raise _Invalid("truncated: the entries do not lead to the signed chain head")
    if last.get("action") != EXPORT_ACTION or last_seq != manifest.get("export_seq"):
        raise _Invalid("the last entry is not this export's own entry")

    transcript = _load_json(files, "transcript.json")
    shown = transcript.get("entries") or []
    in_range = [r["entry"]["seq"] for r in records if r.get("in_range")]
    if [e["entry"]["seq"] for e in shown] != in_range or len(shown) != manifest["entry_count"]:
        raise _Invalid("transcript.json does not list the entries of the chain proof")
    for item in shown:
        entry = item["entry"]
        seq = int(entry["seq"])
        if entry != by_seq[seq]["entry"]:
            raise _Invalid(f"entry {seq}: transcript.json differs from the chain")
        raw = files.get(f"content/{seq}.bin")
        if item["content_status"] == "present":
            if raw is None or sha256_hex(raw) != entry.get("content_sha256"):
                raise _Invalid(f"entry {seq}: content differs from its hash")
            if item["content"] != _parse(raw):
                raise _Invalid(f"entry {seq}: transcript.json content differs")
        for media in item.get("media") or []:
            data = files.get(media["path"])
            if data is None or sha256_hex(data) != media["ref"]:
                raise _Invalid(f"entry {seq}: media {media['path']} differs from its hash")
            if media["ref"] not in {ref for ref, _ in _media_refs(_parse(raw))}:
                raise _Invalid(f"entry {seq}: media {media['path']} is not in its content")
    return (
        f"OK: export of pair {pair_id}, {len(shown)} entries, chain head "
        f"{checkpoint.checkpoint.head_hash.hex()[:8]}… at {checkpoint.count} entries, "
        f"signed by key {key_fingerprint(trusted)}"
        + ("" if public_key is not None else " (key not checked against a trusted copy)")
    )


def _load_json(files: Mapping[str, bytes], name: str) -> dict[str, Any]:
    try:
        value = json.loads(files[name])
    except (KeyError, ValueError) as exc:
        raise _Invalid(f"{name} is missing or not JSON") from exc
    if not isinstance(value, dict):
        raise _Invalid(f"{name} is not a JSON object")
    return value
