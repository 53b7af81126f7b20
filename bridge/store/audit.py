"""The audit chain's tables: entries, their sealed content and media, and the chain head.

Entries are written exactly as they were hashed (`details` is the canonical JSON text),
so a row read back is what a verifier needs. Sealing and hashing belong to
`bridge.audit`; these functions only move rows. Appenders serialise on the one
`audit_head` row: `lock_head` takes it `FOR UPDATE` on PostgreSQL; on SQLite every
transaction already holds the write lock from `BEGIN IMMEDIATE`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.store.base import Executor, Row, SqlParam
from bridge.store.rows import (
    blob,
    blob_or_none,
    integer,
    text,
    text_or_none,
    to_bytes_or_none,
    to_int_or_none,
)

_ENTRY_COLUMNS = (
    "seq, v, ts, pair_id, pair_prev, actor, role, action, event_id, outcome, content_sha256,"
    " details, prev_hash, entry_hash"
)
_E_COLUMNS = ", ".join(f"e.{name.strip()}" for name in _ENTRY_COLUMNS.split(","))
_MISSING_HEAD = "audit_head row is missing: the audit migration did not run"


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One stored chain entry; `sealed` is its content blob when the query asked for it.

    `sealed` is None when no content is stored for the entry (none, or purged).
    """

    seq: int
    v: int
    ts: int
    pair_id: str | None
    pair_prev: str | None
    actor: str
    role: str | None
    action: str
    event_id: str | None
    outcome: str
    content_sha256: str | None
    #: The canonical JSON text of the entry's details, as hashed.
    details: str
    prev_hash: bytes
    entry_hash: bytes
    sealed: bytes | None = None
    #: Whether a sealed content row exists for the entry; None when the query did not ask.
    has_content: bool | None = None

    def entry(self) -> dict[str, Any]:
        """The chain entry this row holds (exactly what was hashed)."""
        return {
            "v": self.v,
            "seq": self.seq,
            "ts": self.ts,
            "pair_id": self.pair_id,
            "pair_prev": self.pair_prev,
            "actor": self.actor,
            "role": self.role,
            "action": self.action,
            "event_id": self.event_id,
            "outcome": self.outcome,
            "content_sha256": self.content_sha256,
            "details": json.loads(self.details),
        }


@dataclass(frozen=True, slots=True)
class Head:
    """The chain head: how many entries there are and the last one's hash (None when empty)."""

    seq: int
    head_hash: bytes | None


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """The action, outcome and details text of one entry (for counts by fixed codes)."""

    action: str
    outcome: str | None
    details: str | None


@dataclass(frozen=True, slots=True)
class AuditedEvent:
    """A room event as the chain recorded it: its pair, event id, actor and action."""

    pair_id: str | None
    event_id: str
    actor: str
    action: str


def _row(row: Row) -> AuditRow:
    sealed = to_bytes_or_none(row.get("sealed"), "sealed")
    return AuditRow(
        seq=integer(row, "seq"),
        v=integer(row, "v"),
        ts=integer(row, "ts"),
        pair_id=text_or_none(row, "pair_id"),
        pair_prev=text_or_none(row, "pair_prev"),
        actor=text(row, "actor"),
        role=text_or_none(row, "role"),
        action=text(row, "action"),
        event_id=text_or_none(row, "event_id"),
        outcome=text(row, "outcome"),
        content_sha256=text_or_none(row, "content_sha256"),
        details=text(row, "details"),
        prev_hash=blob(row, "prev_hash"),
        entry_hash=blob(row, "entry_hash"),
        # Only queries that join audit_content have these columns.
        sealed=sealed,
        has_content=(sealed is not None) if "sealed" in row else _presence(row),
    )


def _presence(row: Row) -> bool | None:
    value = row.get("has_content")
    return None if value is None else bool(value)


def _head(row: Row | None) -> Head:
    if row is None:
        raise RuntimeError(_MISSING_HEAD)
    return Head(integer(row, "seq"), blob_or_none(row, "head_hash"))


# ---------------------------------------------------------------- appending


