"""Store repositories on SQLite and PostgreSQL: pairs, therapists, outbox, sync state, timers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge.sealing import Sealer, SealError, generate_key
from bridge.store import (
    Database,
    IntegrityError,
    open_database,
    outbox,
    pairs,
    syncstate,
    therapists,
    timers,
)
from bridge.store.outbox import OutboxStatus
from bridge.store.pairs import PairStatus

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
PATIENT = "@pat:example.org"
THERAPIST = "@doc:example.org"


@pytest.fixture
def sealer() -> Sealer:
    return Sealer({"k1": generate_key()}, "k1")


async def _pair(db: Database, patient: str = PATIENT, room: str | None = None) -> pairs.PairRecord:
    return await pairs.create(db, patient_id=patient, therapist_id=THERAPIST, now=T0, room_id=room)


# ---------------------------------------------------------------- pairs


async def test_a_pair_is_provisioning_until_its_room_is_set(db: Database, sealer: Sealer) -> None:
    pair = await pairs.create(
        db,
        patient_id=PATIENT,
        therapist_id=THERAPIST,
        now=T0,
        policy="weekdays",
        patient_email="pat@example.net",
        sealer=sealer,
    )
    assert pair.status is PairStatus.PROVISIONING
    assert pair.room_id is None
    assert len(pair.pair_id) == 32
    assert len(pair.label) == 4 and pair.label == pair.label.upper()
    assert len(pair.email_token) == 24 and pair.email_token == pair.email_token.lower()
    assert await pairs.get(db, pair.pair_id) == pair

    assert await pairs.set_room(db, pair.pair_id, "!room:example.org")
    stored = await pairs.get_by_room(db, "!room:example.org")
    assert stored is not None
    assert stored.status is PairStatus.ACTIVE
    assert stored.pair_id == pair.pair_id
    assert stored.policy == "weekdays"
    assert pairs.open_patient_email(sealer, stored) == "pat@example.net"
    assert stored.consent_state == "pending"
    assert stored.created_at == T0
    assert not await pairs.set_room(db, "no-such-pair", "!other:example.org")


async def test_pairs_are_found_by_label_users_and_email_token(db: Database) -> None:
    pair = await _pair(db, room="!r:x")
    assert await pairs.get_by_label(db, pair.label.lower()) == pair
    assert await pairs.get_by_users(db, PATIENT, THERAPIST) == pair
    assert await pairs.get_by_users(db, THERAPIST, PATIENT) is None
    assert await pairs.get_by_email_token(db, pair.email_token.upper()) == pair
    assert await pairs.get_by_email_token(db, "nope") is None
    assert await pairs.get(db, "nope") is None
    assert await pairs.get_by_room(db, "!nope:x") is None


async def test_one_live_pair_per_patient_and_therapist(db: Database) -> None:
    first = await _pair(db)
    with pytest.raises(IntegrityError):
        await _pair(db)
    assert await pairs.set_status(db, first.pair_id, PairStatus.REMOVED, T0 + 5)
    removed = await pairs.get(db, first.pair_id)
    assert removed is not None
    assert removed.status is PairStatus.REMOVED and removed.removed_at == T0 + 5
    assert await pairs.get_by_users(db, PATIENT, THERAPIST) is None
    second = await _pair(db)
    assert await pairs.get_by_users(db, PATIENT, THERAPIST) == second
    assert second.email_token != first.email_token and second.label != first.label


async def test_a_room_belongs_to_one_pair(db: Database) -> None:
    await _pair(db, room="!r:x")
    other = await _pair(db, patient="@other:x")
    with pytest.raises(IntegrityError):
        await pairs.set_room(db, other.pair_id, "!r:x")


async def test_list_pairs_filters(db: Database) -> None:
    a = await _pair(db, patient="@a:x", room="!a:x")
    b = await _pair(db, patient="@b:x")
    c = await pairs.create(
        db, patient_id="@a:x", therapist_id="@doc2:x", now=T0 + 1, room_id="!c:x"
    )
    listed = [p.pair_id for p in await pairs.list_pairs(db)]
    assert listed == [*sorted([a.pair_id, b.pair_id]), c.pair_id]  # created_at, then id
    assert await pairs.list_pairs(db, status=PairStatus.PROVISIONING) == [b]
    active_of_doc = await pairs.list_pairs(db, status=PairStatus.ACTIVE, therapist_id=THERAPIST)
    assert active_of_doc == [a]
    assert {p.pair_id for p in await pairs.list_pairs(db, patient_id="@a:x")} == {
        a.pair_id,
        c.pair_id,
    }


async def test_consent_email_and_reassignment(db: Database, sealer: Sealer) -> None:
    pair = await _pair(db, room="!r:x")
    assert not pair.has_patient_email and pairs.open_patient_email(sealer, pair) is None
    assert await pairs.set_consent(db, pair.pair_id, "given")
    assert await pairs.set_patient_email(db, sealer, pair.pair_id, "new@example.net")
    assert await pairs.reassign_therapist(db, pair.pair_id, "@doc2:x")
    stored = await pairs.get(db, pair.pair_id)
    assert stored is not None
    assert (
        stored.consent_state,
        pairs.open_patient_email(sealer, stored),
        stored.therapist_id,
    ) == (
        "given",
        "new@example.net",
        "@doc2:x",
    )
    assert await pairs.get_by_users(db, PATIENT, THERAPIST) is None
    assert not await pairs.reassign_therapist(db, "nope", "@doc2:x")
    assert await pairs.set_status(db, pair.pair_id, PairStatus.REMOVED, T0)
    assert await pairs.set_status(db, pair.pair_id, PairStatus.ACTIVE, T0)
    back = await pairs.get(db, pair.pair_id)
    assert back is not None and back.status is PairStatus.ACTIVE and back.removed_at is None


# ---------------------------------------------------------------- therapists


async def test_therapists_upsert_keeps_desk_room_and_cover(db: Database) -> None:
    await therapists.upsert(db, THERAPIST, now=T0, email="doc@x", supervisor_id="@sup:x")
    assert await therapists.set_desk_room(db, THERAPIST, "!desk:x")
    assert await therapists.set_away(db, THERAPIST, T0 + 1000, "@cover:x")
    await therapists.upsert(db, THERAPIST, now=T0 + 99, email="doc2@x", supervisor_id=None)
    doc = await therapists.get(db, THERAPIST)
    assert doc == therapists.TherapistRecord(
        user_id=THERAPIST,
        desk_room_id="!desk:x",
        email="doc2@x",
        supervisor_id=None,
        away_until=T0 + 1000,
        cover_id="@cover:x",
        created_at=T0,
    )
    assert await therapists.get_by_desk_room(db, "!desk:x") == doc
    assert await therapists.set_away(db, THERAPIST, None, None)
    await therapists.upsert(db, "@alpha:x", now=T0)
    assert [t.user_id for t in await therapists.list_therapists(db)] == ["@alpha:x", THERAPIST]
    assert await therapists.remove(db, "@alpha:x")
    assert not await therapists.remove(db, "@alpha:x")
    assert await therapists.get(db, "@alpha:x") is None
    assert not await therapists.set_desk_room(db, "@alpha:x", "!d:x")


async def test_two_therapists_cannot_share_a_desk_room(db: Database) -> None:
    await therapists.upsert(db, "@a:x", now=T0)
    await therapists.upsert(db, "@b:x", now=T0)
    await therapists.set_desk_room(db, "@a:x", "!desk:x")
    with pytest.raises(IntegrityError):
        await therapists.set_desk_room(db, "@b:x", "!desk:x")


# ---------------------------------------------------------------- outbox


async def test_outbox_enqueue_is_idempotent_and_content_round_trips(
    db: Database, sealer: Sealer
) -> None:
    pair = await _pair(db, room="!r:x")
    content = {"msgtype": "m.text", "body": "Grüße ✓"}
    args = {"room_id": "!r:x", "event_type": "m.room.message", "kind": "email"}
    assert await outbox.enqueue(
        db, txn_id="t1", content=content, now=T0, sealer=sealer, pair_id=pair.pair_id, **args
    )
    assert not await outbox.enqueue(
        db, txn_id="t1", content={"body": "other"}, now=T0 + 1, sealer=sealer, **args
    )
    assert await outbox.depth(db) == 1
    [item] = await outbox.due(db, T0, 10, sealer)
    assert item.content == content
    assert (item.txn_id, item.pair_id, item.status, item.attempts) == (
        "t1",
        pair.pair_id,
        OutboxStatus.PENDING,
        0,
    )
    raw = await db.fetchval("SELECT content FROM outbox WHERE txn_id = ?", "t1")
    assert isinstance(raw, bytes) and "Grüße".encode() not in raw
    meta = await outbox.get(db, "t1")
    assert meta is not None and meta.content is None  # no sealer: content not opened


async def test_outbox_due_order_retry_and_sent(db: Database, sealer: Sealer) -> None:
    for i, txn in enumerate(("a", "b", "c")):
        await outbox.enqueue(
            db,
            txn_id=txn,
            room_id="!s:x" if txn == "c" else "!r:x",
            event_type="m.room.message",
            content={"n": i},
            kind="notice",
            now=T0 + i,
            sealer=sealer,
        )
    assert [i.txn_id for i in await outbox.due(db, T0 + 1, 10, sealer)] == ["a", "b"]
    assert [i.txn_id for i in await outbox.due(db, T0 + 9, 2, sealer)] == ["a", "b"]

    assert await outbox.mark_retry(db, "a", T0 + 100, "HTTP 502" + "x" * 500)
    retried = await outbox.get(db, "a")
    assert retried is not None
    assert (retried.attempts, retried.next_attempt_at) == (1, T0 + 100)
    assert retried.last_error is not None and len(retried.last_error) == outbox.MAX_ERROR_LENGTH
    # "b" waits behind "a" in its room; "c", in another room, does not.
    assert [i.txn_id for i in await outbox.due(db, T0 + 9, 10, sealer)] == ["c"]

    assert await outbox.mark_sent(db, "b", "$ev:x", T0 + 10)
    assert not await outbox.mark_sent(db, "b", "$ev2:x", T0 + 11)
    assert not await outbox.mark_retry(db, "b", T0 + 100, "late")
    sent = await outbox.get(db, "b", sealer)
    assert sent is not None
    assert (sent.status, sent.event_id, sent.sent_at, sent.content) == (
        OutboxStatus.SENT,
        "$ev:x",
        T0 + 10,
        None,
    )
    assert await db.fetchval("SELECT content FROM outbox WHERE txn_id = ?", "b") is None
    assert await outbox.depth(db) == 2
    assert await outbox.depth(db, OutboxStatus.SENT) == 1

    assert await outbox.mark_failed(db, "c", "M_FORBIDDEN")
    assert await outbox.depth(db, OutboxStatus.FAILED) == 1
    assert [i.txn_id for i in await outbox.due(db, T0 + 1000, 10, sealer)] == ["a"]
    assert await outbox.requeue(db, "c", T0 + 1000)
    assert not await outbox.requeue(db, "c", T0 + 1000)
    reborn = await outbox.due(db, T0 + 1000, 10, sealer)
    assert [(i.txn_id, i.content) for i in reborn] == [("a", {"n": 0}), ("c", {"n": 2})]


async def _enqueue_at(
    db: Database, sealer: Sealer, txn: str, room: str, now: int, **extra: Any
) -> None:
    await outbox.enqueue(
        db,
        txn_id=txn,
        room_id=room,
        event_type="m.room.message",
        content={"body": txn},
        kind="email",
        now=now,
        sealer=sealer,
        **extra,
    )


async def test_outbox_room_order_follows_acceptance(db: Database, sealer: Sealer) -> None:
    # Relayed after a crash in another order than they were accepted in.
    await _enqueue_at(db, sealer, "late", "!r:x", T0, accepted_at=T0 - 10)
    await _enqueue_at(db, sealer, "early", "!r:x", T0 + 1, accepted_at=T0 - 20)
    await _enqueue_at(db, sealer, "other", "!o:x", T0 + 2)
    assert [i.txn_id for i in await outbox.due(db, T0 + 5, 10, sealer)] == [
        "early",
        "late",
        "other",
    ]
    # The earliest waits for a retry: the rest of its room waits too, other rooms do not.
    assert await outbox.mark_retry(db, "early", T0 + 100, "HomeserverUnavailable")
    assert [i.txn_id for i in await outbox.due(db, T0 + 5, 10, sealer)] == ["other"]
    assert await outbox.release_deferred(db, T0 + 6) == 1
    assert [i.txn_id for i in await outbox.due(db, T0 + 6, 10, sealer)][:2] == ["early", "late"]


async def test_outbox_notice_waits_for_its_member(db: Database, sealer: Sealer) -> None:
    await _enqueue_at(db, sealer, "welcome", "!r:x", T0, await_member="@p:x")
    await _enqueue_at(db, sealer, "email", "!r:x", T0 + 1)
    assert await outbox.defer_awaiting(db, "welcome", T0 + 30_000)
    waiting = await outbox.get(db, "welcome")
    assert waiting is not None
    # The looks are counted, so the worker spaces them out.
    assert (waiting.attempts, waiting.last_error, waiting.await_member) == (
        1,
        outbox.AWAITING_MEMBER,
        "@p:x",
    )
    # A waiting notice holds nothing else up, and a homeserver recovery does not wake it.
    assert [i.txn_id for i in await outbox.due(db, T0 + 2, 10, sealer)] == ["email"]
    assert await outbox.release_deferred(db, T0 + 2) == 0
    assert await outbox.release_awaiting(db, "!r:x", "@someone:x", T0 + 3) == 0
    assert await outbox.release_awaiting(db, "!r:x", "@p:x", T0 + 3) == 1
    assert [i.txn_id for i in await outbox.due(db, T0 + 3, 10, sealer)] == ["welcome", "email"]
    released = await outbox.get(db, "welcome")
    assert released is not None and released.attempts == 0  # a join starts afresh


async def test_outbox_content_moved_to_another_row_does_not_open(
    db: Database, sealer: Sealer
) -> None:
    for txn in ("a", "b"):
        await outbox.enqueue(
            db,
            txn_id=txn,
            room_id="!r:x",
            event_type="m.room.message",
            content={"body": txn},
            kind="text",
            now=T0,
            sealer=sealer,
        )
    blob = await db.fetchval("SELECT content FROM outbox WHERE txn_id = ?", "a")
    await db.execute("UPDATE outbox SET content = ? WHERE txn_id = ?", blob, "b")
    with pytest.raises(SealError):
        await outbox.get(db, "b", sealer)


async def test_no_plaintext_outbox_content_reaches_the_sqlite_files(
    tmp_path: Path, sealer: Sealer
) -> None:
    canary = "CANARY-7c1e-patient-wrote-this"
    folder = tmp_path / "data"
    db = await open_database(str(folder / "confidant.db"))
    try:
        for n in range(3):
            await outbox.enqueue(
                db,
                txn_id=f"t{n}",
                room_id="!r:x",
                event_type="m.room.message",
                content={"msgtype": "m.text", "body": f"{canary} #{n}"},
                kind="email",
                now=T0,
                sealer=sealer,
            )
        await outbox.mark_sent(db, "t0", "$e:x", T0 + 1)
        await outbox.mark_retry(db, "t1", T0 + 1, "TimeoutError")
        files = list(folder.iterdir())
        assert any(f.name.endswith("-wal") for f in files)  # the WAL is checked too
        for file in files:
            assert canary.encode() not in file.read_bytes(), file.name
        [item, *_] = await outbox.due(db, T0 + 5, 10, sealer)
        assert item.content is not None and canary in item.content["body"]
    finally:
        await db.close()
    for file in folder.iterdir():
        assert canary.encode() not in file.read_bytes(), file.name


# ---------------------------------------------------------------- sync state


async def test_kv_get_set_replace_delete(db: Database) -> None:
    assert await syncstate.get_kv(db, syncstate.SYNC_TOKEN) is None
    await syncstate.set_kv(db, syncstate.SYNC_TOKEN, "s1")
    await syncstate.set_kv(db, syncstate.SYNC_TOKEN, "s2")
    assert await syncstate.get_kv(db, syncstate.SYNC_TOKEN) == "s2"
    assert await syncstate.delete_kv(db, syncstate.SYNC_TOKEN)
    assert not await syncstate.delete_kv(db, syncstate.SYNC_TOKEN)
    assert await syncstate.get_kv(db, syncstate.SYNC_TOKEN) is None


async def test_an_event_is_processed_once(db: Database) -> None:
    assert not await syncstate.is_processed(db, "$e1")
    async with db.transaction() as tx:
        assert await syncstate.mark_processed(tx, "$e1", "!r:x", T0)
        assert not await syncstate.mark_processed(tx, "$e1", "!r:x", T0 + 1)
    assert not await syncstate.mark_processed(db, "$e1", "!r:x", T0 + 2)
    assert await syncstate.is_processed(db, "$e1")


async def test_a_rolled_back_claim_can_be_made_again(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            assert await syncstate.mark_processed(tx, "$e1", "!r:x", T0)
            raise RuntimeError("handling failed")
    assert not await syncstate.is_processed(db, "$e1")
    assert await syncstate.mark_processed(db, "$e1", "!r:x", T0)


async def test_prune_processed_forgets_old_events(db: Database) -> None:
    await syncstate.mark_processed(db, "$old", "!r:x", T0)
    await syncstate.mark_processed(db, "$new", "!r:x", T0 + 10)
    assert await syncstate.prune_processed(db, T0 + 5) == 1
    assert not await syncstate.is_processed(db, "$old")
    assert await syncstate.is_processed(db, "$new")


# ---------------------------------------------------------------- timers


async def test_timers_schedule_pending_and_cancel(db: Database) -> None:
    pair = await _pair(db, room="!r:x")
    await timers.schedule(
        db, timer_id="late", kind="sla.remind", due_at=T0 + 50, pair_id=pair.pair_id
    )
    await timers.schedule(
        db, timer_id="soon", kind="sla.headsup", due_at=T0 + 10, payload={"step": 1}
    )
    pending = await timers.get_pending(db)
    assert [t.timer_id for t in pending] == ["soon", "late"]
    assert pending[0].payload == {"step": 1} and pending[0].pair_id is None
    assert pending[1].payload == {} and pending[1].pair_id == pair.pair_id
    await timers.schedule(db, timer_id="late", kind="sla.remind", due_at=T0 + 5)
    assert [t.timer_id for t in await timers.get_pending(db)] == ["late", "soon"]
    assert await timers.cancel(db, "late")
    assert not await timers.cancel(db, "late")
    assert await timers.get(db, "late") is None
    with pytest.raises(IntegrityError):
        await timers.schedule(db, timer_id="x", kind="k", due_at=T0, pair_id="no-such-pair")


async def test_a_timer_fires_once_even_when_scheduled_again(db: Database) -> None:
    await timers.schedule(db, timer_id="t", kind="sla.remind", due_at=T0)
    assert await timers.mark_fired(db, "t", T0 + 1)
    assert not await timers.mark_fired(db, "t", T0 + 2)
    assert not await timers.mark_fired(db, "absent", T0)
    assert await timers.get_pending(db) == []
    # Replaying the same effect (same due time) must not re-arm it ...
    await timers.schedule(db, timer_id="t", kind="sla.remind", due_at=T0, payload={"v": 2})
    fired = await timers.get(db, "t")
    assert fired is not None and fired.fired_at == T0 + 1 and fired.payload == {"v": 2}
    assert not await timers.mark_fired(db, "t", T0 + 3)
    # ... while moving it to another time arms it afresh.
    await timers.schedule(db, timer_id="t", kind="sla.remind", due_at=T0 + 60)
    assert [t.timer_id for t in await timers.get_pending(db)] == ["t"]
    assert await timers.mark_fired(db, "t", T0 + 61)
    assert await timers.prune_fired(db, T0 + 62) == 1
    assert await timers.get(db, "t") is None


async def test_timer_firing_survives_a_restart(db_url: str) -> None:
    first = await open_database(db_url)
    try:
        await timers.schedule(first, timer_id="t", kind="sla.remind", due_at=T0)
        async with first.transaction() as tx:
            assert await timers.mark_fired(tx, "t", T0)
    finally:
        await first.close()
    second = await open_database(db_url)
    try:
        assert await timers.get_pending(second) == []
        assert not await timers.mark_fired(second, "t", T0 + 1)
    finally:
        await second.close()
