"""The durable outbox: every Matrix event Confidant posts, written before it is sent.

Content can be clinical (a relayed e-mail, a voice note's keys), so it is never
stored in the clear: `enqueue` seals the JSON with the caller's sealer (for
example `bridge.sealing.Sealer`) bound to the txn id, and `due` opens it again.
Once sent, the content is deleted (after the self-check, when it runs); the row remains as
a record of the send.
Errors recorded with a retry must name a cause (an error class or HTTP code),
never content.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.store.base import ContentSealer, Executor, Row
from bridge.store.rows import (
    blob_or_none,
    integer,
    integer_or_none,
    json_object,
    text,
    text_or_none,
    to_int_or_none,
)

#: Longest last_error kept; enough for a class name and a status line.
MAX_ERROR_LENGTH = 200


class OutboxStatus(enum.StrEnum):
    """Where an outbox row is in its life."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One outbox row; `content` is None once sent, or when not asked for."""

    txn_id: str
    room_id: str
    event_type: str
    content: dict[str, Any] | None
    pair_id: str | None
    kind: str
    status: OutboxStatus
    attempts: int
    next_attempt_at: int
    last_error: str | None
    created_at: int
    sent_at: int | None
    event_id: str | None
    #: The member this notice is meant for; sent once they joined and have a device.
    await_member: str | None = None
    #: When the post's cause was accepted; a room's posts leave in this order.
    accepted_at: int | None = None


_COLUMNS = (
    "txn_id, room_id, event_type, content, pair_id, kind, status, attempts, "
    "next_attempt_at, last_error, created_at, sent_at, event_id, await_member, accepted_at"
)

#: A pending row of the same room accepted before `o` (ties broken by txn id).
# `e.status || ''` and the unary plus below keep SQLite's planner off the status and
# attempt-time indexes here: the room's own index (outbox_room_order) finds a room's few
# rows, where the others would visit every pending or future row once per candidate.
_EARLIER_IN_ROOM = (
    "e.room_id = o.room_id AND e.status || '' = 'pending' AND e.await_member IS NULL AND "
    "(COALESCE(e.accepted_at, e.created_at) < COALESCE(o.accepted_at, o.created_at) OR "
    "(COALESCE(e.accepted_at, e.created_at) = COALESCE(o.accepted_at, o.created_at) "
    "AND e.txn_id < o.txn_id))"
)

#: Error recorded on a first-contact notice while its member has not joined yet.
AWAITING_MEMBER = "awaiting member"


def _aad(txn_id: str) -> bytes:
    # Binding the txn id stops a sealed body being moved to another row.
    return b"confidant/outbox/" + txn_id.encode("utf-8")


def _item(row: Row, sealer: ContentSealer | None) -> OutboxItem:
    txn_id = text(row, "txn_id")
    sealed = blob_or_none(row, "content")
    content: dict[str, Any] | None = None
    if sealer is not None and sealed is not None:
        content = json_object(sealer.open(sealed, _aad(txn_id)), "content")
    return OutboxItem(
        txn_id=txn_id,
        room_id=text(row, "room_id"),
        event_type=text(row, "event_type"),
        content=content,
        pair_id=text_or_none(row, "pair_id"),
        kind=text(row, "kind"),
        status=OutboxStatus(text(row, "status")),
        attempts=integer(row, "attempts"),
        next_attempt_at=integer(row, "next_attempt_at"),
        last_error=text_or_none(row, "last_error"),
        created_at=integer(row, "created_at"),
        sent_at=integer_or_none(row, "sent_at"),
        event_id=text_or_none(row, "event_id"),
        await_member=text_or_none(row, "await_member"),
        accepted_at=integer_or_none(row, "accepted_at"),
    )


async def enqueue(
    ex: Executor,
    *,
    txn_id: str,
    room_id: str,
    event_type: str,
    content: Mapping[str, Any],
    kind: str,
    now: int,
    sealer: ContentSealer,
    pair_id: str | None = None,
    await_member: str | None = None,
    accepted_at: int | None = None,
) -> bool:
    """Queue an event for sending now; False (and nothing changes) if the txn id is known.

    `await_member`: hold the event until that member has joined (see `release_awaiting`).
    `accepted_at`: when its cause was accepted (default `now`); orders the room's posts.
    """
    plaintext = json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    inserted = await ex.execute(
        f"INSERT INTO outbox ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, NULL, ?, "
        "NULL, NULL, ?, ?) ON CONFLICT (txn_id) DO NOTHING",
        txn_id,
        room_id,
        event_type,
        sealer.seal(plaintext, _aad(txn_id)),
        pair_id,
        kind,
        now,
        now,
        await_member,
        now if accepted_at is None else accepted_at,
    )
    return inserted == 1


