"""Versioned schema migrations: numbered SQL files applied in order, one transaction each.

Files live in `bridge/store/migrations/` and are named `NNN_name.sql` (001 core,
002 audit, 003 sla, 004 email, 005 sessions, then onwards). Each file is applied
once, in its own transaction, together with a row in `schema_version`; files
are found by listing the folder, so adding one is all it takes.

Writing a migration:
- portable SQL only (it runs on SQLite and PostgreSQL); `BLOB` becomes `BYTEA`
  on PostgreSQL; times are BIGINT milliseconds; no AUTOINCREMENT or SERIAL;
- statements end with `;`. Semicolons inside '...' strings, "..." names and
  comments are fine; compound bodies (triggers with BEGIN ... END, dollar
  quoting) are not supported;
- never edit a migration that has shipped: add a new one.

A database whose newest applied version is above the newest file here was
migrated by a newer Confidant and is refused rather than misread.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from bridge.store.base import (
    Database,
    Dialect,
    Executor,
    MigrationError,
    SchemaTooNewError,
    code_positions,
)
from bridge.store.rows import integer, to_int_or_none

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

_FILE_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_BLOB = re.compile(r"\bBLOB\b", re.IGNORECASE)

#: Key of the PostgreSQL advisory lock that serialises migrations across processes.
_PG_MIGRATION_LOCK = 0x436F6E666964  # "Confid"

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at BIGINT NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    path: Path

    def statements(self, dialect: Dialect) -> list[str]:
        """The file's statements, translated for `dialect`."""
        return split_statements(translate_ddl(self.path.read_text(encoding="utf-8"), dialect))


def split_statements(sql: str) -> list[str]:
    """Split a script on `;` outside strings and comments; drop empty statements."""
    is_code = code_positions(sql)
    statements: list[str] = []
    start = 0
    for i, c in enumerate(sql):
        if c == ";" and is_code[i]:
            statements.append(sql[start:i])
            start = i + 1
    statements.append(sql[start:])
    return [s.strip() for s in statements if _has_code(s)]


def _has_code(statement: str) -> bool:
    is_code = code_positions(statement)
    return any(flag and not c.isspace() for flag, c in zip(is_code, statement, strict=True))


def translate_ddl(sql: str, dialect: Dialect) -> str:
    """Rewrite the few type names that differ: BLOB is BYTEA on PostgreSQL."""
    if dialect != "postgres":
        return sql
    is_code = code_positions(sql)
    return _BLOB.sub(lambda m: "BYTEA" if is_code[m.start()] else m.group(0), sql)


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """List the migration files in `directory`, ordered by version."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"migration file {path.name} is not named NNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(
                f"two migration files share version {version}: "
                f"{found[version].path.name} and {path.name}"
            )
        found[version] = Migration(version, match.group(2), path)
    return [found[v] for v in sorted(found)]


async def _lock(tx: Executor) -> None:
    """Serialise migrating processes (SQLite's BEGIN IMMEDIATE already does)."""
    if tx.dialect == "postgres":
        await tx.execute("SELECT pg_advisory_xact_lock(?)", _PG_MIGRATION_LOCK)


async def has_table(ex: Executor, name: str) -> bool:
    """Whether the table exists: one a migration set aside for Python to finish (013, 014)."""
    if ex.dialect == "postgres":
        found = await ex.fetchval("SELECT to_regclass(?) IS NOT NULL", name)
        return bool(found)
    found = await ex.fetchval(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?", name
    )
    return bool(found)


async def applied_versions(db: Executor) -> set[int]:
    """Versions recorded in `schema_version` (the table must exist)."""
    rows = await db.fetch("SELECT version FROM schema_version")
    return {integer(row, "version") for row in rows}


async def schema_version(db: Executor) -> int:
    """The newest applied migration version, 0 for an empty database."""
    value = to_int_or_none(await db.fetchval("SELECT MAX(version) FROM schema_version"))
    return value if value is not None else 0


async def migrate(db: Database, directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply every migration not yet applied, in order; return the versions applied.

    Raises SchemaTooNewError when the database is ahead of the newest file.
    """
    migrations = discover(directory)
    newest = migrations[-1].version if migrations else 0
    async with db.transaction() as tx:
        await _lock(tx)
        await tx.execute(_VERSION_TABLE)
    current = await schema_version(db)
    if current > newest:
        raise SchemaTooNewError(
            f"database schema version {current} is newer than this Confidant ({newest}); "
            "upgrade Confidant"
        )
    done = await applied_versions(db)
    applied: list[int] = []
    for migration in migrations:
        if migration.version in done:
            continue
        statements = migration.statements(db.dialect)
        async with db.transaction() as tx:
            await _lock(tx)
            # Another process may have applied it while we waited for the lock.
            if migration.version in await applied_versions(tx):
                continue
            for index, statement in enumerate(statements, start=1):
                try:
                    await tx.execute(statement)
                except Exception as exc:
                    raise MigrationError(
                        f"migration {migration.path.name} failed at statement {index}: {exc}"
                    ) from exc
            await tx.execute(
                "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                migration.version,
                migration.name,
                int(time.time() * 1000),
            )
        applied.append(migration.version)
        log.info("applied migration %03d_%s", migration.version, migration.name)
    return applied
