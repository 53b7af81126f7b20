"""Verify the audit chain in the database, streaming, and the CLI's verify and purge commands."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncGenerator, Awaitable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.audit.checkpoint import load_checkpoints
from bridge.audit.log import AuditLog, open_content, purge_content
from bridge.core.audit import (
    BreakKind,
    ChainVerifier,
    SignedCheckpoint,
    StoredEntry,
    VerifyResult,
    public_key_bytes,
)
from bridge.sealing import Sealer, SealError
from bridge.store import audit as audit_store
from bridge.store.audit import AuditRow
from bridge.store.base import Executor

log = logging.getLogger(__name__)

#: Rows read per query: keeps memory flat however long the chain is.
BATCH_SIZE = 5000


async def iter_rows(
    db: Executor, *, with_content: bool = False, batch_size: int = BATCH_SIZE
) -> AsyncGenerator[AuditRow, None]:
    """Every chain row in seq order, read in batches (keyset pagination)."""

    def batch(after: int) -> Awaitable[list[AuditRow]]:
        return audit_store.entries_after(db, after, batch_size, with_content=with_content)

    rows = await batch(-1)
    while rows:
        # Read the next batch while the caller hashes this one.
        ahead = asyncio.ensure_future(batch(int(rows[-1].seq))) if len(rows) == batch_size else None
        try:
            for row in rows:
                yield row
        except BaseException:
            # The caller stopped early (or failed): do not leave the read running.
            if ahead is not None:
                ahead.cancel()
                with contextlib.suppress(BaseException):
                    await ahead
            raise
        rows = await ahead if ahead is not None else []


def _record(row: AuditRow) -> StoredEntry:
    try:
        entry = row.entry()
    except (ValueError, TypeError):
        # Details that are not JSON any more: keep the text so the hash check fails on it.
        entry = dict(dataclasses.replace(row, details="null").entry(), details=row.details)
    return StoredEntry(entry, row.entry_hash, row.prev_hash)


async def verify(
    db: Executor,
    pair_id: str | None = None,
    checkpoint: SignedCheckpoint | Mapping[str, Any] | None = None,
    *,
    trusted_key: bytes | None = None,
    sealer: Sealer | None = None,
    batch_size: int = BATCH_SIZE,
) -> VerifyResult:
    """Verify the whole chain against its hashes, stored checkpoints and `checkpoint`.

    `trusted_key` (raw Ed25519 public key) makes checkpoints signed by any other key fail
    as WRONG_KEY. With `pair_id` the pair's own links are checked and counted too (the
    chain is always verified whole: the pair's entries are part of it). With `sealer`
    every stored content is opened and compared with its entry's hash.
    """
    checkpoints = await load_checkpoints(db)
    if checkpoint is not None:
        if not isinstance(checkpoint, SignedCheckpoint):
            checkpoint = SignedCheckpoint.from_json(checkpoint)
        checkpoints.append(checkpoint)
    verifier = ChainVerifier(checkpoints, trusted_key=trusted_key, pair_id=pair_id)
    content = _ContentCheck(sealer)
    rows = iter_rows(db, with_content=sealer is not None, batch_size=batch_size)
    async with contextlib.aclosing(rows):
        async for row in rows:
            if not verifier.broken:
                content.check(row)
            if not verifier.feed(_record(row)):
                break
    result = verifier.finish()
    found = content.first_break
    if found is not None and (result.ok or found[0] < (result.broken_seq or 0)):
        return dataclasses.replace(
            result,
            ok=False,
            broken_seq=found[0],
            kind=BreakKind.CHANGED,
            detail=f"sealed content: {found[1]}",
        )
    return dataclasses.replace(result, content_checked=content.checked)


class _ContentCheck:
    """Open each stored content and compare it with its entry's hash (when given a sealer)."""

    def __init__(self, sealer: Sealer | None) -> None:
        self.sealer = sealer
        self.checked = 0
        self.first_break: tuple[int, str] | None = None

    def check(self, row: AuditRow) -> None:
        if self.sealer is None or self.first_break is not None:
            return
        if row.sealed is None:
            return
        seq = int(row.seq)
        sha = row.content_sha256
        try:
            if sha is None:
                raise SealError("content stored for an entry without content")
            open_content(self.sealer, seq, sha, row.sealed)
        except SealError as exc:
            self.first_break = (seq, str(exc))
            return
        self.checked += 1


async def run_verify(
    db: Executor,
    *,
    pair_id: str | None = None,
    checkpoint_file: str | Path | None = None,
    trusted_key: bytes | None = None,
    sealer: Sealer | None = None,
    audit_log: AuditLog | None = None,
    actor: str = "cli",
    now: datetime | None = None,
) -> tuple[int, str]:
    """`confidant audit verify`: exit code (0 OK, 1 broken, 2 unusable input) and one line.

    Checkpoints must be signed by `trusted_key`, which defaults to the public half of
    `audit_log`'s signing key. With `audit_log` and `now`, the verification itself is
    recorded in the chain.
    """
    if trusted_key is None and audit_log is not None:
        trusted_key = public_key_bytes(audit_log.signing_key.public_key())
    checkpoint: SignedCheckpoint | None = None
    if checkpoint_file is not None:
        try:
            text = await asyncio.to_thread(Path(checkpoint_file).read_text, encoding="utf-8")
            checkpoint = SignedCheckpoint.from_json(json.loads(text))
        except (OSError, ValueError) as exc:
            return 2, f"cannot read checkpoint {checkpoint_file}: {exc}"
    result = await verify(db, pair_id, checkpoint, trusted_key=trusted_key, sealer=sealer)
    message = result.summary()
    if checkpoint is not None and result.ok:
        message += f"; external checkpoint at {checkpoint.count} entries matches"
    log.info(
        "audit verify: ok=%s count=%d broken_seq=%s kind=%s",
        result.ok,
        result.count,
        result.broken_seq,
        result.kind,
    )
    if audit_log is not None and now is not None:
        details: dict[str, Any] = {"count": result.count, "head": result.head_hash.hex()}
        if not result.ok:
            details.update({"broken_seq": result.broken_seq, "kind": str(result.kind)})
        await audit_log.record(
            {
                "pair_id": pair_id,
                "action": "audit.verify",
                "actor": actor,
                "details": details,
                "outcome": "ok" if result.ok else "failed",
            },
            now,
        )
    return (0 if result.ok else 1), message


async def run_purge(
    db: Any,
    older_than: timedelta,
    now: datetime,
    *,
    audit_log: AuditLog | None = None,
    actor: str = "cli",
) -> int:
    """`confidant audit purge --older-than`: delete old content and media; return the count.

    With `audit_log`, the purge is recorded in the chain (counts and cut-off only).
    """
    result = await purge_content(db, older_than, now)
    if audit_log is not None:
        await audit_log.record(
            {
                "action": "audit.purge",
                "actor": actor,
                "details": {
                    "older_than_s": int(older_than.total_seconds()),
                    "contents": result.contents,
                    "media": result.media,
                },
            },
            now,
        )
    return result.contents + result.media
