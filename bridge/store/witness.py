"""The self-check's records: which posts the witness device must read, and what came of it.

A post's content stays sealed in its outbox row while its check waits (the outbox keeps it
at send, see `outbox.mark_sent(keep_content=True)`), and goes in the same statement that
ends the check: read, re-posted (the content moves, sealed afresh, into the repost's own
outbox row) or given up. Nothing here holds content or anything derived from it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bridge.store import outbox
from bridge.store.base import ContentSealer, Executor, Row
from bridge.store.rows import integer, integer_or_none, text, text_or_none, to_int_or_none

#: A repost's transaction id is its original's with this suffix (one repost per post).
REPOST_SUFFIX = ".repost"


class CheckState(enum.StrEnum):
    """Where a post's check is."""

    WAITING = "waiting"
    READABLE = "readable"
    #: Unreadable, and sent again (`repost_txn_id`).
    REPOSTED = "reposted"
    #: Unreadable and not repaired: it was a repost itself, or its content was gone.
    UNREADABLE = "unreadable"
    #: The witness could not be asked (not up yet, or the post's key was never meant for it).
    UNCHECKED = "unchecked"


DONE = (CheckState.READABLE, CheckState.UNREADABLE, CheckState.UNCHECKED)


@dataclass(frozen=True, slots=True)
class WitnessCheck:
    txn_id: str
    room_id: str
    event_id: str
    witness_device: str
    sent_at: int
    state: CheckState
    checked_at: int | None = None
    repost_txn_id: str | None = None

    @property
    def is_repost(self) -> bool:
        return self.txn_id.endswith(REPOST_SUFFIX)


@dataclass(frozen=True, slots=True)
class Repost:
    """What `repost` did: the new row, or None when the post could not be sent again."""

    txn_id: str | None
    pair_id: str | None


@dataclass(frozen=True, slots=True)
class Summary:
    """Counts for /health: checks ended since a moment, and what still waits."""

    readable: int = 0
    unreadable: int = 0
    reposted: int = 0
    unchecked: int = 0
    waiting: int = 0
    repairs_pending: int = 0

    @property
    def unreadable_posts(self) -> int:
        """Posts found unreadable (re-posted or not)."""
        return self.unreadable + self.reposted


_COLUMNS = "txn_id, room_id, event_id, witness_device, sent_at, state, checked_at, repost_txn_id"

#: A reposted check whose repost has not been read (or given up) yet.
_REPAIR_PENDING = (
    "c.state = 'reposted' AND NOT EXISTS (SELECT 1 FROM witness_checks r "
    "WHERE r.txn_id = c.repost_txn_id AND r.state IN ('readable', 'unreadable', 'unchecked'))"
)


def repost_txn_id(txn_id: str) -> str:
    return txn_id + REPOST_SUFFIX


def _check(row: Row) -> WitnessCheck:
    return WitnessCheck(
        txn_id=text(row, "txn_id"),
        room_id=text(row, "room_id"),
        event_id=text(row, "event_id"),
        witness_device=text(row, "witness_device"),
        sent_at=integer(row, "sent_at"),
        state=CheckState(text(row, "state")),
        checked_at=integer_or_none(row, "checked_at"),
        repost_txn_id=text_or_none(row, "repost_txn_id"),
    )


async def _drop_content(ex: Executor, txn_id: str) -> None:
    await ex.execute(
        "UPDATE outbox SET content = NULL WHERE txn_id = ? AND status = 'sent'", txn_id
    )


async def record(
    ex: Executor,
    *,
    txn_id: str,
    room_id: str,
    event_id: str,
    witness_device: str,
    sent_at: int,
    state: CheckState = CheckState.WAITING,
) -> bool:
    """Start a post's check by `witness_device` (or record at once that it cannot be
    checked). False if known."""
    inserted = await ex.execute(
        f"INSERT INTO witness_checks ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL) "
        "ON CONFLICT (txn_id) DO NOTHING",
        txn_id,
        room_id,
        event_id,
        witness_device,
        sent_at,
        state.value,
        None if state is CheckState.WAITING else sent_at,
    )
    if state is not CheckState.WAITING:
        await _drop_content(ex, txn_id)
    return inserted == 1


async def get(ex: Executor, txn_id: str) -> WitnessCheck | None:
    row = await ex.fetchrow(f"SELECT {_COLUMNS} FROM witness_checks WHERE txn_id = ?", txn_id)
    return None if row is None else _check(row)


async def original_of(ex: Executor, repost_txn: str) -> WitnessCheck | None:
    """The check of the post that `repost_txn` repaired."""
    row = await ex.fetchrow(
        f"SELECT {_COLUMNS} FROM witness_checks WHERE repost_txn_id = ?", repost_txn
    )
    return None if row is None else _check(row)


