"""The audit chain: entries appended per second on SQLite and PostgreSQL; verifying a million.

Appending goes through `AuditLog.append` exactly as the service does: one entry per
transaction with about 200 bytes of message content sealed beside it, over 50 pairs
(each entry links to its pair's previous one), first from one appender, then from eight
at once (PostgreSQL serialises them on the head row; SQLite on its write lock). A periodic
checkpoint is signed every 1,000 entries, as configured by default. PostgreSQL is the
server on 127.0.0.1:5432 (user postgres, or BENCH_PG_URL): a scratch database is created
and dropped; without a server the PostgreSQL rows are left out.

Verifying: `BENCH_AUDIT_VERIFY` (default 1,000,000) entries, each with sealed content,
built with the core's own functions (`make_entry`, `entry_hash`, canonical JSON) and
written with executemany, then a signed checkpoint of the head. `bridge.audit.verify.verify`
reads them back: the chain alone, then with every content unsealed and checked against
its hash (what `confidant audit verify` does).

`python -m bench audit` puts the rows in the common table; `python -m bench.audit` runs
only this one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.table import Row, format_table
from bridge.audit.checkpoint import write_checkpoint
from bridge.audit.log import AuditLog, content_aad
from bridge.audit.verify import verify
from bridge.core.audit import (
    GENESIS_HASH,
    canonical_json,
    entry_hash,
    make_entry,
    message_content,
    sha256_hex,
)
from bridge.core.model import AppendAudit
from bridge.sealing import Sealer
from bridge.store import open_database
from bridge.store.base import Database

DEFAULT_APPENDS = 2_000
DEFAULT_VERIFY = 1_000_000
CONCURRENT = 8
PAIRS = 50
BATCH = 20_000
PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
T0_MS = 1_780_000_000_000
SIGNING_KEY = bytes(range(32, 64))
_BODY = "x" * 160


def _sealer() -> Sealer:
    return Sealer({"k1": bytes(range(32))}, "k1")


def _record(i: int) -> AppendAudit:
    """A message entry like the pair hook writes: ids, kind and role; the body sealed apart."""
    return AppendAudit(
        pair_id=f"pair{i % PAIRS:03d}",
        action="message",
        actor=f"@patient{i % PAIRS}:bench",
        details={"kind": "text", "role": "patient", "origin_ts": T0_MS + i},
        event_id=f"$event{i}",
        content=message_content("m.text", f"{_BODY} {i}"),
    )


# ---------------------------------------------------------------- appends


async def _append_rate(db: Database, count: int, appenders: int, offset: int) -> float:
    """Entries per second with `appenders` tasks each appending its share, one per transaction."""
    log = AuditLog(db, _sealer(), SIGNING_KEY)
    share = count // appenders

    async def one(worker: int) -> None:
        for n in range(share):
            i = offset + worker * share + n
            await log.record(_record(i), T0_MS + i)

    started = time.perf_counter()
    await asyncio.gather(*(one(w) for w in range(appenders)))
    return share * appenders / (time.perf_counter() - started)


async def _append_rows(db: Database, name: str, count: int) -> list[Row]:
    single = await _append_rate(db, count, 1, 0)
    many = await _append_rate(db, count, CONCURRENT, count)
    result = await verify(db, trusted_key=None, sealer=_sealer())
    assert result.ok and result.count == 2 * count, result.summary()
    return [
        Row(f"audit append, {name}, 1 appender", single, "entries/s"),
        Row(f"audit append, {name}, {CONCURRENT} appenders", many, "entries/s"),
    ]


async def _postgres_rows(count: int) -> list[Row]:
    try:
        admin = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        logging.getLogger(__name__).warning(
            "PostgreSQL unreachable, its rows are left out", extra={"error": type(exc).__name__}
        )
        return []
    name = f"confidant_bench_{secrets.token_hex(4)}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        db = await open_database(f"{PG_ADMIN_URL.rpartition('/')[0]}/{name}")
        try:
            return await _append_rows(db, "PostgreSQL", count)
        finally:
            await db.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


# ---------------------------------------------------------------- a million entries


class ChainBuilder:
    """Entry and content rows of one valid chain, built batch by batch."""

    def __init__(self, sealer: Sealer) -> None:
        self.sealer = sealer
        self.head = GENESIS_HASH
        self.seq = 0
        self.pair_heads: dict[str, bytes] = {}

    def batch(self, size: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """The next `size` entries and their sealed contents."""
        entries: list[tuple[Any, ...]] = []
        contents: list[tuple[Any, ...]] = []
        for seq in range(self.seq + 1, self.seq + size + 1):
            record = _record(seq)
            assert record.content is not None and record.pair_id is not None
            content_sha = sha256_hex(record.content)
            ts = T0_MS + seq
            entry = make_entry(
                seq=seq,
                ts=ts,
                pair_id=record.pair_id,
                pair_prev=self.pair_heads.get(record.pair_id),
                actor=record.actor,
                role="patient",
                action=record.action,
                event_id=record.event_id,
                content_sha256=content_sha,
                details=record.details,
            )
            digest = entry_hash(self.head, entry, check=False)
            entries.append(
                (
                    seq,
                    entry["v"],
                    ts,
                    record.pair_id,
                    entry["pair_prev"],
                    record.actor,
                    "patient",
                    record.action,
                    record.event_id,
                    entry["outcome"],
                    content_sha,
                    canonical_json(entry["details"], check=False).decode("utf-8"),
                    self.head,
                    digest,
                )
            )
            contents.append(
                (seq, ts, "k1", self.sealer.seal(record.content, content_aad(seq, content_sha)))
            )
            self.pair_heads[record.pair_id] = digest
            self.head = digest
        self.seq += size
        return entries, contents


async def _build_chain(db: Database, count: int) -> None:
    """Write a valid chain of `count` entries with sealed contents and a signed checkpoint."""
    builder = ChainBuilder(_sealer())
    while builder.seq < count:
        entries, contents = builder.batch(min(BATCH, count - builder.seq))
        async with db.transaction() as tx:
            await tx.executemany(
                "INSERT INTO audit_entries (seq, v, ts, pair_id, pair_prev, actor, role, action,"
                " event_id, outcome, content_sha256, details, prev_hash, entry_hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                entries,
            )
            await tx.executemany(
                "INSERT INTO audit_content (seq, ts, key_id, sealed) VALUES (?, ?, ?, ?)",
                contents,
            )
    async with db.transaction() as tx:
        await tx.execute(
            "UPDATE audit_head SET seq = ?, head_hash = ? WHERE id = 1", builder.seq, builder.head
        )
        log = AuditLog(db, builder.sealer, SIGNING_KEY)
        await write_checkpoint(tx, log.signing_key, T0_MS + count, "manual")


async def _verify_rows(count: int) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        db = await open_database(f"sqlite://{Path(tmp) / 'verify.db'}")
        try:
            started = time.perf_counter()
            await _build_chain(db, count)
            build_s = time.perf_counter() - started

            started = time.perf_counter()
            chain = await verify(db)
            chain_s = time.perf_counter() - started
            assert chain.ok and chain.count == count, chain.summary()
            assert chain.checkpoints_verified == 1, chain.summary()

            started = time.perf_counter()
            full = await verify(db, sealer=_sealer())
            full_s = time.perf_counter() - started
            assert full.ok and full.content_checked == count, full.summary()
        finally:
            await db.close()
    return [
        Row(f"audit: build a {count:,}-entry chain (executemany)", build_s, "s"),
        Row(f"audit verify {count:,} entries, SQLite, chain", chain_s, "s"),
        Row(f"audit verify {count:,} entries, SQLite, chain + content", full_s, "s"),
        Row("audit verify, chain", count / chain_s, "entries/s"),
        Row("audit verify, chain + content", count / full_s, "entries/s"),
    ]


async def run() -> list[Row]:
    """Rows for `python -m bench`; BENCH_AUDIT_APPENDS and BENCH_AUDIT_VERIFY set the sizes."""
    appends = int(os.environ.get("BENCH_AUDIT_APPENDS", DEFAULT_APPENDS))
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        db = await open_database(f"sqlite://{Path(tmp) / 'append.db'}")
        try:
            rows += await _append_rows(db, "SQLite", appends)
        finally:
            await db.close()
    rows += await _postgres_rows(appends)
    rows += await _verify_rows(int(os.environ.get("BENCH_AUDIT_VERIFY", DEFAULT_VERIFY)))
    return rows


def main() -> None:
    """Measure and print this benchmark's table."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    print(format_table(asyncio.run(run())))


if __name__ == "__main__":
    main()
