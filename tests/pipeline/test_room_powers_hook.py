"""Which pair-room events make the bot look at the room's power levels: only their own."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest

from bridge.core.model import Invoke, Kind, Pair, Role, RoomEvent
from bridge.features.onboarding.room_powers import CHECK_OPERATION, RoomPowers

PAIR = Pair("p1", "@pat:hs", "@ther:hs", "!room")
T = datetime(2026, 12, 1, tzinfo=UTC)


def state_event(event_type: str | None, state_key: str = "") -> RoomEvent:
    return RoomEvent(
        pair_id="p1",
        room_id="!room",
        event_id="$e",
        sender="@bot:hs",
        role=Role.BOT,
        kind=Kind.STATE,
        origin_ts=T,
        seen_at=T,
        content_sha256="0" * 64,
        state_key=state_key,
        event_type=event_type,
    )


@pytest.mark.parametrize(
    ("event_type", "checks"),
    [
        ("m.room.power_levels", True),
        (None, True),  # type unknown: looked at, as before
        ("m.room.name", False),
        ("m.room.encryption", False),
        ("m.room.history_visibility", False),
    ],
)
async def test_only_power_level_changes_are_checked(event_type: str | None, checks: bool) -> None:
    hook = RoomPowers(cast(Any, None))
    effects = await hook.on_pair_event(cast(Any, None), PAIR, state_event(event_type))
    assert [e.operation for e in effects if isinstance(e, Invoke)] == (
        [CHECK_OPERATION] if checks else []
    )


async def test_state_with_a_key_is_not_checked() -> None:
    hook = RoomPowers(cast(Any, None))
    ev = state_event("m.room.power_levels", state_key="@someone:hs")
    assert await hook.on_pair_event(cast(Any, None), PAIR, ev) == []