async def lock_head(tx: Executor) -> Head:
    """Read the head and hold it until the caller's transaction ends (one appender at a time)."""
    if tx.dialect == "postgres":
        # The row lock serialises appenders from every connection and process until
        # the caller's transaction ends, so two entries never share a seq or a prev.
        sql = "SELECT seq, head_hash FROM audit_head WHERE id = 1 FOR UPDATE"
    else:
        # SQLite transactions begin IMMEDIATE: the write lock is already held.
        sql = "SELECT seq, head_hash FROM audit_head WHERE id = 1"
    return _head(await tx.fetchrow(sql))


async def head(ex: Executor) -> Head:
    """The head as it is now, without locking it."""
    return _head(await ex.fetchrow("SELECT seq, head_hash FROM audit_head WHERE id = 1"))


async def set_head(tx: Executor, seq: int, head_hash: bytes) -> None:
    """Move the head to the entry just appended."""
    await tx.execute("UPDATE audit_head SET seq = ?, head_hash = ? WHERE id = 1", seq, head_hash)


async def pair_head(ex: Executor, pair_id: str | None) -> bytes | None:
    """The hash of the newest entry of `pair_id` (of the entries without a pair for None)."""
    if pair_id is None:
        value = await ex.fetchval(
            "SELECT entry_hash FROM audit_entries WHERE pair_id IS NULL ORDER BY seq DESC LIMIT 1"
        )
    else:
        value = await ex.fetchval(
            "SELECT entry_hash FROM audit_entries WHERE pair_id = ? ORDER BY seq DESC LIMIT 1",
            pair_id,
        )
    return to_bytes_or_none(value, "entry_hash")


_PLACEHOLDERS = ", ".join("?" * len(_ENTRY_COLUMNS.split(",")))
_INSERT_ENTRY = f"INSERT INTO audit_entries ({_ENTRY_COLUMNS}) VALUES ({_PLACEHOLDERS})"


def _entry_values(row: AuditRow) -> tuple[SqlParam, ...]:
    """An entry's column values, in `_ENTRY_COLUMNS` order."""
    return (
        row.seq,
        row.v,
        row.ts,
        row.pair_id,
        row.pair_prev,
        row.actor,
        row.role,
        row.action,
        row.event_id,
        row.outcome,
        row.content_sha256,
        row.details,
        row.prev_hash,
        row.entry_hash,
    )


async def insert(tx: Executor, row: AuditRow) -> None:
    """Write one entry (its `sealed` content, if any, goes in with `insert_content`)."""
    await tx.execute(_INSERT_ENTRY, *_entry_values(row))


async def insert_many(tx: Executor, rows: Sequence[AuditRow]) -> None:
    """Write several entries at once (a group commit), in the order given."""
    if len(rows) == 1:
        await insert(tx, rows[0])
        return
    await tx.executemany(_INSERT_ENTRY, [_entry_values(row) for row in rows])


async def insert_contents(tx: Executor, contents: Sequence[tuple[int, int, str, bytes]]) -> None:
    """Keep the sealed contents `(seq, ts, key_id, sealed)` of several entries at once."""
    if len(contents) == 1:
        await insert_content(tx, *contents[0])
        return
    await tx.executemany(
        "INSERT INTO audit_content (seq, ts, key_id, sealed) VALUES (?, ?, ?, ?)", contents
    )


async def insert_content(tx: Executor, seq: int, ts: int, key_id: str, sealed: bytes) -> None:
    """Keep the sealed content of entry `seq`."""
    await tx.execute(
        "INSERT INTO audit_content (seq, ts, key_id, sealed) VALUES (?, ?, ?, ?)",
        seq,
        ts,
        key_id,
        sealed,
    )


async def put_media(
    tx: Executor, sha256: str, ts: int, size: int, key_id: str, sealed: bytes
) -> None:
    """Keep sealed media by its hash; storing it again only moves its time forward."""
    await tx.execute(
        "INSERT INTO audit_media (sha256, ts, size, key_id, sealed) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (sha256) DO UPDATE SET ts = excluded.ts"
        " WHERE audit_media.ts < excluded.ts",
        sha256,
        ts,
        size,
        key_id,
        sealed,
    )


# ---------------------------------------------------------------- reading


async def sealed_content(ex: Executor, seq: int) -> tuple[str | None, bytes] | None:
    """(content hash of the entry, its sealed content), or None when no content is stored."""
    row = await ex.fetchrow(
        "SELECT e.content_sha256, c.sealed FROM audit_entries e"
        " JOIN audit_content c ON c.seq = e.seq WHERE e.seq = ?",
        seq,
    )
    if row is None:
        return None
    return text_or_none(row, "content_sha256"), blob(row, "sealed")


