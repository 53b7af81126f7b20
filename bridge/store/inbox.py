"""The durable inbox: inbound e-mail, sealed, committed before SMTP says 250.

`store_inbound` commits a received message (sealed, bound to its row id); the relay
reads `pending`, posts through the outbox and calls `mark_relayed` in the same
transaction, so a crash anywhere posts the e-mail exactly once. Routing, acceptance and
txn ids are the e-mail channel's (`bridge.email.inbox`).
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from bridge.store.base import ContentSealer, Executor, Row
from bridge.store.rows import (
    blob,
    integer,
    integer_or_none,
    text,
    text_or_none,
    to_int_or_none,
    to_str,
)

#: Longest last_error kept; enough for an error class or a reason code.
MAX_ERROR_LENGTH = 200
#: Message-IDs looked at when finding the post an e-mail replies to.
_MAX_REPLY_IDS = 20


class InboxStatus(enum.StrEnum):
    """Where an inbound e-mail is in its life."""

    ACCEPTED = "accepted"
    RELAYED = "relayed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class InboundEmail:
    """One inbox row; `raw_sealed` is opened with `open_raw`."""

    id: str
    pair_id: str
    message_id: str
    sender: str
    received_at: int
    raw_sealed: bytes
    raw_size: int
    auth_method: str
    status: InboxStatus
    relay_txn_id: str | None
    relayed_at: int | None
    last_error: str | None


_COLUMNS = (
    "id, pair_id, message_id, sender, received_at, raw, raw_size, auth_method, status, "
    "relay_txn_id, relayed_at, last_error"
)


def _aad(email_id: str) -> bytes:
    # Binding the row id stops a sealed message being moved to another row (or pair).
    return b"confidant/inbound_email/" + email_id.encode("utf-8")


def _item(row: Row) -> InboundEmail:
    return InboundEmail(
        id=text(row, "id"),
        pair_id=text(row, "pair_id"),
        message_id=text(row, "message_id"),
        sender=text(row, "sender"),
        received_at=integer(row, "received_at"),
        raw_sealed=blob(row, "raw"),
        raw_size=integer(row, "raw_size"),
        auth_method=text(row, "auth_method"),
        status=InboxStatus(text(row, "status")),
        relay_txn_id=text_or_none(row, "relay_txn_id"),
        relayed_at=integer_or_none(row, "relayed_at"),
        last_error=text_or_none(row, "last_error"),
    )


async def store_inbound(
    ex: Executor,
    sealer: ContentSealer,
    pair_id: str,
    sender: str,
    message_id: str,
    raw: bytes,
    now: int,
    *,
    auth_method: str = "",
) -> tuple[str, bool]:
    """Commit a received message; return (email id, True when it was already stored).

    Works on a database (the insert autocommits) or inside a caller's transaction.
    A redelivery of the same message (pair, sender, Message-ID) returns the first id.
    """
    email_id = secrets.token_hex(16)
    inserted = await ex.execute(
        f"INSERT INTO inbound_emails ({_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'accepted', NULL, NULL, NULL) "
        "ON CONFLICT (pair_id, sender, message_id) DO NOTHING",
        email_id,
        pair_id,
        message_id,
        sender,
        now,
        sealer.seal(raw, _aad(email_id)),
        len(raw),
        auth_method,
    )
    if inserted:
        return email_id, False
    existing = await ex.fetchval(
        "SELECT id FROM inbound_emails WHERE pair_id = ? AND sender = ? AND message_id = ?",
        pair_id,
        sender,
        message_id,
    )
    if existing is None:  # the insert neither happened nor conflicted: the store lied
        raise RuntimeError("inbound e-mail was neither stored nor found")
    return to_str(existing, "id"), True


async def get(ex: Executor, email_id: str) -> InboundEmail | None:
    """One inbox row, whatever its status."""
    row = await ex.fetchrow(f"SELECT {_COLUMNS} FROM inbound_emails WHERE id = ?", email_id)
    return None if row is None else _item(row)


async def pending(ex: Executor, limit: int = 100) -> list[InboundEmail]:
    """Accepted e-mails not yet relayed, oldest first."""
    rows = await ex.fetch(
        f"SELECT {_COLUMNS} FROM inbound_emails WHERE status = 'accepted' "
        "ORDER BY received_at, id LIMIT ?",
        limit,
    )
    return [_item(row) for row in rows]


def open_raw(sealer: ContentSealer, item: InboundEmail) -> bytes:
    """The message bytes exactly as received."""
    return sealer.open(item.raw_sealed, _aad(item.id))


async def mark_relayed(ex: Executor, email_id: str, txn_id: str, now: int) -> bool:
    """Record that the post is in the outbox under `txn_id`. False unless it was accepted."""
    changed = await ex.execute(
        "UPDATE inbound_emails SET status = 'relayed', relay_txn_id = ?, relayed_at = ?, "
        "last_error = NULL WHERE id = ? AND status = 'accepted'",
        txn_id,
        now,
        email_id,
    )
    return changed > 0


async def reply_target(
    ex: Executor, pair_id: str, in_reply_to: str | None, references: Sequence[str]
) -> str | None:
    """The Matrix event id of the relayed e-mail this one answers, if it was posted.

    In-Reply-To wins; otherwise the newest of References that was posted. Only e-mails
    of the same pair count, so a forged Message-ID cannot reach into another room.
    """
    wanted = [m for m in (in_reply_to, *reversed(references)) if m][:_MAX_REPLY_IDS]
    if not wanted:
        return None
    marks = ", ".join("?" for _ in wanted)
    rows = await ex.fetch(
        "SELECT i.message_id, o.event_id FROM inbound_emails i "
        "JOIN outbox o ON o.txn_id = i.relay_txn_id "
        f"WHERE i.pair_id = ? AND i.message_id IN ({marks}) AND o.event_id IS NOT NULL",
        pair_id,
        *wanted,
    )
    posted = {text(row, "message_id"): text(row, "event_id") for row in rows}
    return next((posted[m] for m in wanted if m in posted), None)


async def mark_failed(ex: Executor, email_id: str, error: str) -> bool:
    """Give up relaying (e.g. it cannot be converted); the sealed original stays."""
    changed = await ex.execute(
        "UPDATE inbound_emails SET status = 'failed', last_error = ? "
        "WHERE id = ? AND status = 'accepted'",
        error[:MAX_ERROR_LENGTH],
        email_id,
    )
    return changed > 0


async def requeue_failed(ex: Executor, email_id: str) -> bool:
    """Put a failed e-mail back in the queue (e.g. once its pair is active again)."""
    changed = await ex.execute(
        "UPDATE inbound_emails SET status = 'accepted', last_error = NULL "
        "WHERE id = ? AND status = 'failed'",
        email_id,
    )
    return changed > 0


async def status_counts(ex: Executor) -> dict[InboxStatus, int]:
    """How many e-mails are in each status (every status present, zero or more)."""
    rows = await ex.fetch("SELECT status, COUNT(*) AS n FROM inbound_emails GROUP BY status")
    counts = dict.fromkeys(InboxStatus, 0)
    for row in rows:
        counts[InboxStatus(text(row, "status"))] = integer(row, "n")
    return counts


async def relayed_posts_waiting(ex: Executor) -> int:
    """Relayed e-mails whose post still waits in the outbox (not yet on the homeserver)."""
    value = await ex.fetchval(
        "SELECT COUNT(*) FROM inbound_emails i JOIN outbox o ON o.txn_id = i.relay_txn_id "
        "WHERE i.status = 'relayed' AND o.status = 'pending'"
    )
    return to_int_or_none(value) or 0


async def failed(ex: Executor, limit: int = 100) -> list[InboundEmail]:
    """E-mails that could not be relayed, newest first."""
    rows = await ex.fetch(
        f"SELECT {_COLUMNS} FROM inbound_emails WHERE status = 'failed' "
        "ORDER BY received_at DESC, id LIMIT ?",
        limit,
    )
    return [_item(row) for row in rows]
