"""Persistence: one protocol over SQLite (default) and PostgreSQL, with versioned migrations.

db = await open_database("sqlite:///var/lib/confidant/confidant.db")
async with db.transaction() as tx:
    await tx.execute("UPDATE pairs SET status = ? WHERE pair_id = ?", "active", pair_id)
"""

from __future__ import annotations

from pathlib import Path

from bridge.store.base import (
    Database,
    Dialect,
    Executor,
    IntegrityError,
    MigrationError,
    SchemaTooNewError,
    StoreError,
    Transaction,
)
from bridge.store.migrate import MIGRATIONS_DIR, migrate

__all__ = [
    "Database",
    "Dialect",
    "Executor",
    "IntegrityError",
    "MigrationError",
    "SchemaTooNewError",
    "StoreError",
    "Transaction",
    "open_database",
    "sqlite_path",
]


def sqlite_path(url: str) -> str | None:
    """The SQLite file (or ":memory:") a URL names, or None for a PostgreSQL URL.

    Accepts "sqlite:///abs/path", "sqlite://relative/path", "sqlite://:memory:",
    ":memory:" and a plain path.
    """
    if url.startswith(("postgresql://", "postgres://")):
        return None
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        if not path:
            raise ValueError("sqlite URL names no file: use sqlite:///absolute/path")
        return path
    if "://" in url:
        scheme = url.split("://", 1)[0]
        raise ValueError(f"unsupported database URL scheme {scheme!r}: use sqlite or postgresql")
    return url


async def open_database(
    url: str, *, migrations: Path = MIGRATIONS_DIR, apply_migrations: bool = True
) -> Database:
    """Open the database `url` names and bring its schema up to date.

    Raises SchemaTooNewError when the database belongs to a newer Confidant.
    """
    path = sqlite_path(url)
    db: Database
    if path is None:
        from bridge.store.postgres import PostgresDatabase

        db = await PostgresDatabase.connect(url)
    else:
        from bridge.store.sqlite import SqliteDatabase

        db = await SqliteDatabase.connect(path)
    if apply_migrations:
        try:
            await migrate(db, migrations)
        except BaseException:
            await db.close()
            raise
    return db
