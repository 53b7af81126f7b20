"""SQLite backend: one aiosqlite connection, transactions serialised by an asyncio lock.

Durability: the SMTP listener answers 250 only after its transaction commits, so
a commit must survive a power cut, not just a crash of the process. In WAL mode
`synchronous=NORMAL` may lose the last commits on power loss; `FULL` syncs the
WAL on every commit, which costs one fsync per transaction and is what we use.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import cast

import aiosqlite

from bridge.store.base import Dialect, IntegrityError, Row, SqlParam, StoreError, Transaction

#: How long a statement waits for another process's write lock (e.g. a CLI command).
BUSY_TIMEOUT_MS = 10_000


async def _enable_wal(conn: aiosqlite.Connection) -> None:
    """Switch to WAL; retried, because SQLite may refuse the switch with "database is
    locked" without calling the busy handler while another process opens the same new file."""
    delay = 0.01
    for _ in range(60):
        try:
            await conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
    await conn.execute("PRAGMA journal_mode=WAL")


def _dict_row(cursor: sqlite3.Cursor, row: tuple[object, ...]) -> dict[str, object]:
    return {column[0]: value for column, value in zip(cursor.description, row, strict=True)}


def _create_private_file(file: Path) -> None:
    """Create the database file readable by its owner only, if it does not exist yet."""
    # The file holds clinical metadata. SQLite gives the -wal and -shm files
    # the permissions of the main file.
    file.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(file, os.O_CREAT | os.O_WRONLY, 0o600))


class _SqliteExecutor:
    """Statements on the shared connection; callers make sure nothing interleaves."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    @property
    def dialect(self) -> Dialect:
        return "sqlite"

    def _check_usable(self) -> None:
        """Hook for subclasses that can become unusable."""

    async def _execute(self, sql: str, args: Sequence[SqlParam]) -> int:
        self._check_usable()
        try:
            async with self._conn.execute(sql, tuple(args)) as cursor:
                return max(cursor.rowcount, 0)
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(str(exc)) from exc

    async def _executemany(self, sql: str, rows: Iterable[Sequence[SqlParam]]) -> None:
        self._check_usable()
        try:
            await self._conn.executemany(sql, [tuple(row) for row in rows])
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(str(exc)) from exc

    async def _fetch(self, sql: str, args: Sequence[SqlParam]) -> list[Row]:
        self._check_usable()
        try:
            rows = await self._conn.execute_fetchall(sql, tuple(args))
        except sqlite3.IntegrityError as exc:  # INSERT ... RETURNING
            raise IntegrityError(str(exc)) from exc
        # aiosqlite types the rows as sqlite3.Row; the row factory (_dict_row) makes dicts.
        return cast(list[Row], list(rows))


class SqliteTransaction(_SqliteExecutor):
    """One BEGIN IMMEDIATE ... COMMIT on the shared connection."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        super().__init__(conn)
        self._open = True

    def _check_usable(self) -> None:
        if not self._open:
            raise StoreError("transaction used after its block ended")

    async def execute(self, sql: str, *args: SqlParam) -> int:
        """Run one statement inside the transaction; return the rows changed."""
        return await self._execute(sql, args)

    async def executemany(self, sql: str, rows: Iterable[Sequence[SqlParam]]) -> None:
        """Run one statement per row of arguments inside the transaction."""
        await self._executemany(sql, rows)

    async def fetch(self, sql: str, *args: SqlParam) -> list[Row]:
        """Return every row of a query."""
        return await self._fetch(sql, args)

    async def fetchrow(self, sql: str, *args: SqlParam) -> Row | None:
        """Return the first row of a query, or None."""
        rows = await self._fetch(sql, args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: SqlParam) -> object:
        """Return the first column of the first row, or None."""
        rows = await self._fetch(sql, args)
        return next(iter(rows[0].values())) if rows else None


class SqliteDatabase(_SqliteExecutor):
    """A SQLite database file (or `:memory:`) behind one connection.

    Every statement and every transaction takes the same lock, so a statement
    from another task can never land inside someone else's transaction.
    """

    def __init__(self, conn: aiosqlite.Connection) -> None:
        super().__init__(conn)
        self._lock = asyncio.Lock()
        self._tx_task: asyncio.Task[object] | None = None
        self._closed = False

    @classmethod
    async def connect(cls, path: str) -> SqliteDatabase:
        """Open (creating if needed, owner-only) the file at `path` and set the pragmas."""
        if path != ":memory:":
            _create_private_file(Path(path))
        # isolation_level=None: no implicit BEGIN; we issue BEGIN/COMMIT ourselves.
        conn = await aiosqlite.connect(path, isolation_level=None)
        try:
            # aiosqlite annotates row_factory as `type | None`; sqlite3 takes any callable
            # of (cursor, row), which is what _dict_row is.
            conn.row_factory = _dict_row  # type: ignore[assignment]
            # First: switching a new file to WAL takes a lock that another process
            # opening the same file at the same moment must wait for, not fail on.
            await conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            await _enable_wal(conn)
            await conn.execute("PRAGMA synchronous=FULL")
            await conn.execute("PRAGMA foreign_keys=ON")
            # Deleted content (sent outbox bodies, expired audit content) is
            # overwritten with zeros instead of lingering in free pages.
            await conn.execute("PRAGMA secure_delete=ON")
        except BaseException:
            await conn.close()
            raise
        return cls(conn)

    def _check_usable(self) -> None:
        if self._closed:
            raise StoreError("database is closed")
        if self._tx_task is not None and self._tx_task is asyncio.current_task():
            # Waiting for the lock here would wait for ourselves forever.
            raise StoreError("statement on the database inside its own transaction: use the tx")

    async def execute(self, sql: str, *args: SqlParam) -> int:
        """Run one autocommitted statement; return the rows changed."""
        self._check_usable()
        async with self._lock:
            return await self._execute(sql, args)

    async def executemany(self, sql: str, rows: Iterable[Sequence[SqlParam]]) -> None:
        """Run one statement per row of arguments, all in one transaction."""
        async with self.transaction() as tx:
            await tx.executemany(sql, rows)

    async def fetch(self, sql: str, *args: SqlParam) -> list[Row]:
        """Return every row of a query."""
        self._check_usable()
        async with self._lock:
            return await self._fetch(sql, args)

    async def fetchrow(self, sql: str, *args: SqlParam) -> Row | None:
        """Return the first row of a query, or None."""
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: SqlParam) -> object:
        """Return the first column of the first row, or None."""
        rows = await self.fetch(sql, *args)
        return next(iter(rows[0].values())) if rows else None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """Hold the connection for one transaction; commit on success, roll back on error."""
        self._check_usable()
        async with self._lock:
            self._tx_task = asyncio.current_task()
            tx = SqliteTransaction(self._conn)
            try:
                # IMMEDIATE takes the write lock now, so two processes never
                # deadlock upgrading read locks to write locks.
                await self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield tx
                    tx._open = False
                    await self._conn.execute("COMMIT")
                except BaseException:
                    await self._rollback()
                    raise
            finally:
                tx._open = False
                self._tx_task = None

    async def _rollback(self) -> None:
        """Roll back whatever is open; a COMMIT cut short by cancellation may have ended it."""
        try:
            await asyncio.shield(self._conn.execute("ROLLBACK"))
        except sqlite3.OperationalError:
            if self._conn.in_transaction:
                raise

    async def close(self) -> None:
        """Close the connection (checkpointing the WAL)."""
        if self._closed:
            return
        async with self._lock:
            self._closed = True
            await self._conn.close()
