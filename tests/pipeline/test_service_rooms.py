"""Which room an event belongs to: one indexed look by room id, never a reload of every pair.

A new pair's room shows its first events before its row names it, and a practice has
thousands of pairs: each such event reloading every pair made adding a pair cost more as
the practice grew.
"""

from __future__ import annotations

from typing import Any, NoReturn

import pytest

from bridge.adapters.render import Renderer
from bridge.audit.log import AuditLog
from bridge.sealing import Sealer
from bridge.service import Service
from bridge.store import Database, pairs, therapists
from bridge.store.pairs import PairStatus

SEALER = Sealer({"k1": bytes(range(32))}, "k1")


def service(db: Database) -> Service:
    return Service(
        db=db,
        rest=None,  # type: ignore[arg-type]  # nothing here acts on rooms
        renderer=Renderer(),
        sealer=SEALER,
        audit=AuditLog(db, SEALER, bytes(range(32, 64))),
        bot_user_id="@bot:hs",
    )


async def test_rooms_made_after_the_start_are_found_without_a_reload(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = service(db)
    await svc.refresh_rooms()

    def no_reload() -> NoReturn:
        raise AssertionError("every pair was reloaded for one event")

    monkeypatch.setattr(svc, "refresh_rooms", no_reload)
    record = await pairs.create(db, patient_id="@p:hs", therapist_id="@t:hs", now=0)
    await pairs.set_room(db, record.pair_id, "!pair")
    await therapists.upsert(db, "@t:hs", now=0, email=None)
    await therapists.set_desk_room(db, "@t:hs", "!desk")

    found, desk = await svc._room("!pair")
    assert found is not None and found.pair_id == record.pair_id and desk is None
    assert await svc._room("!desk") == (None, "@t:hs")
    assert await svc._room("!someone-elses") == (None, None)


async def test_a_room_still_being_provisioned_is_not_yet_a_pair_room(db: Database) -> None:
    svc = service(db)
    record = await pairs.create(db, patient_id="@p:hs", therapist_id="@t:hs", now=0)
    await pairs.set_room(db, record.pair_id, "!pair")
    await pairs.set_status(db, record.pair_id, PairStatus.PROVISIONING, 0)
    assert await svc._room("!pair") == (None, None)
    await pairs.set_status(db, record.pair_id, PairStatus.ACTIVE, 0)
    found: Any
    found, _ = await svc._room("!pair")
    assert found is not None and found.status is PairStatus.ACTIVE
