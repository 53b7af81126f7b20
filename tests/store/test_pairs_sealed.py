"""A pair's patient e-mail address at rest, on SQLite and PostgreSQL: never in a column in
clear (migration 014), also for pairs an older Confidant stored; found case-insensitively."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.sealing import Sealer, SealError, generate_key
from bridge.store import languages, open_database, pairs
from bridge.store.base import Database, StoreError
from bridge.store.migrate import has_table, schema_version
from bridge.store.pairs import PairStatus
from tests.support.databases import open_database_before

EMAIL = "Wilhelmina.Zbyszewska@Example.org"
OTHER = "kasimir.przybylski@example.net"
#: What must never be read in clear: the addresses and their local parts, in any case.
CLEAR = (EMAIL, OTHER, "wilhelmina", "zbyszewska", "kasimir", "przybylski")


@pytest.fixture
def sealer() -> Sealer:
    return Sealer({"k1": generate_key()}, "k1")


async def _raw_pairs(db: Database) -> tuple[list[str], str]:
    """The columns of `pairs`, and every value of every row as text (bytes decoded leniently)."""
    rows = await db.fetch("SELECT * FROM pairs")
    columns = sorted(rows[0]) if rows else []
    values: list[str] = []
    for row in rows:
        for value in row.values():
            if isinstance(value, bytes | bytearray | memoryview):
                values.append(bytes(value).decode("latin-1"))
            else:
                values.append(str(value))
    return columns, "\n".join(values)


def _clear_in(raw: str) -> list[str]:
    return [s for s in CLEAR if s.lower() in raw.lower()]


async def _postgres_pages(db: Database) -> str | None:
    """The bytes of every page of the pairs table (dead row versions too), decoded leniently;
    None where pageinspect cannot be had (it needs a superuser)."""
    try:
        await db.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
    except Exception:
        return None
    size = await db.fetchval("SELECT pg_relation_size('pairs') / 8192")
    assert isinstance(size, int)
    pages = [await db.fetchval("SELECT get_raw_page('pairs', ?)", n) for n in range(size)]
    return b"".join(bytes(page) for page in pages if isinstance(page, bytes)).decode("latin-1")


def _database_files(directory: Path) -> str:
    """The bytes of the SQLite database and its WAL, decoded leniently."""
    files = [p for p in directory.iterdir() if p.name.startswith("confidant.db")]
    return b"".join(p.read_bytes() for p in files).decode("latin-1")


async def test_a_pair_keeps_its_patient_address_sealed(db: Database, sealer: Sealer) -> None:
    created = await pairs.create(
        db, patient_id="@p:hs", therapist_id="@t:hs", now=1, room_id="!r:hs",
        patient_email=EMAIL, sealer=sealer,
    )  # fmt: skip
    bare = await pairs.create(db, patient_id="@q:hs", therapist_id="@t:hs", now=2)
    columns, raw = await _raw_pairs(db)
    assert "patient_email" not in columns
    assert _clear_in(raw) == []
    # Round trip, whichever way the pair is read.
    assert created.has_patient_email and pairs.open_patient_email(sealer, created) == EMAIL
    for record in (
        await pairs.get(db, created.pair_id),
        await pairs.get_by_room(db, "!r:hs"),
        (await pairs.list_pairs(db, patient_id="@p:hs"))[0],
    ):
        assert record is not None and pairs.open_patient_email(sealer, record) == EMAIL
    assert not bare.has_patient_email and pairs.open_patient_email(sealer, bare) is None
    # A new address is sealed too; none leaves both columns empty.
    assert await pairs.set_patient_email(db, sealer, created.pair_id, OTHER)
    assert _clear_in((await _raw_pairs(db))[1]) == []
    changed = await pairs.get(db, created.pair_id)
    assert changed is not None and pairs.open_patient_email(sealer, changed) == OTHER
    assert await pairs.set_patient_email(db, sealer, created.pair_id, None)
    row = await db.fetchrow(
        "SELECT patient_email_sealed, patient_email_sha256 FROM pairs WHERE pair_id = ?",
        created.pair_id,
    )
    assert row == {"patient_email_sealed": None, "patient_email_sha256": None}
    # An address needs the sealer to be stored at all.
    with pytest.raises(StoreError):
        await pairs.create(db, patient_id="@x:hs", therapist_id="@t:hs", now=3, patient_email=OTHER)


async def test_a_sealed_address_opens_only_for_its_own_pair(db: Database, sealer: Sealer) -> None:
    first = await pairs.create(
        db, patient_id="@p:hs", therapist_id="@t:hs", now=1, patient_email=EMAIL, sealer=sealer
    )
    second = await pairs.create(
        db, patient_id="@q:hs", therapist_id="@t:hs", now=2, patient_email=OTHER, sealer=sealer
    )
    await db.execute(
        "UPDATE pairs SET patient_email_sealed = "
        "(SELECT patient_email_sealed FROM pairs WHERE pair_id = ?) WHERE pair_id = ?",
        first.pair_id,
        second.pair_id,
    )
    moved = await pairs.get(db, second.pair_id)
    assert moved is not None
    with pytest.raises(SealError):
        pairs.open_patient_email(sealer, moved)


async def test_a_patient_is_found_by_her_address_in_any_case(db: Database, sealer: Sealer) -> None:
    pair = await pairs.create(
        db, patient_id="@p:hs", therapist_id="@t:hs", now=1, room_id="!r:hs",
        patient_email=EMAIL, sealer=sealer,
    )  # fmt: skip
    await languages.set_language(db, "@p:hs", "de", now=1)
    for spelling in (EMAIL, EMAIL.lower(), EMAIL.upper()):
        assert await languages.of_address(db, spelling) == "de"
    assert await languages.of_address(db, OTHER) is None
    digest = await db.fetchval(
        "SELECT patient_email_sha256 FROM pairs WHERE pair_id = ?", pair.pair_id
    )
    assert digest == pairs.email_digest(EMAIL.lower()) == pairs.email_digest(EMAIL)
    # A removed pair's patient is no longer who an e-mail to that address goes to.
    assert await pairs.set_status(db, pair.pair_id, PairStatus.REMOVED, 5)
    assert await languages.of_address(db, EMAIL.lower()) is None


async def test_addresses_of_an_older_confidant_are_sealed_on_upgrade(
    db_url: str, tmp_path: Path, sealer: Sealer
) -> None:
    # A database as Confidant left it before migration 014, with the address in clear.
    db = await open_database_before(db_url, tmp_path, 14)
    try:
        assert await schema_version(db) == 13
        for pair_id, label, patient, email in (
            ("a" * 32, "AAAA", "@p:hs", EMAIL),
            ("b" * 32, "BBBB", "@q:hs", None),
        ):
            await db.execute(
                "INSERT INTO pairs (pair_id, label, patient_id, therapist_id, room_id, status, "
                "policy, patient_email, email_token, consent_state, created_at, removed_at) "
                "VALUES (?, ?, ?, '@t:hs', ?, 'active', 'default', ?, ?, 'pending', 1000, NULL)",
                pair_id,
                label,
                patient,
                f"!{label}:hs",
                email,
                f"tok{label.lower()}",
            )
        assert _clear_in((await _raw_pairs(db))[1]) != []  # the test would see clear text
    finally:
        await db.close()

    db = await open_database(db_url)
    try:
        # Migrated: the column is gone, the address set aside until the next start seals it.
        columns, raw = await _raw_pairs(db)
        assert "patient_email" not in columns and _clear_in(raw) == []
        async with db.transaction() as tx:
            assert await pairs.seal_clear_rows(tx, sealer) == 1
        pages = await _postgres_pages(db) if db.dialect == "postgres" else None
        if pages is not None:
            # The dropped column is still in the old row versions, until the table is rewritten.
            assert _clear_in(pages) != []
        await pairs.reclaim_space(db)
        if pages is not None:
            assert _clear_in(await _postgres_pages(db) or "") == []
        assert not await has_table(db, "pairs_email_clear")
        assert _clear_in((await _raw_pairs(db))[1]) == []
        async with db.transaction() as tx:
            assert await pairs.seal_clear_rows(tx, sealer) == 0  # nothing left to do
        sealed = await pairs.get(db, "a" * 32)
        assert sealed is not None and pairs.open_patient_email(sealer, sealed) == EMAIL
        assert (sealed.label, sealed.status, sealed.email_token) == (
            "AAAA",
            PairStatus.ACTIVE,
            "tokaaaa",
        )
        bare = await pairs.get(db, "b" * 32)
        assert bare is not None and not bare.has_patient_email
        await languages.set_language(db, "@p:hs", "de", now=1)
        assert await languages.of_address(db, EMAIL.upper()) == "de"
        if db.dialect == "sqlite":
            await db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        await db.close()
    if db_url.startswith("sqlite://"):
        # Not only the table: the file's bytes no longer hold the clear address either.
        assert _clear_in(_database_files(tmp_path)) == []
