"""Pair rooms keep the power levels the bot gave them.

A change to a pair room's power levels that the bot did not make (a server admin's
`make_room_admin`, sent in the bot's name) is set back to the pair room's own levels
(`bridge.provision.power_levels`) and audited. The check runs after each power-levels event
(and after any state event without a state key whose type is not known), so a new room's
other initial state events cost no look at the homeserver.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bridge import hooks
from bridge.core.model import Effect, Invoke, Kind, Pair, RoomEvent
from bridge.core.power_levels import power_level_drift, power_levels_restored
from bridge.store import pairs
from bridge.store.base import Executor

if TYPE_CHECKING:
    from bridge.host import Host

log = logging.getLogger(__name__)

CHECK_OPERATION = "pairs.power_levels"
POWER_LEVELS = "m.room.power_levels"


class RoomPowers:
    """Sets a pair room's power levels back when someone else changed them."""

    def __init__(self, app: Host) -> None:
        self.app = app

    @hooks.pair_hook
    async def on_pair_event(self, tx: Executor, pair: Pair, ev: RoomEvent) -> list[Effect]:
        if ev.kind is not Kind.STATE or ev.state_key != "":
            return []
        if ev.event_type not in (None, POWER_LEVELS):
            return []
        return [
            Invoke(
                CHECK_OPERATION,
                pair.room_id,
                {"event_id": ev.event_id, "sender": ev.sender},
                pair_id=pair.pair_id,
            )
        ]

    @hooks.on_invoke(CHECK_OPERATION)
    async def check(self, effect: Invoke) -> None:
        """Compare the room's power levels with its own; put them back if they differ."""
        parts = self.app.parts
        if effect.pair_id is None:
            return
        record = await pairs.get(parts.db, effect.pair_id)
        if record is None or record.room_id != effect.room_id:
            return
        expected = await parts.pairs.room_power_levels(record)
        current = await parts.rest.get_state(effect.room_id, POWER_LEVELS)
        drift = power_level_drift(current, expected)
        if not drift:
            return
        await parts.rest.put_state(effect.room_id, POWER_LEVELS, "", expected)
        entry = power_levels_restored(
            record.pair_id, effect.room_id, drift, str(effect.params.get("event_id") or "")
        )
        async with parts.db.transaction() as tx:
            await parts.audit.append(tx, entry, self.app.service.clock())
        log.warning(
            "pair room power levels set back",
            extra={"pair_id": record.pair_id, "changed": len(drift)},
        )


def install_room_powers(app: Host) -> None:
    """Keep every pair room's power levels the bot's own (installed with onboarding)."""
    if app.service.handles_invoke(CHECK_OPERATION):
        return  # installed already
    app.service.install(RoomPowers(app))
