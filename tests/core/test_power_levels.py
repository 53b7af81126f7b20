"""Power-level drift: what of the bot's own levels a pair room no longer has."""

from __future__ import annotations

import copy

from bridge.core.power_levels import power_level_drift
from bridge.provision import power_levels

BOT, THERAPIST, ADMIN = "@bot:hs", "@t:hs", "@admin:hs"


def test_the_bots_own_levels_and_homeserver_defaults_are_no_drift() -> None:
    expected = power_levels(BOT, THERAPIST)
    current = copy.deepcopy(expected)
    current["events"]["m.room.canonical_alias"] = 50  # a default the homeserver adds
    current["historical"] = 100
    assert power_level_drift(current, expected) == []
    as_text = {**copy.deepcopy(expected), "kick": "100"}  # old room versions' strings
    assert power_level_drift(as_text, expected) == []


def test_grants_and_lowered_thresholds_are_drift() -> None:
    expected = power_levels(BOT, THERAPIST, bot_is_creator=True)
    granted = copy.deepcopy(expected)
    granted["users"][ADMIN] = 100
    assert power_level_drift(granted, expected) == [f"user:{ADMIN}"]
    lowered = copy.deepcopy(expected)
    lowered["users"].pop(THERAPIST)
    lowered["invite"] = 0
    lowered["events"]["m.room.encryption"] = 0
    assert power_level_drift(lowered, expected) == [
        f"user:{THERAPIST}",
        "invite",
        "events:m.room.encryption",
    ]
    # Power levels emptied (or malformed) are drift everywhere the bot set something.
    emptied = power_level_drift({"users": None, "events": None}, expected)
    assert f"user:{THERAPIST}" in emptied and "kick" in emptied
    assert "events:im.vector.modular.widgets" in emptied
