"""Invitations at rest, on SQLite and PostgreSQL: the patient's address and name and the
registration code are never in a column in clear, also for rows an older Confidant stored."""

from __future__ import annotations

from pathlib import Path

from bridge.sealing import Sealer, generate_key
from bridge.store import invitations, open_database
from bridge.store.base import Database
from bridge.store.invitations import InvitationStatus
from bridge.store.migrate import schema_version
from tests.support.databases import open_database_before

NAME = "Wilhelmina Zbyszewska"
EMAIL = "wilhelmina.zbyszewska@example.org"
CODE = "QWER-TYUP-ASDF-GHJK"


def _sealer() -> Sealer:
    return Sealer({"k1": generate_key()}, "k1")


async def _raw_table(db: Database, table: str = "invitations") -> str:
    """Every value of every row of `table`, as text and as bytes decoded leniently."""
    rows = await db.fetch(f"SELECT * FROM {table}")
    parts: list[str] = []
    for row in rows:
        for value in row.values():
            if isinstance(value, bytes | bytearray | memoryview):
                parts.append(bytes(value).decode("latin-1"))
            else:
                parts.append(str(value))
    return "\n".join(parts)


def _database_files(directory: Path) -> str:
    """The bytes of the SQLite database and its WAL, decoded leniently."""
    files = [p for p in directory.iterdir() if p.name.startswith("confidant.db")]
    return b"".join(p.read_bytes() for p in files).decode("latin-1")


def _clear_in(raw: str) -> list[str]:
    lowered = raw.lower()
    return [s for s in (NAME, EMAIL, CODE, "wilhelmina", "zbyszewska") if s.lower() in lowered]


async def test_a_new_invitation_has_no_name_address_or_code_in_clear(db: Database) -> None:
    sealer = _sealer()
    created = await invitations.create(
        db,
        sealer=sealer,
        email=EMAIL,
        therapist_id="@t:hs",
        token=CODE,
        now=1_000,
        expires_at=9_000,
        name=NAME,
    )
    assert _clear_in(await _raw_table(db)) == []
    assert (created.email, created.name, created.token) == (EMAIL, NAME, CODE)
    # What is stored is bound to its invitation: a blob copied to another row does not open.
    other = await invitations.create(
        db, sealer=sealer, email="x@example.org", therapist_id="@t:hs", token="OTHER",
        now=1_000, expires_at=9_000,
    )  # fmt: skip
    await db.execute(
        "UPDATE invitations SET email_sealed = "
        "(SELECT email_sealed FROM invitations WHERE invitation_id = ?) WHERE invitation_id = ?",
        created.invitation_id,
        other.invitation_id,
    )
    try:
        await invitations.get(db, other.invitation_id, sealer)
    except Exception as exc:
        assert type(exc).__name__ == "SealError"
    else:
        raise AssertionError("a blob moved to another invitation opened")


async def test_a_closed_invitation_forgets_its_code(db: Database) -> None:
    sealer = _sealer()
    created = await invitations.create(
        db, sealer=sealer, email=EMAIL, therapist_id="@t:hs", token=CODE, now=1, expires_at=9
    )
    sealed_before = await db.fetchval(
        "SELECT token_sealed FROM invitations WHERE invitation_id = ?", created.invitation_id
    )
    assert sealed_before is not None
    assert await invitations.close(db, created.invitation_id, InvitationStatus.REVOKED, 5)
    assert (
        await db.fetchval(
            "SELECT token_sealed FROM invitations WHERE invitation_id = ?", created.invitation_id
        )
        is None
    )
    record = await invitations.get_by_token(db, CODE, sealer)
    assert record is not None and record.token is None and record.email == EMAIL


async def test_rows_of_an_older_confidant_are_sealed_on_upgrade(
    db_url: str, tmp_path: Path
) -> None:
    # A database as Confidant left it before migration 013, with invitations in clear.
    db = await open_database_before(db_url, tmp_path, 13)
    try:
        assert await schema_version(db) < 13
        for invitation_id, token, status, sent in (
            ("aaaa0001", CODE, "pending", 1_500),
            ("aaaa0002", "USED-CODE-0002", "used", None),
        ):
            await db.execute(
                "INSERT INTO invitations (invitation_id, email, name, therapist_id, policy, "
                "token, status, created_at, expires_at, unused_seen_at, prior_accounts, "
                "sent_count, last_sent_at, patient_id, pair_id, closed_at) "
                "VALUES (?, ?, ?, '@t:hs', 'default', ?, ?, 1000, 9000, 1000, '[]', ?, ?, "
                "NULL, NULL, NULL)",
                invitation_id,
                EMAIL,
                NAME,
                token,
                status,
                0 if sent is None else 1,
                sent,
            )
        assert _clear_in(await _raw_table(db)) != []  # the test would see clear text
    finally:
        await db.close()

    sealer = _sealer()
    db = await open_database(db_url)
    try:
        async with db.transaction() as tx:
            assert await invitations.seal_clear_rows(tx, sealer) == 2
        assert _clear_in(await _raw_table(db)) == []
        async with db.transaction() as tx:
            assert await invitations.seal_clear_rows(tx, sealer) == 0  # nothing left to do
        pending = await invitations.get(db, "aaaa0001", sealer)
        assert pending is not None
        assert (pending.email, pending.name, pending.token) == (EMAIL, NAME, CODE)
        assert (pending.sent_count, pending.last_sent_at, pending.recent_sends) == (
            1,
            1_500,
            (1_500,),
        )
        used = await invitations.get_by_token(db, "USED-CODE-0002", sealer)
        assert used is not None and used.status is InvitationStatus.USED and used.token is None
        if db.dialect == "postgres":
            gone = await db.fetchval("SELECT to_regclass('invitations_clear') IS NULL")
        else:
            gone = not await db.fetchval(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'invitations_clear'"
            )
        assert gone
        if db.dialect == "sqlite":
            await db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        await db.close()
    if db_url.startswith("sqlite://"):
        # Not only the table: the file's bytes no longer hold the clear values either.
        assert _clear_in(_database_files(tmp_path)) == []
