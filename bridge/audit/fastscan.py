"""A fast proof that the audit chain is intact: hashes checked range by range, in parallel.

Every stored entry keeps the hash of the one before it, so a range of entries can be
checked on its own: each entry's hash over its stored previous hash, each previous hash
against the entry before it in the range, and each stored content opened. The ranges are
then joined: each one's first previous hash must be the last hash of the range before,
the first the genesis hash. Together that is exactly the sequential check when nothing is
wrong. The entry is hashed from its stored columns, with the details spliced in as the
canonical JSON text they were stored as, instead of being parsed and encoded again.

This only proves a chain intact. Anything else (a hash that does not match, a gap, content
that does not open, a checkpoint that differs) answers "not proven", and `verify` reads
the chain again entry by entry to say exactly what broke and where.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import pickle
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from typing import Any

from bridge.audit.log import open_content
from bridge.core.audit import GENESIS_HASH
from bridge.sealing import Sealer, SealError
from bridge.store import audit as audit_store
from bridge.store.base import Executor

#: Below this many entries one process scans the whole chain (a worker costs ~0.1 s to start).
PARALLEL_FROM = 100_000
#: Rows fetched per query when scanning through the database connection (PostgreSQL).
FETCH = 10_000

# The canonical JSON of an entry (`bridge.core.audit.make_entry`, sorted keys, no spaces):
# strings JSON-escaped, null for None, integers as they are, the details as stored.
_ENTRY = (
    '{"action":%s,"actor":%s,"content_sha256":%s,"details":%s,"event_id":%s,'
    '"outcome":%s,"pair_id":%s,"pair_prev":%s,"role":%s,"seq":%d,"ts":%d,"v":%d}'
)


@dataclass
class RangeScan:
    """What one range of entries showed: intact or not, and what joining needs."""

    first: int
    intact: bool = True
    count: int = 0
    first_prev: bytes | None = None
    last_hash: bytes | None = None
    #: The entry hashes at the seqs asked for (where checkpoints are).
    marks: dict[int, bytes] = field(default_factory=dict)
    #: (seq, ts) of entries that name content none is stored for (a purge must explain it).
    missing: list[tuple[int, int]] = field(default_factory=list)
    content_checked: int = 0

    def feed(
        self, rows: Iterable[tuple[Any, ...]], marks_at: frozenset[int], sealer: Sealer | None
    ) -> bool:
        """Check the next rows of the range; False once it cannot be proven intact."""
        if not self.intact:
            return False
        # Locals, not attributes, in the loop: it runs once per entry of the chain.
        enc = encode_basestring
        sha256 = hashlib.sha256
        entry_text = _ENTRY
        missing = self.missing
        marks = self.marks
        count = self.count
        checked = self.content_checked
        expect = self.first + count
        last = self.last_hash
        intact = True
        reading = sealer is not None
        try:
            for row in rows:
                (seq, v, ts, pair_id, pair_prev, actor, role, action, event_id, outcome) = row[:10]
                content_sha, details, prev, digest, extra = row[10:]
                if seq != expect or (last is not None and prev != last):
                    intact = False
                    break
                text = entry_text % (
                    enc(action),
                    enc(actor),
                    "null" if content_sha is None else enc(content_sha),
                    details,
                    "null" if event_id is None else enc(event_id),
                    enc(outcome),
                    "null" if pair_id is None else enc(pair_id),
                    "null" if pair_prev is None else enc(pair_prev),
                    "null" if role is None else enc(role),
                    seq,
                    ts,
                    v,
                )
                if sha256(prev + text.encode()).digest() != digest:
                    intact = False
                    break
                # `extra` is the sealed content (or None) when reading content, else 1/0.
                if (extra is None) if reading else not extra:
                    if content_sha is not None:
                        missing.append((seq, ts))
                elif content_sha is None:
                    intact = False  # content stored for an entry that names none
                    break
                elif sealer is not None:
                    open_content(sealer, seq, content_sha, extra)
                    checked += 1
                if count == 0:
                    self.first_prev = prev
                if seq in marks_at:
                    marks[seq] = digest
                last = digest
                count += 1
                expect += 1
        except (SealError, TypeError, ValueError):
            intact = False
        self.count = count
        self.content_checked = checked
        self.last_hash = last
        self.intact = intact
        return intact


def scan_file_range(
    path: str, first: int, last: int, marks_at: frozenset[int], sealer: Sealer | None
) -> RangeScan:
    """Scan entries `first`..`last` of a SQLite file (runs in a worker process)."""
    scan = RangeScan(first)
    for rows in audit_store.scan_sqlite(path, first, last, with_content=sealer is not None):
        if not scan.feed(rows, marks_at, sealer):
            break
    return scan


def _ranges(count: int, parts: int) -> list[tuple[int, int]]:
    size = -(-count // parts)
    return [(start, min(start + size - 1, count)) for start in range(1, count + 1, size)]


def workers_for(count: int) -> int:
    """How many processes scan a chain of `count` entries."""
    if count < PARALLEL_FROM:
        return 1
    return max(1, min(os.cpu_count() or 1, 8))


async def _scan_in_process(
    path: str, first: int, last: int, marks_at: frozenset[int], sealer: Sealer | None
) -> RangeScan:
    """Scan a range in a worker process of its own (`bridge.audit.scan_worker`).

    A plain child process, not a multiprocessing pool: a pool's spawned children import the
    parent's main script again, which a script without a main guard cannot survive. The
    sealer goes through the pipe, never through a file.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge.audit.scan_worker",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    out, _ = await proc.communicate(pickle.dumps((path, first, last, marks_at, sealer)))
    if proc.returncode != 0:
        raise RuntimeError(f"audit scan worker failed (exit {proc.returncode})")
    scan = pickle.loads(out)
    if not isinstance(scan, RangeScan):
        raise RuntimeError("audit scan worker gave no scan")
    return scan


async def scan_chain(
    db: Executor, count: int, marks_at: frozenset[int], sealer: Sealer | None
) -> list[RangeScan]:
    """Scan entries 1..`count`: in worker processes from a SQLite file, else through `db`."""
    path = await audit_store.sqlite_file(db)
    if path is not None:
        workers = workers_for(count)
        if workers == 1:
            return [await asyncio.to_thread(scan_file_range, path, 1, count, marks_at, sealer)]
        return list(
            await asyncio.gather(
                *(
                    _scan_in_process(path, first, last, marks_at, sealer)
                    for first, last in _ranges(count, workers)
                )
            )
        )
    scan = RangeScan(1)
    after = 0
    while after < count:
        rows = await audit_store.scan_after(
            db, after, min(FETCH, count - after), with_content=sealer is not None
        )
        if not rows or not scan.feed(rows, marks_at, sealer):
            break
        after = int(rows[-1][0])
    return [scan]


def joined(scans: Sequence[RangeScan], count: int) -> bytes | None:
    """The head hash when the ranges join into one intact chain of `count` entries."""
    head = GENESIS_HASH
    expect = 1
    for scan in sorted(scans, key=lambda s: s.first):
        if not scan.intact or scan.first != expect:
            return None
        if scan.count == 0:
            continue
        if scan.first_prev != head:
            return None
        assert scan.last_hash is not None
        head = scan.last_hash
        expect += scan.count
    return head if expect == count + 1 else None
