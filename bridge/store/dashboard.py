"""What the dashboard reads and keeps: paged, filtered pairs and queue, sign-in links, sessions.

Every list is paged in SQL (LIMIT/OFFSET on an indexed order), so a page of a practice with
5,000 pairs reads one page of rows. A patient "joined" once any audit entry of the pair names
them as its actor (their join is audited as `room.membership`). Link tokens and session cookies
are kept as SHA-256 digests only (migration 012).
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.store.base import Executor, Row, SqlParam
from bridge.store.rows import integer, text, to_int, to_str

#: The states a pair list can be filtered by, besides the pair's own status.
PAIR_STATES = (
    "active",
    "provisioning",
    "removed",
    "waiting",
    "overdue",
    "never_joined",
    "consent_pending",
)

_JOINED = (
    "EXISTS (SELECT 1 FROM audit_entries a WHERE a.pair_id = p.pair_id AND a.actor = p.patient_id)"
)
_OPEN = "EXISTS (SELECT 1 FROM sla_clocks c WHERE c.pair_id = p.pair_id AND c.state = 'open')"


@dataclass(frozen=True, slots=True)
class PairFilter:
    """What a list is narrowed to; None or "" means any."""

    therapist: str | None = None
    policy: str | None = None
    state: str | None = None
    #: The start of a pair label, any case.
    label: str | None = None


@dataclass(frozen=True, slots=True)
class PairRow:
    """One pair as the dashboard lists it: ids, label and flags, no address or name."""

    pair_id: str
    label: str
    therapist_id: str
    policy: str
    status: str
    consent_state: str
    joined: bool
    waiting: bool
    created_at: int


@dataclass(frozen=True, slots=True)
class QueueRow:
    """An open clock as the queue lists it: its id and its pair's label and patient flags."""

    clock_id: str
    label: str
    joined: bool
    consent_state: str


def _where(f: PairFilter, now_ms: int) -> tuple[str, list[SqlParam]]:
    clauses: list[str] = []
    args: list[SqlParam] = []
    if f.therapist:
        clauses.append("p.therapist_id = ?")
        args.append(f.therapist)
    if f.policy:
        clauses.append("p.policy = ?")
        args.append(f.policy)
    if f.label:
        # A range on the unique label index; labels are upper-case hex.
        prefix = f.label.strip().upper()
        clauses.append("p.label >= ? AND p.label < ?")
        args += [prefix, prefix + "~"]
    state = f.state or ""
    if state in ("active", "provisioning", "removed"):
        clauses.append("p.status = ?")
        args.append(state)
    else:
        # Derived states are about live pairs.
        clauses.append("p.status <> 'removed'")
        if state == "waiting":
            clauses.append(_OPEN)
        elif state == "overdue":
            clauses.append(
                "EXISTS (SELECT 1 FROM sla_clocks c WHERE c.pair_id = p.pair_id "
                "AND c.state = 'open' AND c.due_at < ?)"
            )
            args.append(now_ms)
        elif state == "never_joined":
            clauses.append(f"NOT {_JOINED}")
        elif state == "consent_pending":
            clauses.append("p.consent_state = 'pending'")
    return " AND ".join(clauses), args


def _pair_row(row: Row) -> PairRow:
    return PairRow(
        pair_id=text(row, "pair_id"),
        label=text(row, "label"),
        therapist_id=text(row, "therapist_id"),
        policy=text(row, "policy"),
        status=text(row, "status"),
        consent_state=text(row, "consent_state"),
        joined=bool(integer(row, "joined")),
        waiting=bool(integer(row, "waiting")),
        created_at=integer(row, "created_at"),
    )


async def count_pairs(ex: Executor, f: PairFilter, now_ms: int) -> int:
    where, args = _where(f, now_ms)
    return to_int(await ex.fetchval(f"SELECT COUNT(*) FROM pairs p WHERE {where}", *args))


async def page_pairs(
    ex: Executor, f: PairFilter, now_ms: int, *, offset: int, limit: int
) -> list[PairRow]:
    """One page of pairs matching `f`, by label."""
    where, args = _where(f, now_ms)
    rows = await ex.fetch(
        "SELECT p.pair_id, p.label, p.therapist_id, p.policy, p.status, p.consent_state, "
        f"p.created_at, CASE WHEN {_JOINED} THEN 1 ELSE 0 END AS joined, "
        f"CASE WHEN {_OPEN} THEN 1 ELSE 0 END AS waiting "
        f"FROM pairs p WHERE {where} ORDER BY p.label LIMIT ? OFFSET ?",
        *args,
        limit,
        offset,
    )
    return [_pair_row(row) for row in rows]


async def pair_by_label(ex: Executor, label: str, therapist: str | None) -> PairRow | None:
    """The pair with this label in any status; only among `therapist`'s when given."""
    sql = (
        "SELECT p.pair_id, p.label, p.therapist_id, p.policy, p.status, p.consent_state, "
        f"p.created_at, CASE WHEN {_JOINED} THEN 1 ELSE 0 END AS joined, "
        f"CASE WHEN {_OPEN} THEN 1 ELSE 0 END AS waiting FROM pairs p WHERE p.label = ?"
    )
    args: list[SqlParam] = [label.strip().upper()]
    if therapist is not None:
        sql += " AND p.therapist_id = ?"
        args.append(therapist)
    row = await ex.fetchrow(sql, *args)
    return None if row is None else _pair_row(row)


