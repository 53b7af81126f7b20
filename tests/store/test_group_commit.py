"""Group commit: callers at once share one transaction; one bad item fails only its caller."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from bridge.store import Database
from bridge.store.base import Executor
from bridge.store.group_commit import GroupCommit


async def test_concurrent_items_commit_together_and_in_order(db: Database) -> None:
    await db.execute("CREATE TABLE gc_items (n INTEGER PRIMARY KEY)")
    groups: list[list[int]] = []

    async def write(tx: Executor, items: Sequence[int]) -> list[int]:
        groups.append(list(items))
        for n in items:
            await tx.execute("INSERT INTO gc_items (n) VALUES (?)", n)
        return [n * 10 for n in items]

    group: GroupCommit[int, int] = GroupCommit(db, write, name="test-writer")
    results = await asyncio.gather(*(group.submit(n) for n in range(1, 9)))

    assert results == [n * 10 for n in range(1, 9)]
    assert len(groups) < 8  # shared transactions, not one each
    assert [n for g in groups for n in g] == list(range(1, 9))  # in the order they came
    rows = await db.fetch("SELECT n FROM gc_items ORDER BY n")
    assert [r["n"] for r in rows] == list(range(1, 9))  # all committed before the answers


async def test_a_bad_item_fails_its_caller_only(db: Database) -> None:
    await db.execute("CREATE TABLE gc_items (n INTEGER PRIMARY KEY)")

    async def write(tx: Executor, items: Sequence[int]) -> list[int]:
        for n in items:
            if n == 3:
                raise ValueError("refused")
            await tx.execute("INSERT INTO gc_items (n) VALUES (?)", n)
        return list(items)

    group: GroupCommit[int, int] = GroupCommit(db, write, name="test-writer")
    results = await asyncio.gather(*(group.submit(n) for n in range(1, 6)), return_exceptions=True)

    assert [type(r).__name__ if isinstance(r, Exception) else r for r in results] == [
        1,
        2,
        "ValueError",
        4,
        5,
    ]
    rows = await db.fetch("SELECT n FROM gc_items ORDER BY n")
    assert [r["n"] for r in rows] == [1, 2, 4, 5]  # the group's failed transaction left nothing


async def test_an_item_alone_is_committed_at_once(db: Database) -> None:
    async def write(tx: Executor, items: Sequence[str]) -> list[str]:
        return [s.upper() for s in items]

    group: GroupCommit[str, str] = GroupCommit(db, write, name="test-writer")
    assert await group.submit("a") == "A"
    with pytest.raises(ValueError):

        async def failing(tx: Executor, items: Sequence[str]) -> list[str]:
            raise ValueError("no")

        await GroupCommit(db, failing, name="test-writer").submit("b")
