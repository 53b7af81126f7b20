"""Append to the audit chain, keep content and media sealed beside it, and purge old content.

One chain covers the practice. `append` runs inside the caller's transaction (the service
writes state, audit and outbox together) and serialises appenders on the chain head
(`bridge.store.audit.lock_head`); `record`, for entries with nothing else to write, commits
concurrent callers' entries together in one transaction (group commit), in the order they
came. Content is sealed with the entry's seq and content hash as
associated data, so a sealed blob cannot be moved to another entry unnoticed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bridge.audit.checkpoint import load_signing_key, write_checkpoint
from bridge.core.audit import (
    GENESIS_HASH,
    canonical_json,
    entry_hash,
    make_entry,
    sha256_hex,
)
from bridge.core.model import AppendAudit
from bridge.sealing import Sealer, SealError
from bridge.store import audit as audit_store
from bridge.store.base import Executor, to_ms
from bridge.store.group_commit import GroupCommit

log = logging.getLogger(__name__)

#: A periodic checkpoint is signed every this many entries.
DEFAULT_CHECKPOINT_EVERY = 1000
#: The entry that records a retention purge; `verify` accepts missing content it explains.
PURGE_ACTION = "audit.purge"


def content_aad(seq: int, sha256: str) -> bytes:
    """Associated data sealing an entry's content to that entry."""
    return f"confidant audit content {seq} {sha256}".encode("ascii")


def media_aad(sha256: str) -> bytes:
    """Associated data sealing media bytes to their hash."""
    return f"confidant audit media {sha256}".encode("ascii")


def _ms(now: datetime | int) -> int:
    return now if isinstance(now, int) else to_ms(now)


#: What `record` hands the group commit: the entry, its time and the actor's role.
_Appended = tuple[AppendAudit | Mapping[str, Any], datetime | int, str | None]


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """How many sealed contents and media blobs a purge deleted."""

    contents: int
    media: int


class AuditLog:
    """The practice's audit log: a hash chain with sealed content, in the database."""

    def __init__(
        self,
        db: Any,
        sealer: Sealer,
        signing_key: Ed25519PrivateKey | str | bytes,
        *,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    ) -> None:
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        self.db = db
        self.sealer = sealer
        self.signing_key = load_signing_key(signing_key)
        self.checkpoint_every = checkpoint_every
        # Entries `record` was given, committed together (`bridge.store.group_commit`).
        self._group: GroupCommit[_Appended, int] = GroupCommit(
            db, self._append_all, name="audit-writer"
        )

    async def append(
        self,
        tx: Executor,
        record: AppendAudit | Mapping[str, Any],
        now: datetime | int,
        *,
        role: str | None = None,
    ) -> int:
        """Append one entry inside the caller's transaction and return its seq.

        `record` is an `AppendAudit` effect or a mapping with the same fields (`action`,
        `actor`, and optionally `pair_id`, `details`, `event_id`, `content`, `outcome`,
        `role`). The role comes from `role`, else the record, else `details["role"]`.
        Content bytes are hashed into the entry and stored sealed apart from it.
        """
        (seq,) = await self._append_all(tx, [(record, now, role)])
        return seq

    async def _append_all(
        self,
        tx: Executor,
        items: Sequence[_Appended],
    ) -> list[int]:
        """Append `items` in order inside `tx`: the head is locked once, each pair's previous
        entry is read once, and the rows go in together (flushed at each periodic checkpoint,
        which signs the head as it is after its entry)."""
        head = await audit_store.lock_head(tx)
        seq = head.seq
        prev = head.head_hash if head.head_hash is not None else GENESIS_HASH
        pair_heads: dict[str | None, bytes | None] = {}
        rows: list[audit_store.AuditRow] = []
        contents: list[tuple[int, int, str, bytes]] = []
        seqs: list[int] = []

        async def flush() -> None:
            if rows:
                await audit_store.insert_many(tx, rows)
            if contents:
                await audit_store.insert_contents(tx, contents)
            rows.clear()
            contents.clear()
            await audit_store.set_head(tx, seq, prev)

        for record, now, role in items:
            fields = _fields(record)
            details = dict(fields.get("details") or {})
            if role is None:
                role = fields.get("role") or (
                    details["role"] if isinstance(details.get("role"), str) else None
                )
            content: bytes | None = fields.get("content")
            ts = _ms(now)
            pair_id = fields.get("pair_id")
            if pair_id not in pair_heads:
                pair_heads[pair_id] = await audit_store.pair_head(tx, pair_id)
            content_sha = sha256_hex(content) if content is not None else None
            entry = make_entry(
                seq=seq + 1,
                ts=ts,
                pair_id=pair_id,
                pair_prev=pair_heads[pair_id],
                actor=str(fields["actor"]),
                role=role,
                action=str(fields["action"]),
                event_id=fields.get("event_id"),
                outcome=str(fields.get("outcome") or "ok"),
                content_sha256=content_sha,
                details=details,
            )
            seq += 1
            digest = entry_hash(prev, entry, check=False)
            rows.append(
                audit_store.AuditRow(
                    seq=seq,
                    v=entry["v"],
                    ts=ts,
                    pair_id=pair_id,
                    pair_prev=entry["pair_prev"],
                    actor=entry["actor"],
                    role=role,
                    action=entry["action"],
                    event_id=entry["event_id"],
                    outcome=entry["outcome"],
                    content_sha256=content_sha,
                    details=canonical_json(entry["details"], check=False).decode("utf-8"),
                    prev_hash=prev,
                    entry_hash=digest,
                )
            )
            if content is not None and content_sha is not None:
                blob = self.sealer.seal(content, content_aad(seq, content_sha))
                contents.append((seq, ts, self.sealer.current_key_id, blob))
            pair_heads[pair_id] = digest
            prev = digest
            seqs.append(seq)
            if seq % self.checkpoint_every == 0:
                await flush()
                await write_checkpoint(tx, self.signing_key, ts, "periodic")
        if rows:
            await flush()
        return seqs

    async def record(
        self,
        record: AppendAudit | Mapping[str, Any],
        now: datetime | int,
        *,
        role: str | None = None,
    ) -> int:
        """Append one entry in a transaction of its own (for callers with nothing else to
        write) and return its seq once it is committed.

        Concurrent calls are committed together (group commit): one writer task takes every
        entry waiting, appends them in the order they came in one transaction, and answers
        each caller when that transaction has committed. The chain's order is the commit
        order, as with `append`.
        """
        return await self._group.submit((record, now, role))

    async def store_media(self, tx: Executor, data: bytes, now: datetime | int) -> str:
        """Keep media bytes sealed and return their hex SHA-256 (the `media_ref` in content).

        Storing the same bytes again only refreshes their retention time.
        """
        sha = sha256_hex(data)
        ts = _ms(now)
        blob = self.sealer.seal(data, media_aad(sha))
        await audit_store.put_media(tx, sha, ts, len(data), self.sealer.current_key_id, blob)
        return sha

    async def load_content(self, db: Executor, seq: int) -> bytes | None:
        """The content of entry `seq`, opened and checked against the entry's hash.

        None when the entry has no content or it was purged; raises `SealError` when the
        sealed blob or the entry's hash does not match.
        """
        stored = await audit_store.sealed_content(db, seq)
        if stored is None:
            return None
        sha, blob = stored
        if sha is None:
            return None
        return open_content(self.sealer, seq, sha, blob)

    async def load_media(self, db: Executor, sha256: str) -> bytes | None:
        """Media bytes by their hex SHA-256, or None when absent (purged or never stored)."""
        blob = await audit_store.sealed_media(db, sha256)
        if blob is None:
            return None
        return open_media(self.sealer, sha256, blob)

    async def purge(
        self, older_than: timedelta, now: datetime, *, actor: str = "retention"
    ) -> PurgeResult:
        """Delete content and media older than `older_than` and record it in the chain.

        The deletion and its entry (cut-off and counts) commit together: content that is
        missing without such an entry after it is a deletion `verify` reports.
        """
        async with self.db.transaction() as tx:
            result, cutoff = await _delete_before(tx, older_than, now)
            await self.append(
                tx,
                {
                    "action": PURGE_ACTION,
                    "actor": actor,
                    "details": {
                        "older_than_s": int(older_than.total_seconds()),
                        "cutoff_ms": cutoff,
                        "contents": result.contents,
                        "media": result.media,
                    },
                },
                now,
            )
        log.info("audit purge: %d contents and %d media deleted", result.contents, result.media)
        return result