async def waiting(ex: Executor) -> list[WitnessCheck]:
    """Every check still waiting, oldest first."""
    rows = await ex.fetch(
        f"SELECT {_COLUMNS} FROM witness_checks WHERE state = 'waiting' ORDER BY sent_at, txn_id"
    )
    return [_check(row) for row in rows]


async def _finish(ex: Executor, txn_id: str, state: CheckState, now: int) -> bool:
    changed = await ex.execute(
        "UPDATE witness_checks SET state = ?, checked_at = ? "
        "WHERE txn_id = ? AND state = 'waiting'",
        state.value,
        now,
        txn_id,
    )
    if changed == 1:
        await _drop_content(ex, txn_id)
    return changed == 1


async def mark_readable(ex: Executor, txn_id: str, now: int) -> bool:
    """The witness read the post: its content goes. False unless the check was waiting."""
    return await _finish(ex, txn_id, CheckState.READABLE, now)


async def mark_unchecked(ex: Executor, txn_id: str, now: int) -> bool:
    """The witness could not be asked in time: the content goes, nothing is concluded."""
    return await _finish(ex, txn_id, CheckState.UNCHECKED, now)


async def repost(ex: Executor, txn_id: str, now: int, sealer: ContentSealer) -> Repost | None:
    """The post is unreadable: queue it again, once, as `{txn_id}.repost`, in the caller's tx.

    The repost gets the original's room, type, kind and pair, and its content sealed for
    its own row; the original's content goes. A repost is not re-posted again, and a post
    whose content is gone cannot be: both end as `unreadable` (`Repost.txn_id` None).
    None when the check was not waiting (another instance concluded it first).
    """
    check = await get(ex, txn_id)
    if check is None or check.state is not CheckState.WAITING:
        return None
    item = await outbox.get(ex, txn_id, sealer)
    pair_id = item.pair_id if item is not None else None
    if check.is_repost or item is None or item.content is None:
        await _finish(ex, txn_id, CheckState.UNREADABLE, now)
        return Repost(None, pair_id)
    new_txn = repost_txn_id(txn_id)
    await outbox.enqueue(
        ex,
        txn_id=new_txn,
        room_id=item.room_id,
        event_type=item.event_type,
        content=item.content,
        kind=item.kind,
        now=now,
        sealer=sealer,
        pair_id=item.pair_id,
    )
    await ex.execute(
        "UPDATE witness_checks SET state = 'reposted', checked_at = ?, repost_txn_id = ? "
        "WHERE txn_id = ?",
        now,
        new_txn,
        txn_id,
    )
    await _drop_content(ex, txn_id)
    return Repost(new_txn, item.pair_id)


async def forget_unrecorded(ex: Executor) -> int:
    """Drop the content of sent rows that have no waiting check (nobody will check them).

    Rows sent while a crash came before their check was recorded, or while the self-check
    was on in an earlier run and is off now.
    """
    return await ex.execute(
        "UPDATE outbox SET content = NULL WHERE status = 'sent' AND content IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM witness_checks c "
        "WHERE c.txn_id = outbox.txn_id AND c.state = 'waiting')"
    )


async def give_up_waiting(ex: Executor, now: int) -> int:
    """The self-check is off: every waiting check ends unchecked, and its content goes."""
    changed = await ex.execute(
        "UPDATE witness_checks SET state = 'unchecked', checked_at = ? WHERE state = 'waiting'",
        now,
    )
    await forget_unrecorded(ex)
    return changed


async def summary(ex: Executor, since: int) -> Summary:
    """Checks ended since `since` (ms) by outcome; checks and repairs still open."""
    rows = await ex.fetch(
        "SELECT state, COUNT(*) AS n FROM witness_checks "
        "WHERE state <> 'waiting' AND checked_at >= ? GROUP BY state",
        since,
    )
    ended = {text(row, "state"): integer(row, "n") for row in rows}
    open_checks = (
        to_int_or_none(
            await ex.fetchval("SELECT COUNT(*) FROM witness_checks WHERE state = 'waiting'")
        )
        or 0
    )
    return Summary(
        readable=ended.get("readable", 0),
        unreadable=ended.get("unreadable", 0),
        reposted=ended.get("reposted", 0),
        unchecked=ended.get("unchecked", 0),
        waiting=open_checks,
        repairs_pending=await repairs_pending(ex),
    )


async def repairs_pending(ex: Executor) -> int:
    """Reposts not yet read by the witness (queued, or their check still waits)."""
    value = await ex.fetchval(f"SELECT COUNT(*) FROM witness_checks c WHERE {_REPAIR_PENDING}")
    return to_int_or_none(value) or 0


async def totals(ex: Executor) -> dict[str, int]:
    """Every check ever made, by state (the counters of /metrics)."""
    rows = await ex.fetch("SELECT state, COUNT(*) AS n FROM witness_checks GROUP BY state")
    return {text(row, "state"): integer(row, "n") for row in rows}
