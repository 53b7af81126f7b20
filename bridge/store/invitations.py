"""Invitations: a patient invited by e-mail with a single-use registration token.

The patient's address and name and the registration code are sealed at rest (migration 013)
with the caller's sealer, each bound to its invitation and field. The code is found by its
SHA-256 (`token_digest`); its sealed copy is cleared when the invitation closes. Read without
a sealer, a record carries `SEALED` for the address and None for the name and the code.
"""

from __future__ import annotations

import enum
import hashlib
import json
import secrets
from dataclasses import dataclass

from bridge.store.base import ContentSealer, Executor, Row, SqlParam
from bridge.store.migrate import has_table
from bridge.store.rows import (
    blob,
    blob_or_none,
    integer,
    integer_or_none,
    json_list,
    text,
    text_or_none,
    to_int,
    to_str,
)

#: The address of a record read without the sealer.
SEALED = "(sealed)"


class InvitationStatus(enum.StrEnum):
    """Life of an invitation (see migration 006)."""

    PENDING = "pending"
    USED = "used"
    UNMATCHED = "unmatched"
    REVOKED = "revoked"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class InvitationRecord:
    """A stored invitation, its sealed fields opened when it was read with the sealer."""

    invitation_id: str
    email: str
    name: str | None
    therapist_id: str
    policy: str
    #: The registration code while the invitation is pending (and read with the sealer).
    token: str | None
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
    token_sha256: str = ""
    #: When the e-mails of about the last day went out (ms), oldest first.
    recent_sends: tuple[int, ...] = ()


_COLUMNS = (
    "invitation_id, email_sealed, name_sealed, therapist_id, policy, token_sha256, "
    "token_sealed, status, created_at, expires_at, unused_seen_at, prior_accounts, sent_count, "
    "last_sent_at, recent_sends, patient_id, pair_id, closed_at"
)


