"""Signed checkpoints of the audit chain head, a few per thousand entries.

Signing belongs to `bridge.audit.checkpoint`; this module keeps what was signed. One
checkpoint per entry count: writing a second one for the same count keeps the first.
"""

from __future__ import annotations

from bridge.core.audit import Checkpoint, SignedCheckpoint
from bridge.store.base import Executor, Row
from bridge.store.rows import blob, integer

_COLUMNS = "count, head_hash, ts, public_key, signature"


def _record(row: Row) -> SignedCheckpoint:
    return SignedCheckpoint(
        checkpoint=Checkpoint(
            count=integer(row, "count"), head_hash=blob(row, "head_hash"), ts=integer(row, "ts")
        ),
        signature=blob(row, "signature"),
        public_key=blob(row, "public_key"),
    )


async def add(ex: Executor, signed: SignedCheckpoint, reason: str) -> None:
    """Keep a signed checkpoint; `reason` says why it was signed (periodic, export, manual)."""
    await ex.execute(
        "INSERT INTO audit_checkpoints (count, head_hash, ts, key_id, public_key, signature,"
        " reason) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (count) DO NOTHING",
        signed.count,
        signed.checkpoint.head_hash,
        signed.checkpoint.ts,
        signed.key_id,
        signed.public_key,
        signed.signature,
        reason,
    )


async def list_all(ex: Executor) -> list[SignedCheckpoint]:
    """Every stored checkpoint, oldest first."""
    rows = await ex.fetch(f"SELECT {_COLUMNS} FROM audit_checkpoints ORDER BY count")
    return [_record(row) for row in rows]


async def latest(ex: Executor) -> SignedCheckpoint | None:
    """The newest stored checkpoint, or None."""
    row = await ex.fetchrow(f"SELECT {_COLUMNS} FROM audit_checkpoints ORDER BY count DESC LIMIT 1")
    return _record(row) if row else None
