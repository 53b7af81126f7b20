"""Verify the audit chain in the database, streaming, and the CLI's verify and purge commands."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncGenerator, Awaitable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.audit import fastscan
from bridge.audit.checkpoint import load_checkpoints
from bridge.audit.log import PURGE_ACTION, AuditLog, open_content, purge_content
from bridge.core.audit import (
    GENESIS_HASH,
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
    db: Executor,
    *,
    with_content: bool = False,
    with_presence: bool = False,
    batch_size: int = BATCH_SIZE,
) -> AsyncGenerator[AuditRow, None]:
    """Every chain row in seq order, read in batches (keyset pagination)."""

    def batch(after: int) -> Awaitable[list[AuditRow]]:
        return audit_store.entries_after(
            db, after, batch_size, with_content=with_content, with_presence=with_presence
        )

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
    checkpoint: (
        SignedCheckpoint | Mapping[str, Any] | Sequence[SignedCheckpoint | Mapping[str, Any]] | None
    ) = None,
    *,
    trusted_key: bytes | None = None,
    sealer: Sealer | None = None,
    batch_size: int = BATCH_SIZE,
    fast: bool = True,
) -> VerifyResult:
    """Verify the whole chain against its hashes, stored checkpoints and `checkpoint`(s).

    `trusted_key` (raw Ed25519 public key) makes checkpoints signed by any other key fail
    as WRONG_KEY. With `pair_id` the pair's own links are checked and counted too (the
    chain is always verified whole: the pair's entries are part of it). With `sealer`
    every stored content is opened and compared with its entry's hash; with or without
    it, an entry that names content must have it unless a recorded purge removed it.

    The whole chain is first checked range by range, in parallel (`bridge.audit.fastscan`);
    only when that cannot prove it intact (or for one pair, or with `fast=False`) is it
    read entry by entry, which says what broke and where.
    """
    checkpoints = await load_checkpoints(db)
    if checkpoint is not None:
        checkpoints.extend(_as_checkpoints(checkpoint))
    if fast and pair_id is None:
        proven = await _proven_intact(db, checkpoints, trusted_key, sealer)
        if proven is not None:
            return proven
    verifier = ChainVerifier(checkpoints, trusted_key=trusted_key, pair_id=pair_id)
    content = _ContentCheck(sealer, await _purges(db))
    rows = iter_rows(db, with_content=sealer is not None, with_presence=True, batch_size=batch_size)
    async with contextlib.aclosing(rows):
        async for row in rows:
            if not verifier.broken:
                content.check(row)
            if not verifier.feed(_record(row)):
                break
    result = verifier.finish()
    found = content.first_break
    if found is not None and (result.ok or found[0] < (result.broken_seq or 0)):
        seq, kind, detail = found
        return dataclasses.replace(
            result, ok=False, broken_seq=seq, kind=kind, detail=f"sealed content: {detail}"
        )
    return dataclasses.replace(result, content_checked=content.checked)


async def _proven_intact(
    db: Executor,
    checkpoints: Sequence[SignedCheckpoint],
    trusted_key: bytes | None,
    sealer: Sealer | None,
) -> VerifyResult | None:
    """The result of an intact chain, or None when the fast scan cannot prove it intact."""
    if not all(cp.signature_valid(trusted_key) for cp in checkpoints):
        return None
    # Checkpoints were read first: every one of them is at or below this count.
    count = await audit_store.max_seq(db) or 0
    if any(cp.count > count for cp in checkpoints):
        return None
    marks_at = frozenset(cp.count for cp in checkpoints if cp.count > 0)
    scans = await fastscan.scan_chain(db, count, marks_at, sealer)
    head = fastscan.joined(scans, count)
    if head is None:
        return None
    marks = {seq: digest for scan in scans for seq, digest in scan.marks.items()}
    for cp in checkpoints:
        if cp.checkpoint.head_hash != (GENESIS_HASH if cp.count == 0 else marks.get(cp.count)):
            return None
    purges = await _purges(db)
    if not all(purges.explain(seq, ts) for scan in scans for seq, ts in scan.missing):
        return None
    return VerifyResult(
        ok=True,
        count=count,
        head_hash=head,
        checkpoints_verified=len(checkpoints),
        last_checkpoint=max((cp.count for cp in checkpoints), default=None),
        content_checked=sum(scan.content_checked for scan in scans) if sealer else 0,
    )


def _as_checkpoints(
    given: SignedCheckpoint | Mapping[str, Any] | Sequence[SignedCheckpoint | Mapping[str, Any]],
) -> list[SignedCheckpoint]:
    items = [given] if isinstance(given, SignedCheckpoint | Mapping) else list(given)
    return [c if isinstance(c, SignedCheckpoint) else SignedCheckpoint.from_json(c) for c in items]


class _Purges:
    """The recorded retention purges: which missing contents they explain.

    A content row may be gone only because a purge recorded in the chain after its entry
    deleted everything older than that purge's cut-off.
    """

    def __init__(self, purges: Sequence[tuple[int, int]]) -> None:
        self._seqs = [seq for seq, _ in purges]
        # The latest cut-off among the purges from each position on.
        self._cutoff_from: list[int] = [0] * (len(purges) + 1)
        for index in range(len(purges) - 1, -1, -1):
            self._cutoff_from[index] = max(purges[index][1], self._cutoff_from[index + 1])

    def explain(self, seq: int, ts: int) -> bool:
        """True when a purge recorded after entry `seq` deleted content as old as `ts`."""
        return ts < self._cutoff_from[bisect.bisect_right(self._seqs, seq)]


async def _purges(db: Executor) -> _Purges:
    found: list[tuple[int, int]] = []
    for seq, ts, details in await audit_store.entries_with_action(db, PURGE_ACTION):
        try:
            data = json.loads(details)
            cutoff = data.get("cutoff_ms")
            if not isinstance(cutoff, int):
                cutoff = ts - int(data["older_than_s"]) * 1000
        except (ValueError, TypeError, KeyError, AttributeError):
            continue  # a purge record that says nothing explains nothing
        found.append((seq, int(cutoff)))
    return _Purges(found)


class _ContentCheck:
    """Every entry that names content has it, or a recorded purge removed it.

    With a sealer each stored content is also opened and compared with its entry's hash.
    """

    def __init__(self, sealer: Sealer | None, purges: _Purges) -> None:
        self.sealer = sealer
        self.purges = purges
        self.checked = 0
        self.first_break: tuple[int, BreakKind, str] | None = None

    def check(self, row: AuditRow) -> None:
        if self.first_break is not None:
            return
        seq = int(row.seq)
        sha = row.content_sha256
        if row.has_content is False or (row.has_content is None and row.sealed is None):
            if sha is not None and not self.purges.explain(seq, int(row.ts)):
                self.first_break = (
                    seq,
                    BreakKind.MISSING,
                    f"content of entry {seq} is missing and no recorded purge removed it",
                )
            return
        if self.sealer is None or row.sealed is None:
            return
        try:
            if sha is None:
                raise SealError("content stored for an entry without content")
            open_content(self.sealer, seq, sha, row.sealed)
        except SealError as exc:
            self.first_break = (seq, BreakKind.CHANGED, str(exc))
            return
        self.checked += 1


async def read_checkpoints(path: str | Path) -> list[SignedCheckpoint]:
    """The signed checkpoint in a file, or every `*.json` checkpoint in a directory.

    Raises `OSError` or `ValueError` when one cannot be read: a witness that cannot be
    read must not silently count as none.
    """
    source = Path(path)

    def read() -> list[SignedCheckpoint]:
        files = sorted(source.glob("*.json")) if source.is_dir() else [source]
        if not files:
            raise ValueError("the directory holds no checkpoint (*.json)")
        return [SignedCheckpoint.from_json(json.loads(f.read_text("utf-8"))) for f in files]

    return await asyncio.to_thread(read)


async def run_verify(
    db: Executor,
    *,
    pair_id: str | None = None,
    checkpoint_file: str | Path | None = None,
    trusted_key: bytes | None = None,
    sealer: Sealer | None = None,
    audit_log: AuditLog | None = None,
) -> tuple[int, str]:
    """`confidant audit verify`: exit code (0 OK, 1 broken, 2 unusable input) and one line.

    Checkpoints must be signed by `trusted_key`, which defaults to the public half of
    `audit_log`'s signing key. `checkpoint_file` is a checkpoint kept outside the
    database, or a directory of them. Nothing is written to the database: a check that
    appended to the chain it checks would move the head every witness has to match.
    """
    if trusted_key is None and audit_log is not None:
        trusted_key = public_key_bytes(audit_log.signing_key.public_key())
    kept: list[SignedCheckpoint] = []
    if checkpoint_file is not None:
        try:
            kept = await read_checkpoints(checkpoint_file)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return 2, f"cannot read checkpoint {checkpoint_file}: {exc}"
    result = await verify(db, pair_id, kept or None, trusted_key=trusted_key, sealer=sealer)
    message = result.summary()
    if kept and result.ok:
        top = max(cp.count for cp in kept)
        message += f"; external checkpoint at {top} entries matches"
    log.info(
        "audit verify: ok=%s count=%d broken_seq=%s kind=%s",
        result.ok,
        result.count,
        result.broken_seq,
        result.kind,
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

    With `audit_log` the purge is recorded in the chain in the same transaction (cut-off
    and counts only), which is what lets `verify` tell it from a deletion.
    """
    if audit_log is not None:
        result = await audit_log.purge(older_than, now, actor=actor)
    else:
        result = await purge_content(db, older_than, now)
    return result.contents + result.media