async def sealed_media(ex: Executor, sha256: str) -> bytes | None:
    """The sealed media named by its hex SHA-256, or None when absent (purged or never stored)."""
    value = await ex.fetchval("SELECT sealed FROM audit_media WHERE sha256 = ?", sha256)
    return to_bytes_or_none(value, "sealed")


async def entries_after(
    ex: Executor,
    after_seq: int,
    limit: int,
    *,
    with_content: bool = False,
    with_presence: bool = False,
) -> list[AuditRow]:
    """Up to `limit` entries with seq above `after_seq`, in seq order (keyset pagination).

    With `with_content` each row carries its sealed content, where one is stored; with
    `with_presence` only whether one is stored (`has_content`), without reading it.
    """
    columns, join = _E_COLUMNS, ""
    if with_content:
        columns += ", c.sealed AS sealed"
        join = " LEFT JOIN audit_content c ON c.seq = e.seq"
    elif with_presence:
        columns += ", CASE WHEN c.seq IS NULL THEN 0 ELSE 1 END AS has_content"
        join = " LEFT JOIN audit_content c ON c.seq = e.seq"
    rows = await ex.fetch(
        f"SELECT {columns} FROM audit_entries e{join} WHERE e.seq > ?"
        f" ORDER BY e.seq LIMIT {int(limit)}",
        after_seq,
    )
    return [_row(row) for row in rows]


async def pair_entries(ex: Executor, pair_id: str, up_to_seq: int) -> list[AuditRow]:
    """The pair's entries up to and including `up_to_seq`, in seq order, with sealed content."""
    rows = await ex.fetch(
        f"SELECT {_E_COLUMNS}, c.sealed AS sealed"
        " FROM audit_entries e LEFT JOIN audit_content c ON c.seq = e.seq"
        " WHERE e.pair_id = ? AND e.seq <= ? ORDER BY e.seq",
        pair_id,
        up_to_seq,
    )
    return [_row(row) for row in rows]


async def max_seq(ex: Executor) -> int | None:
    """The seq of the newest entry, or None when the chain is empty."""
    return to_int_or_none(await ex.fetchval("SELECT MAX(seq) FROM audit_entries"))


async def actions_in_range(
    ex: Executor, after_seq: int, up_to_seq: int, actions: Sequence[str]
) -> list[ActionRecord]:
    """Entries with `after_seq < seq <= up_to_seq` whose action is one of `actions`.

    A range on the primary key: the action has no index, so callers that keep counts
    read only what was appended since they last looked.
    """
    if not actions:
        return []
    marks = ", ".join("?" * len(actions))
    rows = await ex.fetch(
        "SELECT action, outcome, details FROM audit_entries"
        f" WHERE seq > ? AND seq <= ? AND action IN ({marks})",
        after_seq,
        up_to_seq,
        *actions,
    )
    return [
        ActionRecord(
            text(row, "action"), text_or_none(row, "outcome"), text_or_none(row, "details")
        )
        for row in rows
    ]


async def entries_with_action(ex: Executor, action: str) -> list[tuple[int, int, str]]:
    """(seq, ts, details text) of every entry with `action`, in seq order."""
    rows = await ex.fetch(
        "SELECT seq, ts, details FROM audit_entries WHERE action = ? ORDER BY seq", action
    )
    return [(integer(row, "seq"), integer(row, "ts"), text(row, "details")) for row in rows]


async def first_room_entry(ex: Executor, event_id: str) -> int | None:
    """The seq of the first `room.*` entry recorded for a Matrix event, or None."""
    value = await ex.fetchval(
        "SELECT seq FROM audit_entries WHERE event_id = ? AND action LIKE 'room.%'"
        " ORDER BY seq LIMIT 1",
        event_id,
    )
    return to_int_or_none(value, "seq")


async def has_entry(ex: Executor, event_id: str, action: str) -> bool:
    """Tell whether an entry with `action` was recorded for the Matrix event `event_id`."""
    value = await ex.fetchval(
        "SELECT seq FROM audit_entries WHERE event_id = ? AND action = ?", event_id, action
    )
    return value is not None


