"""Database fixtures (a pytest plugin): store tests run on SQLite and on a fresh PostgreSQL.

PostgreSQL is the server on 127.0.0.1:5432 (user postgres, trust auth), or the
admin URL in CONFIDANT_TEST_PG_URL. When it cannot be reached the PostgreSQL
variants are skipped, unless CONFIDANT_TEST_PG is set: then they fail.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from bridge.store import Database, open_database
from bridge.store.migrate import MIGRATIONS_DIR

#: Where fresh test databases are created (and dropped).
PG_ADMIN_URL = os.environ.get(
    "CONFIDANT_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)

_pg_unreachable: str | None = None
_pg_checked = False


def _database_url(name: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


async def _admin_connection() -> asyncpg.Connection:
    """Connect to the admin database, or skip/fail the test when PostgreSQL is not there."""
    global _pg_unreachable, _pg_checked
    if not _pg_checked:
        _pg_checked = True
        try:
            conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            _pg_unreachable = f"PostgreSQL at {PG_ADMIN_URL} is unreachable: {exc}"
        else:
            return conn
    if _pg_unreachable is not None:
        if os.environ.get("CONFIDANT_TEST_PG"):
            pytest.fail(f"{_pg_unreachable} (and CONFIDANT_TEST_PG is set)")
        pytest.skip(_pg_unreachable)
    return await asyncpg.connect(PG_ADMIN_URL, timeout=5)


async def create_pg_database() -> str:
    """Create an empty database with a random name; return its URL."""
    name = f"confidant_test_{secrets.token_hex(6)}"
    conn = await _admin_connection()
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return _database_url(name)


async def drop_pg_database(url: str) -> None:
    """Drop a database made by `create_pg_database`, closing any connection left on it."""
    name = url.rpartition("/")[2]
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """URL of a fresh, empty PostgreSQL database, dropped after the test."""
    url = await create_pg_database()
    try:
        yield url
    finally:
        await drop_pg_database(url)


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """URL of a fresh, empty database of each kind (nothing opened or migrated yet)."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'confidant.db'}"
        return
    url = await create_pg_database()
    try:
        yield url
    finally:
        await drop_pg_database(url)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """An open, fully migrated database of each kind; closed after the test."""
    database = await open_database(db_url)
    try:
        yield database
    finally:
        await database.close()


async def open_database_before(db_url: str, tmp_path: Path, version: int) -> Database:
    """Open `db_url` migrated only up to the migrations numbered below `version`: a database
    as an older Confidant left it, for tests of what an upgrade does to its rows."""
    older = tmp_path / f"migrations-before-{version:03d}"
    older.mkdir()
    for path in MIGRATIONS_DIR.glob("*.sql"):
        if int(path.name[:3]) < version:
            shutil.copy(path, older / path.name)
    return await open_database(db_url, migrations=older)
