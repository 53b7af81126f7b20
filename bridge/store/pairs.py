"""Pairs: one patient with one therapist, their room, e-mail address and policy.

The patient's address is sealed at rest (migration 014) with the caller's sealer, bound to
its pair and field: a record carries it sealed, `open_patient_email` opens it. It is found
by the SHA-256 of its lower-cased form (`email_digest`, see 014 for why it is unkeyed).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import secrets
from dataclasses import dataclass

from bridge.store.base import ContentSealer, Executor, Row, SqlParam, StoreError
from bridge.store.migrate import has_table
from bridge.store.rows import blob_or_none, integer, integer_or_none, text, text_or_none


class PairStatus(enum.StrEnum):
    """Life of a pair row: written before createRoom, active once the room exists."""

    PROVISIONING = "provisioning"
    ACTIVE = "active"
    REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class PairRecord:
    """A stored pair."""

    pair_id: str
    label: str
    patient_id: str
    therapist_id: str
    room_id: str | None
    status: PairStatus
    policy: str
    #: The patient's address sealed (opened with `open_patient_email`), None without one.
    patient_email_sealed: bytes | None
    email_token: str
    consent_state: str
    created_at: int
    removed_at: int | None

    @property
    def has_patient_email(self) -> bool:
        """Whether an address is on file (known without opening it)."""
        return self.patient_email_sealed is not None


_COLUMNS = (
    "pair_id, label, patient_id, therapist_id, room_id, status, policy, patient_email_sealed, "
    "patient_email_sha256, email_token, consent_state, created_at, removed_at"
)

#: Label lengths tried in turn; a practice rarely needs more than 4 hex digits.
_LABEL_LENGTHS = (4, 4, 4, 4, 6, 6, 6, 6, 8, 8)


def _record(row: Row) -> PairRecord:
    return PairRecord(
        pair_id=text(row, "pair_id"),
        label=text(row, "label"),
        patient_id=text(row, "patient_id"),
        therapist_id=text(row, "therapist_id"),
        room_id=text_or_none(row, "room_id"),
        status=PairStatus(text(row, "status")),
        policy=text(row, "policy"),
        patient_email_sealed=blob_or_none(row, "patient_email_sealed"),
        email_token=text(row, "email_token"),
        consent_state=text(row, "consent_state"),
        created_at=integer(row, "created_at"),
        removed_at=integer_or_none(row, "removed_at"),
    )


def email_digest(address: str) -> str:
    """The hex SHA-256 of the lower-cased address, which a pair's address is found by."""
    return hashlib.sha256(address.lower().encode("utf-8")).hexdigest()


def _aad(pair_id: str) -> bytes:
    return f"pair:{pair_id}:patient_email".encode("ascii")


def _sealed_email(
    sealer: ContentSealer | None, pair_id: str, address: str | None
) -> tuple[bytes | None, str | None]:
    """The address's sealed and digest columns (both None without an address)."""
    if address is None:
        return None, None
    if sealer is None:
        raise StoreError("a patient e-mail address is stored sealed: give the sealer")
    return sealer.seal(address.encode("utf-8"), _aad(pair_id)), email_digest(address)


def open_patient_email(sealer: ContentSealer, record: PairRecord) -> str | None:
    """The patient's e-mail address, None when the pair has none."""
    if record.patient_email_sealed is None:
        return None
    return sealer.open(record.patient_email_sealed, _aad(record.pair_id)).decode("utf-8")


def new_pair_id() -> str:
    """A random 128-bit pair id."""
    return secrets.token_hex(16)


def new_email_token() -> str:
    """A random 120-bit token for pair-TOKEN@domain: lower case, since mail systems fold case."""
    return base64.b32encode(secrets.token_bytes(15)).decode("ascii").lower()