async def events_without(
    ex: Executor,
    follow_up: str,
    *,
    actions: Sequence[str],
    roles: Sequence[str],
    since_ms: int,
) -> list[AuditedEvent]:
    """Events recorded since `since_ms` with no `follow_up` entry for the same event id.

    Only entries whose action is in `actions` and whose role is in `roles` count;
    oldest first.
    """
    if not actions or not roles:
        return []
    action_marks = ", ".join("?" * len(actions))
    role_marks = ", ".join("?" * len(roles))
    rows = await ex.fetch(
        "SELECT e.pair_id, e.event_id, e.actor, e.action FROM audit_entries e"
        f" WHERE e.ts >= ? AND e.action IN ({action_marks}) AND e.role IN ({role_marks})"
        " AND e.event_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM audit_entries m"
        " WHERE m.event_id = e.event_id AND m.action = ?) ORDER BY e.seq",
        since_ms,
        *actions,
        *roles,
        follow_up,
    )
    return [
        AuditedEvent(
            pair_id=text_or_none(row, "pair_id"),
            event_id=text(row, "event_id"),
            actor=text(row, "actor"),
            action=text(row, "action"),
        )
        for row in rows
    ]


async def room_writers(ex: Executor, pair_id: str, start_ms: int, end_ms: int) -> list[str]:
    """Who has `room.*` entries (memberships aside) for the pair with `start <= ts < end`."""
    rows = await ex.fetch(
        "SELECT DISTINCT actor FROM audit_entries WHERE pair_id = ? AND ts >= ? AND ts < ?"
        " AND action LIKE 'room.%' AND action <> 'room.membership'",
        pair_id,
        start_ms,
        end_ms,
    )
    return [text(row, "actor") for row in rows]


# ---------------------------------------------------------------- retention


async def delete_content_before(tx: Executor, cutoff_ms: int) -> int:
    """Delete sealed contents older than `cutoff_ms`; the entries stay. Returns how many."""
    return await tx.execute("DELETE FROM audit_content WHERE ts < ?", cutoff_ms)


async def delete_media_before(tx: Executor, cutoff_ms: int) -> int:
    """Delete sealed media older than `cutoff_ms`. Returns how many."""
    return await tx.execute("DELETE FROM audit_media WHERE ts < ?", cutoff_ms)


# ---------------------------------------------------------------- scanning the chain fast


def _scan_sql(with_content: bool, *, bounded: bool) -> str:
    # The entry's columns in stored order, then the sealed content (with content) or 1/0
    # for whether one is stored.
    extra = "c.sealed" if with_content else "CASE WHEN c.seq IS NULL THEN 0 ELSE 1 END"
    where = "e.seq BETWEEN ? AND ?" if bounded else "e.seq > ?"
    return (
        f"SELECT {_E_COLUMNS}, {extra} AS extra FROM audit_entries e"
        f" LEFT JOIN audit_content c ON c.seq = e.seq WHERE {where} ORDER BY e.seq"
    )


async def sqlite_file(ex: Executor) -> str | None:
    """The file of a SQLite database (None for PostgreSQL or an in-memory database)."""
    if ex.dialect != "sqlite":
        return None
    for row in await ex.fetch("PRAGMA database_list"):
        if row.get("name") == "main":
            path = row.get("file")
            return str(path) if path else None
    return None


def scan_sqlite(
    path: str, first: int, last: int, *, with_content: bool, batch_size: int = 20_000
) -> Iterator[list[tuple[Any, ...]]]:
    """Entries `first`..`last` of a SQLite file as plain tuples, batch by batch, read on a
    connection of their own (read-only, so a worker process may scan while the bridge runs).
    """
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        conn.execute("PRAGMA query_only = ON")
        cursor = conn.execute(_scan_sql(with_content, bounded=True), (first, last))
        while batch := cursor.fetchmany(batch_size):
            yield batch
    finally:
        conn.close()


async def scan_after(
    ex: Executor, after_seq: int, limit: int, *, with_content: bool
) -> list[tuple[Any, ...]]:
    """Up to `limit` entries after `after_seq` as plain tuples (the columns of a scan)."""
    rows = await ex.fetch(f"{_scan_sql(with_content, bounded=False)} LIMIT {int(limit)}", after_seq)
    return [tuple(row.values()) for row in rows]
