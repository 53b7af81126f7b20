"""PostgreSQL backend: an asyncpg pool; `?` placeholders are rewritten to `$1..$n`.

asyncpg ships no type information, so its pool, connections and results are `Any`
to the type checker; each result is cast to what asyncpg documents as it leaves here.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import cast

import asyncpg

from bridge.store.base import (
    Dialect,
    IntegrityError,
    Row,
    SqlParam,
    StoreError,
    Transaction,
    code_positions,
)


@functools.lru_cache(maxsize=2048)
def translate_placeholders(sql: str) -> str:
    """Rewrite each `?` outside quotes and comments to `$1`, `$2`, ... in order."""
    if "?" not in sql:
        return sql
    is_code = code_positions(sql)
    out: list[str] = []
    number = 0
    for i, c in enumerate(sql):
        if c == "?" and is_code[i]:
            number += 1
            out.append(f"${number}")
        else:
            out.append(c)
    return "".join(out)


def _rowcount(status: str) -> int:
    """Rows changed, from a command tag such as "UPDATE 3" or "INSERT 0 1"."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class _PgExecutor:
    """Statements on one asyncpg connection or on the pool."""

    def __init__(self, target: asyncpg.Connection | asyncpg.Pool) -> None:
        self._target = target

    @property
    def dialect(self) -> Dialect:
        return "postgres"

    def _check_usable(self) -> None:
        """Hook for subclasses that can become unusable."""

    async def execute(self, sql: str, *args: SqlParam) -> int:
        """Run one statement; return the rows changed."""
        self._check_usable()
        try:
            # asyncpg returns the command tag, e.g. "UPDATE 3".
            status = cast(str, await self._target.execute(translate_placeholders(sql), *args))
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise IntegrityError(str(exc)) from exc
        return _rowcount(status)

    async def executemany(self, sql: str, rows: Iterable[Sequence[SqlParam]]) -> None:
        """Run one statement per row of arguments (atomically)."""
        self._check_usable()
        try:
            await self._target.executemany(translate_placeholders(sql), [tuple(r) for r in rows])
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise IntegrityError(str(exc)) from exc

    async def fetch(self, sql: str, *args: SqlParam) -> list[Row]:
        """Return every row of a query."""
        self._check_usable()
        try:
            # asyncpg returns a list of asyncpg.Record, read-only mappings by column name.
            records = cast(
                list[Mapping[str, object]],
                await self._target.fetch(translate_placeholders(sql), *args),
            )
        except asyncpg.IntegrityConstraintViolationError as exc:  # INSERT ... RETURNING
            raise IntegrityError(str(exc)) from exc
        return [dict(record) for record in records]

    async def fetchrow(self, sql: str, *args: SqlParam) -> Row | None:
        """Return the first row of a query, or None."""
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: SqlParam) -> object:
        """Return the first column of the first row, or None."""
        rows = await self.fetch(sql, *args)
        return next(iter(rows[0].values())) if rows else None


class PostgresTransaction(_PgExecutor):
    """One transaction on a connection taken from the pool."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        super().__init__(conn)
        self._open = True

    def _check_usable(self) -> None:
        if not self._open:
            raise StoreError("transaction used after its block ended")


class PostgresDatabase(_PgExecutor):
    """A PostgreSQL database behind an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self._pool = pool
        self._closed = False

    @classmethod
    async def connect(cls, url: str, *, min_size: int = 1, max_size: int = 10) -> PostgresDatabase:
        """Open a pool on `url` (a postgresql:// DSN)."""
        pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size)
        return cls(pool)

    def _check_usable(self) -> None:
        if self._closed:
            raise StoreError("database is closed")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """Take a connection for one transaction; commit on success, roll back on error."""
        self._check_usable()
        async with self._pool.acquire() as conn, conn.transaction():
            tx = PostgresTransaction(conn)
            try:
                yield tx
            finally:
                tx._open = False

    async def close(self) -> None:
        """Close the pool, waiting for connections in use to be released."""
        if not self._closed:
            self._closed = True
            await self._pool.close()
