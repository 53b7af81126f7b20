"""Removing a therapist (`PairManager.remove_therapist`, what `confidant therapist remove`
and any admin face call): refused while a pair of theirs is live, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from bridge.provision import PairError, PairManager, PracticeFacts
from bridge.store import Database, pairs, therapists
from bridge.store.pairs import PairStatus

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
THERAPIST = "@doc:example.org"
COLLEAGUE = "@colleague:example.org"


def manager(db: Database) -> PairManager:
    facts = PracticeFacts(
        bot_user_id="@bot:example.org",
        practice_name="Harbour",
        crisis_line=None,
        federate=False,
        inbound_domain=None,
    )
    # Removing a therapist touches only the database: no homeserver, texts or audit.
    return PairManager(db, None, None, None, None, facts)  # type: ignore[arg-type]


async def test_a_therapist_with_live_pairs_is_kept(db: Database) -> None:
    await therapists.upsert(db, THERAPIST, now=T0)
    active = await pairs.create(
        db, patient_id="@a:example.org", therapist_id=THERAPIST, now=T0, room_id="!a:example.org"
    )
    provisioning = await pairs.create(
        db, patient_id="@b:example.org", therapist_id=THERAPIST, now=T0 + 1
    )
    closed = await pairs.create(db, patient_id="@c:example.org", therapist_id=THERAPIST, now=T0)
    await pairs.set_status(db, closed.pair_id, PairStatus.REMOVED, T0 + 2)
    await pairs.create(db, patient_id="@d:example.org", therapist_id=COLLEAGUE, now=T0)

    with pytest.raises(PairError) as refused:
        await manager(db).remove_therapist(THERAPIST)
    assert str(refused.value) == (
        f"{THERAPIST} still has pairs: {active.label}, {provisioning.label}; "
        "reassign or remove them first"
    )
    assert await therapists.get(db, THERAPIST) is not None


async def test_a_therapist_whose_pairs_are_closed_is_removed(db: Database) -> None:
    await therapists.upsert(db, THERAPIST, now=T0)
    await therapists.upsert(db, COLLEAGUE, now=T0)
    closed = await pairs.create(db, patient_id="@c:example.org", therapist_id=THERAPIST, now=T0)
    await pairs.set_status(db, closed.pair_id, PairStatus.REMOVED, T0 + 1)
    # A colleague's live pair is no reason to keep this therapist.
    await pairs.create(db, patient_id="@d:example.org", therapist_id=COLLEAGUE, now=T0)

    assert await manager(db).remove_therapist(THERAPIST) is True
    assert await therapists.get(db, THERAPIST) is None
    assert await therapists.get(db, COLLEAGUE) is not None
    # The closed pair stays, for its audit and exports.
    kept = await pairs.get(db, closed.pair_id)
    assert kept is not None and kept.status is PairStatus.REMOVED
    # Nobody left to remove: not an error (the command line says "removed" either way).
    assert await manager(db).remove_therapist(THERAPIST) is False
