"""The database protocol every store backend implements, and its errors.

SQL handed to a backend is written once for both engines: `?` placeholders (the
PostgreSQL backend rewrites them to `$1..$n`), times as BIGINT milliseconds since
the epoch (UTC), JSON as TEXT, bytes as BLOB. Rows come back as plain dicts; their
values are typed `object` and read with `bridge.store.rows`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol, TypeAlias

Dialect = Literal["sqlite", "postgres"]

#: What a `?` placeholder takes: TEXT, INTEGER or BIGINT, BLOB, or NULL.
SqlParam: TypeAlias = str | int | bytes | None

#: One result row, keyed by column name. The values are what the driver decoded,
#: so they are `object` here; `bridge.store.rows` reads them as their column's type.
Row: TypeAlias = Mapping[str, object]


class StoreError(Exception):
    """Base class of the errors a store raises on its own account."""


class IntegrityError(StoreError):
    """A constraint (unique, foreign key, check, not null) refused a write.

    Both backends raise this same class, so callers need not know the driver.
    On PostgreSQL the surrounding transaction is aborted afterwards.
    """


class SchemaTooNewError(StoreError):
    """The database was migrated by a newer Confidant than this one."""


class MigrationError(StoreError):
    """A migration file is malformed or failed to apply."""


class Executor(Protocol):
    """What both a database and an open transaction can do."""

    @property
    def dialect(self) -> Dialect:
        """Which engine this is: "sqlite" or "postgres"."""
        ...

    async def execute(self, sql: str, *args: SqlParam) -> int:
        """Run one statement; return the number of rows it changed (0 for DDL)."""
        ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[SqlParam]]) -> None:
        """Run one statement once per row of arguments."""
        ...

    async def fetch(self, sql: str, *args: SqlParam) -> list[Row]:
        """Return every row of a query as a dict keyed by column name."""
        ...

    async def fetchrow(self, sql: str, *args: SqlParam) -> Row | None:
        """Return the first row of a query, or None when there is none."""
        ...

    async def fetchval(self, sql: str, *args: SqlParam) -> object:
        """Return the first column of the first row, or None when there is no row."""
        ...


class Transaction(Executor, Protocol):
    """One open transaction; committed when its block ends, rolled back on an exception."""


class Database(Executor, Protocol):
    """A connection (SQLite) or pool (PostgreSQL); statements outside a transaction autocommit."""

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """Open a transaction: `async with db.transaction() as tx: await tx.execute(...)`."""
        ...

    async def close(self) -> None:
        """Close the connection or pool; the object is unusable afterwards."""
        ...


def code_positions(sql: str) -> list[bool]:
    """Mark which characters of `sql` are code, not quoted text or comments.

    Understands '...' strings (with '' escapes), "..." identifiers, `--` line
    comments and `/* */` block comments: enough for placeholder rewriting and
    statement splitting. PostgreSQL dollar-quoted bodies are not understood.
    """
    is_code = [True] * len(sql)
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in ("'", '"'):
            end = i + 1
            while end < n:
                if sql[end] == c:
                    if end + 1 < n and sql[end + 1] == c:
                        end += 2
                        continue
                    break
                end += 1
            stop = min(end + 1, n)
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            stop = n if end < 0 else end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            stop = n if end < 0 else end + 2
        else:
            i += 1
            continue
        for j in range(i, stop):
            is_code[j] = False
        i = stop
    return is_code


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch for a timezone-aware datetime (the stored form of times)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: times must be timezone-aware")
    # Integer arithmetic: float timestamps can round 999 ms down to 998.
    return (moment - _EPOCH) // _ONE_MS


def from_ms(value: int) -> datetime:
    """The UTC datetime of a stored millisecond timestamp."""
    return _EPOCH + value * _ONE_MS


class ContentSealer(Protocol):
    """Encrypts content at rest; `bridge.sealing.Sealer` is one."""

    def seal(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        """Encrypt `plaintext`, binding `aad`."""
        ...

    def open(self, blob: bytes, aad: bytes = b"") -> bytes:
        """Decrypt a sealed blob; raise if it was tampered with or `aad` differs."""
        ...
