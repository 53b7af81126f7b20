"""Invitations: a patient invited by e-mail with a single-use registration token."""

from __future__ import annotations

import enum
import json
import secrets
from dataclasses import dataclass

from bridge.store.base import Executor, Row
from bridge.store.rows import integer, integer_or_none, json_list, text, text_or_none, to_str


class InvitationStatus(enum.StrEnum):
    """Life of an invitation (see migration 006)."""

    PENDING = "pending"
    USED = "used"
    UNMATCHED = "unmatched"
    REVOKED = "revoked"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class InvitationRecord:
    """A stored invitation."""

    invitation_id: str
    email: str
    name: str | None
    therapist_id: str
    policy: str
    token: str
    status: InvitationStatus
    created_at: int
    expires_at: int
    unused_seen_at: int
    prior_accounts: frozenset[str]
    sent_count: int
    last_sent_at: int | None
    patient_id: str | None
    pair_id: str | None
    closed_at: int | None


_COLUMNS = (
    "invitation_id, email, name, therapist_id, policy, token, status, created_at, expires_at, "
    "unused_seen_at, prior_accounts, sent_count, last_sent_at, patient_id, pair_id, closed_at"
)


def _record(row: Row) -> InvitationRecord:
    prior = json_list(text(row, "prior_accounts"), "prior_accounts")
    return InvitationRecord(
        invitation_id=text(row, "invitation_id"),
        email=text(row, "email"),
        name=text_or_none(row, "name"),
        therapist_id=text(row, "therapist_id"),
        policy=text(row, "policy"),
        token=text(row, "token"),
        status=InvitationStatus(text(row, "status")),
        created_at=integer(row, "created_at"),
        expires_at=integer(row, "expires_at"),
        unused_seen_at=integer(row, "unused_seen_at"),
        prior_accounts=frozenset(to_str(account, "prior_accounts") for account in prior),
        sent_count=integer(row, "sent_count"),
        last_sent_at=integer_or_none(row, "last_sent_at"),
        patient_id=text_or_none(row, "patient_id"),
        pair_id=text_or_none(row, "pair_id"),
        closed_at=integer_or_none(row, "closed_at"),
    )


def new_invitation_id() -> str:
    """A short random id the operator can type (8 hex digits)."""
    return secrets.token_hex(4)


async def create(
    ex: Executor,
    *,
    email: str,
    therapist_id: str,
    token: str,
    now: int,
    expires_at: int,
    name: str | None = None,
    policy: str = "default",
    prior_accounts: frozenset[str] = frozenset(),
) -> InvitationRecord:
    """Store a pending invitation for a token just made on the homeserver."""
    invitation_id = new_invitation_id()
    await ex.execute(
        f"INSERT INTO invitations ({_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, 0, NULL, NULL, NULL, NULL)",
        invitation_id,
        email,
        name,
        therapist_id,
        policy,
        token,
        now,
        expires_at,
        now,
        json.dumps(sorted(prior_accounts)),
    )
    record = await get(ex, invitation_id)
    assert record is not None
    return record


async def get(ex: Executor, invitation_id: str) -> InvitationRecord | None:
    """The invitation with this id, whatever its status."""
    row = await ex.fetchrow(
        f"SELECT {_COLUMNS} FROM invitations WHERE invitation_id = ?", invitation_id.lower()
    )
    return None if row is None else _record(row)


async def get_by_token(ex: Executor, token: str) -> InvitationRecord | None:
    """The invitation whose registration token this is."""
    row = await ex.fetchrow(f"SELECT {_COLUMNS} FROM invitations WHERE token = ?", token)
    return None if row is None else _record(row)


async def list_invitations(
    ex: Executor, *, status: InvitationStatus | None = None
) -> list[InvitationRecord]:
    """Invitations, oldest first, optionally of one status."""
    if status is None:
        rows = await ex.fetch(f"SELECT {_COLUMNS} FROM invitations ORDER BY created_at")
    else:
        rows = await ex.fetch(
            f"SELECT {_COLUMNS} FROM invitations WHERE status = ? ORDER BY created_at",
            InvitationStatus(status).value,
        )
    return [_record(row) for row in rows]


async def claimed_patients(ex: Executor) -> set[str]:
    """Every account already matched to an invitation."""
    rows = await ex.fetch("SELECT patient_id FROM invitations WHERE patient_id IS NOT NULL")
    return {text(row, "patient_id") for row in rows}


async def mark_sent(ex: Executor, invitation_id: str, now: int) -> None:
    """Count one more e-mail sent for the invitation."""
    await ex.execute(
        "UPDATE invitations SET sent_count = sent_count + 1, last_sent_at = ? "
        "WHERE invitation_id = ?",
        now,
        invitation_id,
    )


async def mark_unused_seen(ex: Executor, invitation_id: str, now: int) -> None:
    """The token was seen unused at `now`: its account, when it comes, is newer."""
    await ex.execute(
        "UPDATE invitations SET unused_seen_at = ? WHERE invitation_id = ? AND status = 'pending'",
        now,
        invitation_id,
    )


async def close(
    ex: Executor,
    invitation_id: str,
    status: InvitationStatus,
    now: int,
    *,
    from_status: tuple[InvitationStatus, ...] = (InvitationStatus.PENDING,),
) -> bool:
    """Move an invitation out of `from_status` into `status`; False if it was not there."""
    placeholders = ", ".join("?" for _ in from_status)
    changed = await ex.execute(
        f"UPDATE invitations SET status = ?, closed_at = ? "
        f"WHERE invitation_id = ? AND status IN ({placeholders})",
        InvitationStatus(status).value,
        now,
        invitation_id,
        *(s.value for s in from_status),
    )
    return changed == 1


async def set_patient(ex: Executor, invitation_id: str, patient_id: str) -> None:
    """Remember which account used the invitation, before its pair is created."""
    await ex.execute(
        "UPDATE invitations SET patient_id = ? WHERE invitation_id = ?", patient_id, invitation_id
    )


async def mark_used(
    ex: Executor, invitation_id: str, patient_id: str, pair_id: str, now: int
) -> bool:
    """The account registered with the token is `patient_id` and its pair exists."""
    changed = await ex.execute(
        "UPDATE invitations SET status = 'used', patient_id = ?, pair_id = ?, closed_at = ? "
        "WHERE invitation_id = ? AND status IN ('pending', 'unmatched')",
        patient_id,
        pair_id,
        now,
        invitation_id,
    )
    return changed == 1