def open_content(sealer: Sealer, seq: int, sha256: str, blob: bytes) -> bytes:
    """Open a sealed content blob and check it against the entry's content hash."""
    data = sealer.open(blob, content_aad(seq, sha256))
    if sha256_hex(data) != sha256:
        raise SealError("content does not match the entry's hash")
    return data


def open_media(sealer: Sealer, sha256: str, blob: bytes) -> bytes:
    """Open sealed media and check it against its name."""
    data = sealer.open(blob, media_aad(sha256))
    if sha256_hex(data) != sha256:
        raise SealError("media does not match its hash")
    return data


async def _delete_before(
    tx: Executor, older_than: timedelta, now: datetime
) -> tuple[PurgeResult, int]:
    if older_than < timedelta(0):
        raise ValueError("older_than must not be negative")
    cutoff = to_ms(now - older_than)
    contents = await audit_store.delete_content_before(tx, cutoff)
    media = await audit_store.delete_media_before(tx, cutoff)
    return PurgeResult(contents, media), cutoff


async def purge_content(db: Any, older_than: timedelta, now: datetime) -> PurgeResult:
    """Delete sealed content and media whose time is before `now - older_than`, unrecorded.

    `audit verify` then reports the missing content; `AuditLog.purge` records the purge.
    """
    async with db.transaction() as tx:
        result, _cutoff = await _delete_before(tx, older_than, now)
    log.info("audit purge: %d contents and %d media deleted", result.contents, result.media)
    return result


def _fields(record: AppendAudit | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(record, AppendAudit):
        return {
            "pair_id": record.pair_id,
            "action": record.action,
            "actor": record.actor,
            "details": record.details,
            "event_id": record.event_id,
            "content": record.content,
            "outcome": record.outcome,
            "role": getattr(record, "role", None),
        }
    unknown = set(record) - {
        "pair_id",
        "action",
        "actor",
        "details",
        "event_id",
        "content",
        "outcome",
        "role",
    }
    if unknown:
        raise TypeError(f"unknown audit fields: {sorted(unknown)}")
    return dict(record)
