"""The store itself, on SQLite and PostgreSQL: migrations, transactions, SQL translation."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from bridge.store import (
    Database,
    IntegrityError,
    MigrationError,
    SchemaTooNewError,
    StoreError,
    open_database,
    sqlite_path,
)
from bridge.store.base import code_positions, from_ms, to_ms
from bridge.store.migrate import discover, migrate, schema_version, split_statements, translate_ddl
from bridge.store.postgres import translate_placeholders

# ---------------------------------------------------------------- SQL text (pure)


def test_placeholders_outside_quotes_and_comments_are_numbered() -> None:
    sql = "SELECT ?, '?', 'it''s ?', \"col?\" -- ?\n, ? /* ? */ FROM t WHERE a = ?"
    assert translate_placeholders(sql) == (
        "SELECT $1, '?', 'it''s ?', \"col?\" -- ?\n, $2 /* ? */ FROM t WHERE a = $3"
    )


def test_sql_without_placeholders_is_unchanged() -> None:
    assert translate_placeholders("SELECT 1") == "SELECT 1"


def test_code_positions_marks_an_unterminated_string_as_text() -> None:
    assert code_positions("a 'b") == [True, True, False, False]


def test_split_statements_respects_strings_and_comments() -> None:
    script = """
    -- a comment; with a semicolon
    CREATE TABLE a (x TEXT DEFAULT 'x;y');
    /* block; comment */
    INSERT INTO a (x) VALUES ('z;');

    -- trailing comment only
    """
    assert split_statements(script) == [
        "-- a comment; with a semicolon\n    CREATE TABLE a (x TEXT DEFAULT 'x;y')",
        "/* block; comment */\n    INSERT INTO a (x) VALUES ('z;')",
    ]


def test_blob_becomes_bytea_on_postgres_only() -> None:
    sql = "CREATE TABLE t (b BLOB, c blob, s TEXT DEFAULT 'BLOB', blobby TEXT)"
    assert translate_ddl(sql, "postgres") == (
        "CREATE TABLE t (b BYTEA, c BYTEA, s TEXT DEFAULT 'BLOB', blobby TEXT)"
    )
    assert translate_ddl(sql, "sqlite") == sql


def test_database_urls() -> None:
    assert sqlite_path("sqlite:///var/lib/c.db") == "/var/lib/c.db"
    assert sqlite_path("sqlite://var/c.db") == "var/c.db"
    assert sqlite_path("sqlite://:memory:") == ":memory:"
    assert sqlite_path(":memory:") == ":memory:"
    assert sqlite_path("/srv/c.db") == "/srv/c.db"
    assert sqlite_path("postgresql://u@h/db") is None
    assert sqlite_path("postgres://u@h/db") is None
    with pytest.raises(ValueError, match="mysql"):
        sqlite_path("mysql://u@h/db")
    with pytest.raises(ValueError):
        sqlite_path("sqlite://")


def test_millisecond_times_round_trip_exactly() -> None:
    from datetime import UTC, datetime

    moment = datetime(2026, 3, 29, 1, 59, 59, 999000, tzinfo=UTC)
    assert to_ms(moment) == 1774749599999
    assert from_ms(to_ms(moment)) == moment
    with pytest.raises(ValueError):
        to_ms(datetime(2026, 1, 1))  # naive


def test_migration_files_must_be_well_named(tmp_path: Path) -> None:
    (tmp_path / "001_ok.sql").write_text("CREATE TABLE a (x TEXT);")
    (tmp_path / "notes.txt").write_text("ignored")
    assert [m.version for m in discover(tmp_path)] == [1]
    (tmp_path / "2_bad.sql").write_text("")
    with pytest.raises(MigrationError, match=r"2_bad\.sql"):
        discover(tmp_path)
    (tmp_path / "2_bad.sql").unlink()
    (tmp_path / "001_twin.sql").write_text("")
    with pytest.raises(MigrationError, match="share version 1"):
        discover(tmp_path)


def test_shipped_migrations_are_numbered_without_duplicates() -> None:
    versions = [m.version for m in discover()]
    assert versions[0] == 1
    assert versions == sorted(set(versions))


# ---------------------------------------------------------------- migrations


async def test_fresh_database_gets_every_migration(db: Database) -> None:
    shipped = {m.version for m in discover()}
    rows = await db.fetch("SELECT version, name FROM schema_version ORDER BY version")
    assert {r["version"] for r in rows} == shipped
    assert rows[0]["name"] == "core"
    assert await schema_version(db) == max(shipped)
    for table in ("pairs", "therapists", "outbox", "kv", "processed_events", "timers"):
        assert await db.fetchval(f"SELECT COUNT(*) FROM {table}") == 0


async def test_reopening_applies_nothing_and_keeps_data(db_url: str) -> None:
    first = await open_database(db_url)
    try:
        await first.execute("INSERT INTO kv (key, value) VALUES (?, ?)", "k", "v")
        assert await migrate(first) == []
    finally:
        await first.close()
    again = await open_database(db_url)
    try:
        assert await again.fetchval("SELECT value FROM kv WHERE key = ?", "k") == "v"
        assert await again.fetchval("SELECT COUNT(*) FROM schema_version") == len(discover())
    finally:
        await again.close()


async def test_a_newer_database_is_refused(db_url: str) -> None:
    newest = discover()[-1].version
    first = await open_database(db_url)
    try:
        await first.execute(
            "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
            newest + 2,
            "future",
            0,
        )
    finally:
        await first.close()
    expected = (
        f"database schema version {newest + 2} is newer than this Confidant "
        f"({newest}); upgrade Confidant"
    )
    with pytest.raises(SchemaTooNewError) as caught:
        await open_database(db_url)
    assert str(caught.value) == expected


async def test_new_files_are_applied_in_order_on_next_open(db_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "001_first.sql").write_text(
        "-- semicolons; in comments and 'strings' are fine\n"
        "CREATE TABLE notes (id TEXT PRIMARY KEY, body BLOB, tag TEXT DEFAULT 'a;b');\n"
        "INSERT INTO notes (id, tag) VALUES ('n1', 'x;y');\n"
    )
    db = await open_database(db_url, migrations=folder)
    try:
        assert await schema_version(db) == 1
        await db.execute("INSERT INTO notes (id, body) VALUES (?, ?)", "n2", b"\x00\xffbin")
        assert await db.fetchval("SELECT body FROM notes WHERE id = ?", "n2") == b"\x00\xffbin"
        assert await db.fetchval("SELECT tag FROM notes WHERE id = ?", "n1") == "x;y"
    finally:
        await db.close()

    (folder / "003_third.sql").write_text("ALTER TABLE notes ADD COLUMN c3 TEXT;")
    (folder / "002_second.sql").write_text(
        "ALTER TABLE notes ADD COLUMN c2 TEXT;\nUPDATE notes SET c2 = 'two';"
    )
    db = await open_database(db_url, migrations=folder)
    try:
        rows = await db.fetch("SELECT version, name FROM schema_version ORDER BY version")
        assert [(r["version"], r["name"]) for r in rows] == [
            (1, "first"),
            (2, "second"),
            (3, "third"),
        ]
        assert await db.fetchval("SELECT c2 FROM notes WHERE id = ?", "n1") == "two"
    finally:
        await db.close()


async def test_a_failing_migration_leaves_no_trace(db_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "001_good.sql").write_text("CREATE TABLE good (x TEXT);")
    (folder / "002_bad.sql").write_text(
        "CREATE TABLE half (x TEXT);\nINSERT INTO no_such_table (x) VALUES ('a');"
    )
    with pytest.raises(MigrationError, match=r"002_bad\.sql failed at statement 2"):
        await open_database(db_url, migrations=folder)
    (folder / "002_bad.sql").unlink()
    db = await open_database(db_url, migrations=folder)
    try:
        assert await schema_version(db) == 1
        # 002 was rolled back entirely, so its first table must not exist.
        (folder / "002_retry.sql").write_text("CREATE TABLE half (x TEXT);")
        assert await migrate(db, folder) == [2]
    finally:
        await db.close()


# ---------------------------------------------------------------- statements


async def test_statements_return_rows_changed_and_dicts(db: Database) -> None:
    assert db.dialect in ("sqlite", "postgres")
    await db.executemany(
        "INSERT INTO kv (key, value) VALUES (?, ?)", [("a", "1"), ("b", "2"), ("c", "3")]
    )
    assert await db.execute("UPDATE kv SET value = ? WHERE key <> ?", "x", "a") == 2
    assert await db.execute("DELETE FROM kv WHERE key = ?", "nope") == 0
    rows = await db.fetch("SELECT key, value FROM kv ORDER BY key")
    assert rows == [
        {"key": "a", "value": "1"},
        {"key": "b", "value": "x"},
        {"key": "c", "value": "x"},
    ]
    assert type(rows[0]) is dict
    assert await db.fetchrow("SELECT key FROM kv WHERE key = ?", "zz") is None
    assert await db.fetchval("SELECT value FROM kv WHERE key = ?", "zz") is None
    assert await db.fetchval("SELECT COUNT(*) FROM kv") == 3


async def test_question_marks_in_string_literals_are_kept(db: Database) -> None:
    await db.execute("INSERT INTO kv (key, value) VALUES (?, 'why?')", "q")
    row = await db.fetchrow(
        "SELECT value, '?' AS mark FROM kv WHERE key = ? AND value = 'why?'", "q"
    )
    assert row == {"value": "why?", "mark": "?"}


async def test_constraint_violations_raise_the_store_integrity_error(db: Database) -> None:
    await db.execute("INSERT INTO kv (key, value) VALUES (?, ?)", "k", "v")
    with pytest.raises(IntegrityError):
        await db.execute("INSERT INTO kv (key, value) VALUES (?, ?)", "k", "w")
    with pytest.raises(IntegrityError):  # foreign key
        await db.execute(
            "INSERT INTO timers (timer_id, kind, pair_id, due_at, payload) VALUES (?, ?, ?, ?, ?)",
            "t",
            "k",
            "no-such-pair",
            1,
            "{}",
        )
    with pytest.raises(IntegrityError):
        await db.executemany("INSERT INTO kv (key, value) VALUES (?, ?)", [("x", "1"), ("k", "2")])
    # executemany is atomic: the first row went away with the failing second one.
    assert await db.fetchval("SELECT COUNT(*) FROM kv WHERE key = ?", "x") == 0


# ---------------------------------------------------------------- transactions


async def test_a_transaction_commits(db: Database) -> None:
    async with db.transaction() as tx:
        assert tx.dialect == db.dialect
        await tx.execute("INSERT INTO kv (key, value) VALUES (?, ?)", "a", "1")
        assert await tx.fetchval("SELECT value FROM kv WHERE key = ?", "a") == "1"
    assert await db.fetchval("SELECT value FROM kv WHERE key = ?", "a") == "1"


async def test_a_transaction_rolls_back_on_exception(db: Database) -> None:
    await db.execute("INSERT INTO kv (key, value) VALUES (?, ?)", "keep", "old")
    with pytest.raises(RuntimeError, match="boom"):
        async with db.transaction() as tx:
            await tx.execute("UPDATE kv SET value = ? WHERE key = ?", "new", "keep")
            await tx.execute("INSERT INTO kv (key, value) VALUES (?, ?)", "gone", "1")
            raise RuntimeError("boom")
    assert await db.fetch("SELECT key, value FROM kv") == [{"key": "keep", "value": "old"}]


async def test_a_transaction_rolls_back_after_an_integrity_error(db: Database) -> None:
    await db.execute("INSERT INTO kv (key, value) VALUES (?, ?)", "k", "v")
    with pytest.raises(IntegrityError):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO kv (key, value) VALUES (?, ?)", "new", "1")
            await tx.execute("INSERT INTO kv (key, value) VALUES (?, ?)", "k", "dup")
    assert await db.fetchval("SELECT COUNT(*) FROM kv") == 1


async def test_a_transaction_cannot_be_used_after_its_block(db: Database) -> None:
    async with db.transaction() as tx:
        pass
    with pytest.raises(StoreError):
        await tx.execute("SELECT 1")


async def test_a_statement_from_another_task_never_joins_a_transaction(db: Database) -> None:
    inside = asyncio.Event()
    release = asyncio.Event()

    async def failing_transaction() -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO kv (key, value) VALUES (?, ?)", "from-tx", "1")
            inside.set()
            await release.wait()
            raise RuntimeError("roll back")

    tx_task = asyncio.create_task(failing_transaction())
    await inside.wait()
    outside = asyncio.create_task(
        db.execute("INSERT INTO kv (key, value) VALUES (?, ?)", "outside", "2")
    )
    other_tx_done = asyncio.Event()

    async def other_transaction() -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO kv (key, value) VALUES (?, ?)", "other-tx", "3")
        other_tx_done.set()

    other = asyncio.create_task(other_transaction())
    for _ in range(20):
        await asyncio.sleep(0)
    if db.dialect == "sqlite":
        # One connection: both must wait for the open transaction to end.
        assert not outside.done()
        assert not other_tx_done.is_set()
    release.set()
    with pytest.raises(RuntimeError, match="roll back"):
        await tx_task
    await outside
    await other
    rows = await db.fetch("SELECT key FROM kv ORDER BY key")
    assert [r["key"] for r in rows] == ["other-tx", "outside"]


async def test_concurrent_transactions_each_see_only_their_own_writes(db: Database) -> None:
    async def bump(i: int) -> None:
        async with db.transaction() as tx:
            current = await tx.fetchval("SELECT value FROM kv WHERE key = ?", f"k{i % 3}")
            await asyncio.sleep(0)
            if current is None:
                await tx.execute("INSERT INTO kv (key, value) VALUES (?, ?)", f"k{i % 3}", "1")
            else:
                await tx.execute(
                    "UPDATE kv SET value = ? WHERE key = ?", str(int(current) + 1), f"k{i % 3}"
                )

    if db.dialect == "postgres":
        pytest.skip("read-modify-write without row locks is a SQLite-only guarantee")
    await asyncio.gather(*(bump(i) for i in range(30)))
    rows = await db.fetch("SELECT key, value FROM kv ORDER BY key")
    assert rows == [{"key": f"k{i}", "value": "10"} for i in range(3)]


# ---------------------------------------------------------------- SQLite specifics


async def test_sqlite_statement_on_db_inside_own_transaction_is_refused(tmp_path: Path) -> None:
    db = await open_database(str(tmp_path / "c.db"))
    try:
        async with db.transaction():
            with pytest.raises(StoreError, match="use the tx"):
                await db.execute("SELECT 1")
    finally:
        await db.close()


async def test_sqlite_file_is_private_durable_and_checks_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "c.db"
    db = await open_database(f"sqlite://{path}")
    try:
        assert await db.fetchval("PRAGMA journal_mode") == "wal"
        assert await db.fetchval("PRAGMA synchronous") == 2  # FULL
        assert await db.fetchval("PRAGMA foreign_keys") == 1
        assert await db.fetchval("PRAGMA busy_timeout") > 0
        await db.execute("INSERT INTO kv (key, value) VALUES (?, ?)", "k", "v")
        for file in path.parent.iterdir():
            assert stat.S_IMODE(file.stat().st_mode) & 0o077 == 0, file.name
    finally:
        await db.close()


async def test_sqlite_relative_url_and_plain_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for url, file in (("sqlite://rel/a.db", "rel/a.db"), ("plain.db", "plain.db")):
        db = await open_database(url)
        await db.close()
        assert (tmp_path / file).is_file()
    memory = await open_database(":memory:")
    try:
        assert await schema_version(memory) == discover()[-1].version
    finally:
        await memory.close()


async def test_a_cancelled_transaction_rolls_back_and_frees_the_database(db: Database) -> None:
    inside = asyncio.Event()

    async def stuck() -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO kv (key, value) VALUES (?, ?)", "half", "1")
            inside.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(stuck())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO kv (key, value) VALUES (?, ?)", "next", "2")
    assert await db.fetch("SELECT key FROM kv") == [{"key": "next"}]


async def test_two_processes_migrating_at_once_apply_each_file_once(db_url: str) -> None:
    first, second = await asyncio.gather(open_database(db_url), open_database(db_url))
    try:
        rows = await first.fetch("SELECT version FROM schema_version ORDER BY version")
        assert [r["version"] for r in rows] == [m.version for m in discover()]
        await first.execute("INSERT INTO kv (key, value) VALUES (?, ?)", "a", "1")
        assert await second.fetchval("SELECT value FROM kv WHERE key = ?", "a") == "1"
    finally:
        await first.close()
        await second.close()
