"""The self-check's records, on SQLite and PostgreSQL: content kept while a check waits,
dropped when it ends, moved once into a repost, and the counts /health and /metrics show."""

from __future__ import annotations

from bridge.sealing import Sealer
from bridge.store import Database, outbox, witness
from bridge.store.witness import CheckState

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
ROOM = "!pair:example.org"
SEALER = Sealer({"k1": bytes(range(32))}, "k1")
CONTENT = {"msgtype": "m.notice", "body": "Welcome"}
WITNESS = "CONFIDANTWITNESS"


async def sent(db: Database, txn_id: str, *, at: int = T0, event_id: str | None = None) -> None:
    """A post queued, then sent with its content kept (as the outbox does with checks on)."""
    async with db.transaction() as tx:
        await outbox.enqueue(
            tx,
            txn_id=txn_id,
            room_id=ROOM,
            event_type="m.room.message",
            content=CONTENT,
            kind="welcome",
            now=at,
            sealer=SEALER,
        )
        await outbox.mark_sent(tx, txn_id, event_id or f"${txn_id}", at, keep_content=True)


async def record(
    db: Database, txn_id: str, event_id: str, state: CheckState = CheckState.WAITING
) -> bool:
    return await witness.record(
        db,
        txn_id=txn_id,
        room_id=ROOM,
        event_id=event_id,
        witness_device=WITNESS,
        sent_at=T0,
        state=state,
    )


async def content_of(db: Database, txn_id: str) -> object:
    item = await outbox.get(db, txn_id, SEALER)
    assert item is not None
    return item.content


async def test_content_stays_sealed_while_the_check_waits_and_goes_once_read(db: Database):
    await sent(db, "welcome.D1")
    assert await record(db, "welcome.D1", "$welcome.D1")
    assert not await record(db, "welcome.D1", "$welcome.D1")
    assert await content_of(db, "welcome.D1") == CONTENT
    assert [c.txn_id for c in await witness.waiting(db)] == ["welcome.D1"]

    assert await witness.mark_readable(db, "welcome.D1", T0 + 50)
    assert not await witness.mark_readable(db, "welcome.D1", T0 + 60)
    assert await content_of(db, "welcome.D1") is None
    check = await witness.get(db, "welcome.D1")
    assert check is not None and check.state is CheckState.READABLE
    assert check.checked_at == T0 + 50
    assert await witness.waiting(db) == []


async def test_an_unchecked_post_drops_its_content_at_once(db: Database):
    await sent(db, "n1")
    await record(db, "n1", "$n1", CheckState.UNCHECKED)
    assert await content_of(db, "n1") is None
    assert await witness.waiting(db) == []


async def test_an_unreadable_post_is_queued_again_once_with_its_content(db: Database):
    await sent(db, "bad")
    await record(db, "bad", "$bad")
    async with db.transaction() as tx:
        repost = await witness.repost(tx, "bad", T0 + 30_000, SEALER)
    assert repost == witness.Repost("bad.repost", None)
    async with db.transaction() as tx:
        assert await witness.repost(tx, "bad", T0 + 31_000, SEALER) is None  # concluded
    assert await content_of(db, "bad") is None
    row = await outbox.get(db, "bad.repost", SEALER)
    assert row is not None
    assert (row.status, row.room_id, row.kind, row.pair_id, row.content) == (
        outbox.OutboxStatus.PENDING,
        ROOM,
        "welcome",
        None,
        CONTENT,
    )
    assert await witness.repairs_pending(db) == 1

    # The repost is sent and read: the repair is done.
    async with db.transaction() as tx:
        await outbox.mark_sent(tx, "bad.repost", "$again", T0 + 31_000, keep_content=True)
    await record(db, "bad.repost", "$again")
    assert await witness.repairs_pending(db) == 1
    original = await witness.original_of(db, "bad.repost")
    assert original is not None and original.event_id == "$bad"
    await witness.mark_readable(db, "bad.repost", T0 + 32_000)
    assert await witness.repairs_pending(db) == 0
    assert await content_of(db, "bad.repost") is None

    summary = await witness.summary(db, since=T0)
    assert (summary.readable, summary.reposted, summary.unreadable_posts) == (1, 1, 1)
    assert await witness.summary(db, since=T0 + 31_000) == witness.Summary(readable=1)
    assert await witness.totals(db) == {"readable": 1, "reposted": 1}


async def test_a_repost_that_is_unreadable_too_is_not_posted_a_third_time(db: Database):
    await sent(db, "x.repost")
    await record(db, "x.repost", "$x2")
    async with db.transaction() as tx:
        repost = await witness.repost(tx, "x.repost", T0 + 30_000, SEALER)
    assert repost == witness.Repost(None, None)
    assert await outbox.get(db, "x.repost.repost") is None
    assert await content_of(db, "x.repost") is None
    check = await witness.get(db, "x.repost")
    assert check is not None and check.state is CheckState.UNREADABLE
    summary = await witness.summary(db, since=T0)
    assert (summary.unreadable, summary.unreadable_posts) == (1, 1)


async def test_content_nobody_will_check_is_dropped(db: Database):
    await sent(db, "waits")
    await record(db, "waits", "$w")
    await sent(db, "crashed-before-its-check")
    async with db.transaction() as tx:
        assert await witness.forget_unrecorded(tx) == 1
    assert await content_of(db, "crashed-before-its-check") is None
    assert await content_of(db, "waits") == CONTENT

    # The self-check is switched off: what waited ends unchecked, nothing stays sealed.
    async with db.transaction() as tx:
        assert await witness.give_up_waiting(tx, T0 + 5) == 1
    assert await content_of(db, "waits") is None
    assert (await witness.summary(db, since=T0)).unchecked == 1
