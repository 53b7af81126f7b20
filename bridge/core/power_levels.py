"""Whether a room's power levels are still the ones the bot set, and the audit entry of a
restore: pure.

A server admin can grant themselves power in any room of the homeserver (Synapse's
`make_room_admin` sends the change in the name of the room's highest local member: the
bot). Kicking the admin is not enough; the grant stays in the power levels until they are
set back. Only what the bot's own content says is compared: the homeserver adds defaults of
its own to a new room's power levels, and those grant nobody anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.core.model import AppendAudit

POWER_LEVELS_RESTORED = "policy.power_levels_restored"


def _level(value: object) -> object:
    # Power levels may arrive as strings in old room versions; compare them as numbers.
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return value


def power_level_drift(current: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """What differs from `expected` in `current`: "user:@x" for a user whose level is not the
    expected one (or who is listed but should not be), the key name for a threshold, and
    "events:TYPE" for an event type's level. Empty when nothing the bot set has changed."""
    drift: list[str] = []
    users_now = current.get("users") if isinstance(current.get("users"), Mapping) else {}
    users_want = expected.get("users", {})
    assert isinstance(users_now, Mapping)
    for user in sorted(set(users_now) | set(users_want)):
        if _level(users_now.get(user)) != _level(users_want.get(user)):
            drift.append(f"user:{user}")
    for key, want in expected.items():
        if key in ("users", "events", "notifications"):
            continue
        if _level(current.get(key)) != _level(want):
            drift.append(key)
    events_now = current.get("events") if isinstance(current.get("events"), Mapping) else {}
    assert isinstance(events_now, Mapping)
    for event_type, want in expected.get("events", {}).items():
        if _level(events_now.get(event_type)) != _level(want):
            drift.append(f"events:{event_type}")
    return drift


def power_levels_restored(
    pair_id: str, room_id: str, drift: list[str], event_id: str | None
) -> AppendAudit:
    """The bot set a pair room's power levels back after someone else changed them."""
    return AppendAudit(
        pair_id=pair_id,
        action=POWER_LEVELS_RESTORED,
        actor="bot",
        details={"room_id": room_id, "changed": drift},
        event_id=event_id,
    )