def token_digest(token: str) -> str:
    """The hex SHA-256 a registration code is looked up by."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _aad(invitation_id: str, field: str) -> bytes:
    return f"invitation:{invitation_id}:{field}".encode("ascii")


def _seal(sealer: ContentSealer, invitation_id: str, field: str, value: str) -> bytes:
    return sealer.seal(value.encode("utf-8"), _aad(invitation_id, field))


def _open(
    sealer: ContentSealer | None, invitation_id: str, field: str, sealed: bytes | None
) -> str | None:
    if sealer is None or sealed is None:
        return None
    return sealer.open(sealed, _aad(invitation_id, field)).decode("utf-8")


def _record(row: Row, sealer: ContentSealer | None) -> InvitationRecord:
    invitation_id = text(row, "invitation_id")
    prior = json_list(text(row, "prior_accounts"), "prior_accounts")
    sends = json_list(text(row, "recent_sends"), "recent_sends")
    email = _open(sealer, invitation_id, "email", blob(row, "email_sealed"))
    return InvitationRecord(
        invitation_id=invitation_id,
        email=SEALED if email is None else email,
        name=_open(sealer, invitation_id, "name", blob_or_none(row, "name_sealed")),
        therapist_id=text(row, "therapist_id"),
        policy=text(row, "policy"),
        token=_open(sealer, invitation_id, "token", blob_or_none(row, "token_sealed")),
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
        token_sha256=text(row, "token_sha256"),
        recent_sends=tuple(to_int(ms, "recent_sends") for ms in sends),
    )


def new_invitation_id() -> str:
    """A short random id the operator can type (8 hex digits)."""
    return secrets.token_hex(4)


async def _insert(
    ex: Executor,
    sealer: ContentSealer,
    *,
    invitation_id: str,
    email: str,
    name: str | None,
    token: str | None,
    token_sha256: str,
    values: tuple[SqlParam, ...],
) -> None:
    # `values` are the clear columns in _COLUMNS order, the sealed and digest ones left out.
    await ex.execute(
        f"INSERT INTO invitations ({_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        invitation_id,
        _seal(sealer, invitation_id, "email", email),
        None if name is None else _seal(sealer, invitation_id, "name", name),
        values[0],  # therapist_id
        values[1],  # policy
        token_sha256,
        None if token is None else _seal(sealer, invitation_id, "token", token),
        *values[2:],
    )


async def create(
    ex: Executor,
    *,
    sealer: ContentSealer,
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
    await _insert(
        ex,
        sealer,
        invitation_id=invitation_id,
        email=email,
        name=name,
        token=token,
        token_sha256=token_digest(token),
        values=(
            therapist_id,
            policy,
            InvitationStatus.PENDING.value,
            now,
            expires_at,
            now,
            json.dumps(sorted(prior_accounts)),
            0,
            None,
            "[]",
            None,
            None,
            None,
        ),
    )
    record = await get(ex, invitation_id, sealer)
    assert record is not None
    return record


async def get(
    ex: Executor, invitation_id: str, sealer: ContentSealer | None = None
) -> InvitationRecord | None:
    """The invitation with this id, whatever its status."""
    row = await ex.fetchrow(
        f"SELECT {_COLUMNS} FROM invitations WHERE invitation_id = ?", invitation_id.lower()
    )
    return None if row is None else _record(row, sealer)


async def get_by_token(
    ex: Executor, token: str, sealer: ContentSealer | None = None
) -> InvitationRecord | None:
    """The invitation whose registration token this is."""
    row = await ex.fetchrow(
        f"SELECT {_COLUMNS} FROM invitations WHERE token_sha256 = ?", token_digest(token)
    )
    return None if row is None else _record(row, sealer)


async def list_invitations(
    ex: Executor,
    *,
    status: InvitationStatus | None = None,
    sealer: ContentSealer | None = None,
) -> list[InvitationRecord]:
    """Invitations, oldest first, optionally of one status."""
    if status is None:
        rows = await ex.fetch(f"SELECT {_COLUMNS} FROM invitations ORDER BY created_at")
    else:
        rows = await ex.fetch(
            f"SELECT {_COLUMNS} FROM invitations WHERE status = ? ORDER BY created_at",
            InvitationStatus(status).value,
        )
    return [_record(row, sealer) for row in rows]


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


async def claim_send(
    ex: Executor, invitation_id: str, seen: tuple[int, ...], sends: tuple[int, ...]
) -> bool:
    """Record the e-mail about to go out (`sends`, this one last) if the recent sends are
    still `seen`; False when another request sent one in between (compare and set)."""
    changed = await ex.execute(
        "UPDATE invitations SET recent_sends = ? WHERE invitation_id = ? AND recent_sends = ?",
        json.dumps(list(sends)),
        invitation_id,
        json.dumps(list(seen)),
    )
    return changed == 1


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
    """Move an invitation out of `from_status` into `status` (its code is forgotten);
    False if it was not there."""
    placeholders = ", ".join("?" for _ in from_status)
    changed = await ex.execute(
        f"UPDATE invitations SET status = ?, closed_at = ?, token_sealed = NULL "
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
        "UPDATE invitations SET status = 'used', patient_id = ?, pair_id = ?, closed_at = ?, "
        "token_sealed = NULL WHERE invitation_id = ? AND status IN ('pending', 'unmatched')",
        patient_id,
        pair_id,
        now,
        invitation_id,
    )
    return changed == 1


async def seal_clear_rows(ex: Executor, sealer: ContentSealer) -> int:
    """Seal the invitations migration 013 set aside in clear, then drop their table.

    Run at every start before invitations are read (a no-op once done); returns how many
    rows were sealed. The caller gives a transaction, so a crash leaves the rows set aside
    for the next start.
    """
    if not await has_table(ex, "invitations_clear"):
        return 0
    rows = await ex.fetch(
        "SELECT invitation_id, email, name, therapist_id, policy, token, status, created_at, "
        "expires_at, unused_seen_at, prior_accounts, sent_count, last_sent_at, patient_id, "
        "pair_id, closed_at FROM invitations_clear"
    )
    for row in rows:
        invitation_id = text(row, "invitation_id")
        token = text(row, "token")
        status = InvitationStatus(text(row, "status"))
        last_sent_at = integer_or_none(row, "last_sent_at")
        await _insert(
            ex,
            sealer,
            invitation_id=invitation_id,
            email=text(row, "email"),
            name=text_or_none(row, "name"),
            token=token if status is InvitationStatus.PENDING else None,
            token_sha256=token_digest(token),
            values=(
                text(row, "therapist_id"),
                text(row, "policy"),
                status.value,
                integer(row, "created_at"),
                integer(row, "expires_at"),
                integer(row, "unused_seen_at"),
                text(row, "prior_accounts"),
                integer(row, "sent_count"),
                last_sent_at,
                json.dumps([] if last_sent_at is None else [last_sent_at]),
                text_or_none(row, "patient_id"),
                text_or_none(row, "pair_id"),
                integer_or_none(row, "closed_at"),
            ),
        )
    await ex.execute("DELETE FROM invitations_clear")
    await ex.execute("DROP TABLE invitations_clear")
    return len(rows)
