"""Group commit: concurrent writers' items committed together, each caller answered after.

Each caller of `submit` waits until its item is committed. One writer task takes every item
waiting, writes them in the order they came in one transaction, and answers each caller
when that transaction has committed: with eight callers at once, one commit (and one
fsync) instead of eight. When the group's transaction fails, each item is tried again in a
transaction of its own, so that one bad item fails only its own caller.

Used by the audit log's `record`. Not by the SMTP listener's inbox: its sessions answer one
message at a time and seldom meet, and the writer task's extra hop made acceptance slower
(0.63x the listener storing nothing, against 0.77x committing each message on its own).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from bridge.store.base import Database, Executor

Item = TypeVar("Item")
Result = TypeVar("Result")

#: At most this many waiting items are committed in one group.
MAX_GROUP = 500


@dataclass(frozen=True, slots=True)
class _Waiting(Generic[Item, Result]):
    item: Item
    done: asyncio.Future[Result]


class GroupCommit(Generic[Item, Result]):
    """Commits what `write(tx, items)` writes for the items waiting, one result per item."""

    def __init__(
        self,
        db: Database,
        write: Callable[[Executor, Sequence[Item]], Awaitable[list[Result]]],
        *,
        name: str,
        max_group: int = MAX_GROUP,
    ) -> None:
        self.db = db
        self._write = write
        self._name = name
        self._max_group = max_group
        self._waiting: list[_Waiting[Item, Result]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        """Commit `item` (with whatever else is waiting) and return its result."""
        waiting = _Waiting(item, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_waiting(), name=self._name)
        result: Result = await waiting.done
        return result

    async def _write_waiting(self) -> None:
        """Commit what is waiting, batch after batch, until nothing is."""
        while self._waiting:
            batch = [w for w in self._waiting[: self._max_group] if not w.done.cancelled()]
            del self._waiting[: self._max_group]
            if not batch:
                continue
            try:
                await self._commit(batch)
            except BaseException as exc:
                # The writer itself was stopped (the loop is closing): nobody may wait forever.
                for waiting in (*batch, *self._waiting):
                    if not waiting.done.done():
                        waiting.done.set_exception(exc)
                self._waiting.clear()
                raise

    async def _commit(self, batch: list[_Waiting[Item, Result]]) -> None:
        try:
            async with self.db.transaction() as tx:
                results = await self._write(tx, [w.item for w in batch])
        except Exception as exc:
            if len(batch) == 1:
                _answer(batch[0], exc)
                return
            # One bad item must not fail the others: each alone, in a transaction of its own.
            for waiting in batch:
                try:
                    async with self.db.transaction() as tx:
                        (result,) = await self._write(tx, [waiting.item])
                except Exception as alone:
                    _answer(waiting, alone)
                else:
                    _answer(waiting, result)
            return
        for waiting, result in zip(batch, results, strict=True):
            _answer(waiting, result)


def _answer(waiting: _Waiting[Item, Result], outcome: Result | Exception) -> None:
    if waiting.done.done():
        return  # the caller gave up waiting; its item is committed all the same
    if isinstance(outcome, Exception):
        waiting.done.set_exception(outcome)
    else:
        waiting.done.set_result(outcome)