#: The next due rows (parameters: now, now, limit), read in leaving order through
#: outbox_pending_order and stopping at the limit.
DUE_SQL = (
    "SELECT "
    + ", ".join(f"o.{c.strip()}" for c in _COLUMNS.split(","))
    + " FROM outbox o WHERE o.status = 'pending' AND +o.next_attempt_at <= ? "
    f"AND NOT EXISTS (SELECT 1 FROM outbox e WHERE {_EARLIER_IN_ROOM} "
    "AND +e.next_attempt_at > ?) "
    "ORDER BY COALESCE(o.accepted_at, o.created_at), o.txn_id LIMIT ?"
)


async def due(ex: Executor, now: int, limit: int, sealer: ContentSealer) -> list[OutboxItem]:
    """Pending events due at `now`, in the order their causes were accepted, content opened.

    A room's posts leave in order: an event is not due while an earlier pending one of
    the same room waits for its retry. Notices that wait for a member never hold others up.
    """
    rows = await ex.fetch(DUE_SQL, now, now, limit)
    return [_item(row, sealer) for row in rows]


async def defer_awaiting(ex: Executor, txn_id: str, next_at: int) -> bool:
    """Look again at `next_at` for a notice whose member is not there yet (not a failure).

    `attempts` counts the looks while it waits (the caller spaces them out by it); a join
    resets it, so a failed send afterwards starts its backoff afresh.
    """
    changed = await ex.execute(
        "UPDATE outbox SET next_attempt_at = ?, last_error = ?, attempts = attempts + 1 "
        "WHERE txn_id = ? AND status = 'pending'",
        next_at,
        AWAITING_MEMBER,
        txn_id,
    )
    return changed == 1


async def release_awaiting(ex: Executor, room_id: str, user_id: str, now: int) -> int:
    """A member joined `room_id`: the notices waiting for them are due at once."""
    return await ex.execute(
        "UPDATE outbox SET next_attempt_at = ?, attempts = 0 WHERE room_id = ? "
        "AND await_member = ? AND status = 'pending' AND next_attempt_at > ?",
        now,
        room_id,
        user_id,
        now,
    )


async def release_deferred(ex: Executor, now: int) -> int:
    """The homeserver answers again: every retry waiting out its backoff is due at once."""
    return await ex.execute(
        "UPDATE outbox SET next_attempt_at = ? WHERE status = 'pending' "
        "AND await_member IS NULL AND next_attempt_at > ?",
        now,
        now,
    )


async def get(ex: Executor, txn_id: str, sealer: ContentSealer | None = None) -> OutboxItem | None:
    """One outbox row; its content is opened only when a sealer is given."""
    row = await ex.fetchrow(f"SELECT {_COLUMNS} FROM outbox WHERE txn_id = ?", txn_id)
    return None if row is None else _item(row, sealer)


async def mark_sent(
    ex: Executor, txn_id: str, event_id: str, now: int, *, keep_content: bool = False
) -> bool:
    """Record the homeserver's event id and drop the content. False unless it was pending.

    `keep_content`: leave it sealed, for a self-check that may have to post it again
    (`bridge.store.witness` drops it once the post was read).
    """
    content = "content" if keep_content else "NULL"
    changed = await ex.execute(
        f"UPDATE outbox SET status = 'sent', event_id = ?, sent_at = ?, content = {content}, "
        "attempts = attempts + 1, last_error = NULL WHERE txn_id = ? AND status = 'pending'",
        event_id,
        now,
        txn_id,
    )
    return changed == 1


async def mark_retry(ex: Executor, txn_id: str, next_at: int, error: str) -> bool:
    """Count a failed attempt and try again at `next_at`. False unless it was pending."""
    changed = await ex.execute(
        "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? "
        "WHERE txn_id = ? AND status = 'pending'",
        next_at,
        error[:MAX_ERROR_LENGTH],
        txn_id,
    )
    return changed == 1


async def mark_failed(ex: Executor, txn_id: str, error: str) -> bool:
    """Give up on an event (it stays, sealed, for an operator to requeue or discard)."""
    changed = await ex.execute(
        "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ? "
        "WHERE txn_id = ? AND status = 'pending'",
        error[:MAX_ERROR_LENGTH],
        txn_id,
    )
    return changed == 1


async def requeue(ex: Executor, txn_id: str, now: int) -> bool:
    """Put a failed event back in the queue, due at `now`."""
    changed = await ex.execute(
        "UPDATE outbox SET status = 'pending', next_attempt_at = ? "
        "WHERE txn_id = ? AND status = 'failed'",
        now,
        txn_id,
    )
    return changed == 1


async def depth(ex: Executor, status: OutboxStatus = OutboxStatus.PENDING) -> int:
    """How many events are in `status` (pending by default)."""
    value = await ex.fetchval(
        "SELECT COUNT(*) FROM outbox WHERE status = ?", OutboxStatus(status).value
    )
    return to_int_or_none(value) or 0


async def status_counts(ex: Executor) -> dict[OutboxStatus, int]:
    """How many events are in each status (every status present, zero or more)."""
    rows = await ex.fetch("SELECT status, COUNT(*) AS n FROM outbox GROUP BY status")
    counts = dict.fromkeys(OutboxStatus, 0)
    for row in rows:
        counts[OutboxStatus(text(row, "status"))] = integer(row, "n")
    return counts