def _queue_where(f: PairFilter) -> tuple[str, list[SqlParam]]:
    # The queue is open clocks: the state filter does not narrow it further.
    where, args = _where(PairFilter(f.therapist, f.policy, None, f.label), 0)
    return where.replace("p.therapist_id", "c.therapist_id"), args


async def count_queue(ex: Executor, f: PairFilter) -> int:
    where, args = _queue_where(f)
    return to_int(
        await ex.fetchval(
            "SELECT COUNT(*) FROM sla_clocks c JOIN pairs p ON p.pair_id = c.pair_id "
            f"WHERE c.state = 'open' AND {where}",
            *args,
        )
    )


async def page_queue(ex: Executor, f: PairFilter, *, offset: int, limit: int) -> list[QueueRow]:
    """One page of open clocks matching `f`, soonest due first (the clocks' due index)."""
    where, args = _queue_where(f)
    rows = await ex.fetch(
        "SELECT c.clock_id, p.label, p.consent_state, "
        f"CASE WHEN {_JOINED} THEN 1 ELSE 0 END AS joined "
        "FROM sla_clocks c JOIN pairs p ON p.pair_id = c.pair_id "
        f"WHERE c.state = 'open' AND {where} ORDER BY c.due_at, c.pair_id LIMIT ? OFFSET ?",
        *args,
        limit,
        offset,
    )
    return [
        QueueRow(
            clock_id=text(row, "clock_id"),
            label=text(row, "label"),
            joined=bool(integer(row, "joined")),
            consent_state=text(row, "consent_state"),
        )
        for row in rows
    ]


async def flag_counts(ex: Executor, therapist: str | None) -> tuple[int, int]:
    """(live pairs whose patient never joined, live pairs whose consent is pending)."""
    never = await count_pairs(ex, PairFilter(therapist, None, "never_joined"), 0)
    pending = await count_pairs(ex, PairFilter(therapist, None, "consent_pending"), 0)
    return never, pending


async def therapist_ids(ex: Executor) -> list[str]:
    """The practice's therapists: those registered (with a desk room or not) and those with a
    live pair, for the filters and for whom a pair or an absence may be handed to."""
    rows = await ex.fetch(
        "SELECT user_id AS therapist_id FROM therapists UNION "
        "SELECT therapist_id FROM pairs WHERE status <> 'removed' ORDER BY therapist_id"
    )
    return [text(row, "therapist_id") for row in rows]


# ------------------------------------------------------------ sign-in links and sessions


async def add_link(
    ex: Executor, digest: str, therapist_id: str, now_ms: int, expires_at: int
) -> None:
    await ex.execute(
        "INSERT INTO dashboard_links (digest, therapist_id, created_at, expires_at, used_at) "
        "VALUES (?, ?, ?, ?, NULL)",
        digest,
        therapist_id,
        now_ms,
        expires_at,
    )


async def use_link(ex: Executor, digest: str, now_ms: int) -> str | None:
    """Mark the link used and return its therapist; None if unknown, used or expired.

    The UPDATE's condition is the check, so two tabs opening one link get one session.
    """
    row = await ex.fetchrow(
        "SELECT therapist_id FROM dashboard_links "
        "WHERE digest = ? AND used_at IS NULL AND expires_at > ?",
        digest,
        now_ms,
    )
    if row is None:
        return None
    taken = await ex.execute(
        "UPDATE dashboard_links SET used_at = ? "
        "WHERE digest = ? AND used_at IS NULL AND expires_at > ?",
        now_ms,
        digest,
        now_ms,
    )
    return text(row, "therapist_id") if taken == 1 else None


async def add_session(ex: Executor, digest: str, viewer: str, now_ms: int, expires_at: int) -> None:
    # Expired links and sessions go whenever a new session is made: the tables stay small.
    await ex.execute("DELETE FROM dashboard_sessions WHERE expires_at <= ?", now_ms)
    await ex.execute("DELETE FROM dashboard_links WHERE expires_at <= ?", now_ms)
    await ex.execute(
        "INSERT INTO dashboard_sessions (digest, viewer, created_at, expires_at) "
        "VALUES (?, ?, ?, ?)",
        digest,
        viewer,
        now_ms,
        expires_at,
    )


async def session_viewer(ex: Executor, digest: str, now_ms: int) -> str | None:
    """Who the session is, while it has not expired."""
    value = await ex.fetchval(
        "SELECT viewer FROM dashboard_sessions WHERE digest = ? AND expires_at > ?",
        digest,
        now_ms,
    )
    return None if value is None else to_str(value)


async def end_session(ex: Executor, digest: str) -> None:
    await ex.execute("DELETE FROM dashboard_sessions WHERE digest = ?", digest)


async def end_sessions_of(ex: Executor, viewer: str) -> int:
    """End every session of `viewer` ("sign out everywhere"); how many there were."""
    return await ex.execute("DELETE FROM dashboard_sessions WHERE viewer = ?", viewer)


async def session_count(ex: Executor, viewer: str, now_ms: int) -> int:
    value = await ex.fetchval(
        "SELECT COUNT(*) FROM dashboard_sessions WHERE viewer = ? AND expires_at > ?",
        viewer,
        now_ms,
    )
    return to_int(value)