def _new_label(length: int) -> str:
    return secrets.token_hex(length // 2).upper()


async def create(
    ex: Executor,
    *,
    patient_id: str,
    therapist_id: str,
    now: int,
    policy: str = "default",
    patient_email: str | None = None,
    sealer: ContentSealer | None = None,
    consent_state: str = "pending",
    room_id: str | None = None,
) -> PairRecord:
    """Insert a new pair with a random id, e-mail token and a unique short label.

    The pair is `provisioning` until `set_room` (or `active` at once when `room_id`
    is given). Raises IntegrityError when a live pair of the same two users exists.
    A `patient_email` is sealed with `sealer`, which it needs.
    """
    pair_id = new_pair_id()
    email_sealed, email_sha256 = _sealed_email(sealer, pair_id, patient_email)
    email_token = new_email_token()
    status = PairStatus.PROVISIONING if room_id is None else PairStatus.ACTIVE
    for length in _LABEL_LENGTHS:
        label = _new_label(length)
        # A clash on the label alone is retried; any other clash raises.
        inserted = await ex.execute(
            f"INSERT INTO pairs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL) "
            "ON CONFLICT (label) DO NOTHING",
            pair_id,
            label,
            patient_id,
            therapist_id,
            room_id,
            status.value,
            policy,
            email_sealed,
            email_sha256,
            email_token,
            consent_state,
            now,
        )
        if inserted:
            return PairRecord(
                pair_id=pair_id,
                label=label,
                patient_id=patient_id,
                therapist_id=therapist_id,
                room_id=room_id,
                status=status,
                policy=policy,
                patient_email_sealed=email_sealed,
                email_token=email_token,
                consent_state=consent_state,
                created_at=now,
                removed_at=None,
            )
    raise StoreError("could not find a free pair label")


async def _one(ex: Executor, where: str, *args: SqlParam) -> PairRecord | None:
    row = await ex.fetchrow(f"SELECT {_COLUMNS} FROM pairs WHERE {where}", *args)
    return None if row is None else _record(row)


async def get(ex: Executor, pair_id: str) -> PairRecord | None:
    """The pair with this id, whatever its status."""
    return await _one(ex, "pair_id = ?", pair_id)


async def get_by_room(ex: Executor, room_id: str) -> PairRecord | None:
    """The pair that owns this Matrix room, whatever its status."""
    return await _one(ex, "room_id = ?", room_id)


async def get_by_label(ex: Executor, label: str) -> PairRecord | None:
    """The pair with this display label (case-insensitive)."""
    return await _one(ex, "label = ?", label.upper())


async def get_by_users(ex: Executor, patient_id: str, therapist_id: str) -> PairRecord | None:
    """The live (provisioning or active) pair of this patient and therapist; at most one exists."""
    return await _one(
        ex, "patient_id = ? AND therapist_id = ? AND status <> 'removed'", patient_id, therapist_id
    )


async def get_by_email_token(ex: Executor, token: str) -> PairRecord | None:
    """The pair whose inbound address carries this token (case-insensitive), whatever its status."""
    return await _one(ex, "email_token = ?", token.lower())


async def list_pairs(
    ex: Executor,
    *,
    status: PairStatus | None = None,
    therapist_id: str | None = None,
    patient_id: str | None = None,
) -> list[PairRecord]:
    """Pairs matching every filter given, oldest first."""
    conditions: list[str] = []
    args: list[SqlParam] = []
    for column, value in (
        ("status", None if status is None else PairStatus(status).value),
        ("therapist_id", therapist_id),
        ("patient_id", patient_id),
    ):
        if value is not None:
            conditions.append(f"{column} = ?")
            args.append(value)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    rows = await ex.fetch(
        f"SELECT {_COLUMNS} FROM pairs{where} ORDER BY created_at, pair_id", *args
    )
    return [_record(row) for row in rows]


async def status_counts(ex: Executor) -> dict[PairStatus, int]:
    """How many pairs are in each status (every status present, zero or more)."""
    rows = await ex.fetch("SELECT status, COUNT(*) AS n FROM pairs GROUP BY status")
    counts = dict.fromkeys(PairStatus, 0)
    for row in rows:
        counts[PairStatus(text(row, "status"))] = integer(row, "n")
    return counts


async def set_room(ex: Executor, pair_id: str, room_id: str) -> bool:
    """Record the pair's room; a provisioning pair becomes active. False if no such pair."""
    changed = await ex.execute(
        "UPDATE pairs SET room_id = ?, "
        "status = CASE WHEN status = 'provisioning' THEN 'active' ELSE status END "
        "WHERE pair_id = ?",
        room_id,
        pair_id,
    )
    return changed == 1


async def set_status(ex: Executor, pair_id: str, status: PairStatus, now: int) -> bool:
    """Change the status; `removed` stamps removed_at with `now`, any other clears it."""
    status = PairStatus(status)
    removed_at = now if status is PairStatus.REMOVED else None
    changed = await ex.execute(
        "UPDATE pairs SET status = ?, removed_at = ? WHERE pair_id = ?",
        status.value,
        removed_at,
        pair_id,
    )
    return changed == 1


async def set_consent(ex: Executor, pair_id: str, consent_state: str) -> bool:
    """Record the patient's consent state (e.g. pending, given, declined)."""
    changed = await ex.execute(
        "UPDATE pairs SET consent_state = ? WHERE pair_id = ?", consent_state, pair_id
    )
    return changed == 1


async def set_patient_email(
    ex: Executor, sealer: ContentSealer, pair_id: str, patient_email: str | None
) -> bool:
    """Change the patient's known e-mail address (the only sender accepted for the pair)."""
    email_sealed, email_sha256 = _sealed_email(sealer, pair_id, patient_email)
    changed = await ex.execute(
        "UPDATE pairs SET patient_email_sealed = ?, patient_email_sha256 = ? WHERE pair_id = ?",
        email_sealed,
        email_sha256,
        pair_id,
    )
    return changed == 1


async def reassign_therapist(ex: Executor, pair_id: str, therapist_id: str) -> bool:
    """Give the pair to another therapist (IntegrityError if that pair already exists live)."""
    changed = await ex.execute(
        "UPDATE pairs SET therapist_id = ? WHERE pair_id = ?", therapist_id, pair_id
    )
    return changed == 1


async def seal_clear_rows(ex: Executor, sealer: ContentSealer) -> int:
    """Seal the addresses migration 014 set aside in clear, then drop their table.

    Run at every start before pairs are read (a no-op once done); returns how many
    addresses were sealed. The caller gives a transaction, so a crash leaves them set aside
    for the next start.
    """
    if not await has_table(ex, "pairs_email_clear"):
        return 0
    rows = await ex.fetch("SELECT pair_id, patient_email FROM pairs_email_clear")
    for row in rows:
        await set_patient_email(ex, sealer, text(row, "pair_id"), text(row, "patient_email"))
    await ex.execute("DELETE FROM pairs_email_clear")
    await ex.execute("DROP TABLE pairs_email_clear")
    return len(rows)


async def reclaim_space(ex: Executor) -> None:
    """Rewrite the pairs table on PostgreSQL once `seal_clear_rows` has sealed addresses.

    There a dropped column stays in the old row versions until the table is written anew
    (VACUUM FULL, which cannot run inside a transaction: give the database). On SQLite
    nothing is left to do: secure_delete has overwritten them.
    """
    if ex.dialect == "postgres":
        await ex.execute("VACUUM FULL pairs")
