"""The createRoom bodies of pair and desk rooms: private, encrypted, and the bot holds power."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.adapters.render import Renderer
from bridge.provision import (
    DESK_STATE_TYPE,
    PAIR_STATE_TYPE,
    WIDGET_EVENT,
    desk_room_body,
    display_name,
    pair_room_body,
    power_levels,
)

BOT = "@confidant:practice"
PATIENT = "@jane.patient:practice"
THERAPIST = "@dr.okafor:practice"
PATIENT_NAME = "Jane Patient"

#: Everything a room's power levels can gate, apart from ordinary messages.
PRIVILEGED = ("state_default", "invite", "kick", "ban", "redact")


def state_of(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """initial_state by event type (every one of ours has the empty state key)."""
    events = body["initial_state"]
    assert all(ev["state_key"] == "" for ev in events)
    types = [ev["type"] for ev in events]
    assert len(types) == len(set(types)), "an initial state event is given twice"
    return {ev["type"]: ev["content"] for ev in events}


def pair_body(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "bot": BOT,
        "patient": PATIENT,
        "therapist": THERAPIST,
        "name": "Therapy · dr.okafor · 7F3A",
        "pair_id": "pair-1",
        "federate": False,
    }
    args.update(overrides)
    return pair_room_body(**args)


def desk_body(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "bot": BOT,
        "therapist": THERAPIST,
        "name": "Desk · Harbour",
        "federate": False,
    }
    args.update(overrides)
    return desk_room_body(**args)


BODIES = {"pair": pair_body, "desk": desk_body}


@pytest.mark.parametrize("kind", sorted(BODIES))
@pytest.mark.parametrize("bot_is_creator", [False, True])
def test_rooms_are_encrypted_private_and_invite_only(kind: str, bot_is_creator: bool) -> None:
    body = BODIES[kind](bot_is_creator=bot_is_creator)
    state = state_of(body)
    assert state["m.room.encryption"] == {"algorithm": "m.megolm.v1.aes-sha2"}
    assert state["m.room.history_visibility"] == {"history_visibility": "invited"}
    assert state["m.room.guest_access"] == {"guest_access": "forbidden"}
    # The private_chat preset makes the room invite-only; an explicit join rule may only agree.
    assert body["preset"] == "private_chat"
    assert state.get("m.room.join_rules", {"join_rule": "invite"}) == {"join_rule": "invite"}
    assert body["visibility"] == "private"
    assert body["is_direct"] is False
    assert "room_alias_name" not in body and "topic" not in body


def test_pair_room_invites_both_and_names_its_pair() -> None:
    body = pair_body()
    state = state_of(body)
    assert state["m.room.join_rules"] == {"join_rule": "invite"}
    assert sorted(body["invite"]) == sorted([PATIENT, THERAPIST])
    assert state[PAIR_STATE_TYPE] == {"pair_id": "pair-1"}
    assert body["name"] == "Therapy · dr.okafor · 7F3A"


def test_desk_room_invites_only_the_therapist() -> None:
    body = desk_body()
    assert body["invite"] == [THERAPIST]
    assert state_of(body)[DESK_STATE_TYPE] == {"therapist": THERAPIST}


@pytest.mark.parametrize("kind", sorted(BODIES))
@pytest.mark.parametrize(("federate", "expected"), [(False, False), (True, True)])
def test_federation_follows_the_config(kind: str, federate: bool, expected: bool) -> None:
    assert BODIES[kind](federate=federate)["creation_content"] == {"m.federate": expected}


@pytest.mark.parametrize("kind", sorted(BODIES))
def test_bodies_for_creator_power_leave_the_bot_out_of_users(kind: str) -> None:
    classic = BODIES[kind](bot_is_creator=False)["power_level_content_override"]
    creator = BODIES[kind](bot_is_creator=True)["power_level_content_override"]
    assert classic["users"][BOT] == 100
    assert BOT not in creator["users"]


@pytest.mark.parametrize("bot_is_creator", [False, True])
@pytest.mark.parametrize("read_only", [False, True])
def test_only_the_bot_holds_privileged_power(bot_is_creator: bool, read_only: bool) -> None:
    levels = power_levels(BOT, THERAPIST, read_only=read_only, bot_is_creator=bot_is_creator)
    users = levels["users"]
    assert levels["users_default"] == 0
    if bot_is_creator:
        # Room version 12+: the creator has unlimited power and must not be listed.
        assert users == {THERAPIST: 50}
    else:
        assert users == {BOT: 100, THERAPIST: 50}
    for key in PRIVILEGED:
        assert levels[key] == 100, key
        assert levels[key] > users[THERAPIST] >= levels["users_default"]
    for event_type in (
        "m.room.power_levels",
        "m.room.encryption",
        "m.room.history_visibility",
        "m.room.name",
        "m.room.topic",
        "m.room.avatar",
        "m.room.server_acl",
        "m.room.tombstone",
    ):
        assert levels["events"][event_type] == 100, event_type
    assert levels["notifications"] == {"room": 100}


def test_the_therapist_may_add_video_widgets_and_nothing_else_privileged() -> None:
    levels = power_levels(BOT, THERAPIST)
    below = {t: v for t, v in levels["events"].items() if v < 100}
    assert below == {WIDGET_EVENT: 50, "io.element.widgets.layout": 50}
    assert levels["users"][THERAPIST] == 50


def test_a_read_only_room_takes_widgets_away_too() -> None:
    closed = power_levels(BOT, THERAPIST, read_only=True)
    assert all(level == 100 for level in closed["events"].values())


def test_members_may_talk_unless_the_room_is_read_only() -> None:
    assert power_levels(BOT, THERAPIST)["events_default"] == 0
    closed = power_levels(BOT, THERAPIST, read_only=True)
    assert closed["events_default"] == 100
    assert closed["events_default"] > closed["users"][THERAPIST]


def test_pair_body_uses_these_power_levels() -> None:
    for creator in (False, True):
        assert pair_body(bot_is_creator=creator)["power_level_content_override"] == (
            power_levels(BOT, THERAPIST, bot_is_creator=creator)
        )


def test_desk_room_power_keeps_the_therapist_unprivileged() -> None:
    levels = desk_body()["power_level_content_override"]
    assert levels["users"] == {BOT: 100}
    assert levels["users_default"] == 0 and levels["events_default"] == 0
    for key in PRIVILEGED:
        assert levels[key] == 100, key


def test_room_name_from_the_template_carries_no_patient_name() -> None:
    renderer = Renderer()
    name = renderer.text(
        "room_name", {"therapist_name": display_name(THERAPIST), "pair_label": "7F3A"}
    )
    assert name == "Therapy · dr.okafor · 7F3A"
    body = pair_body(name=name)
    assert body["name"] == name
    for part in (PATIENT, display_name(PATIENT), PATIENT_NAME, "jane", "Jane"):
        assert part not in body["name"]


def test_display_name_is_the_local_part() -> None:
    assert display_name("@dr.okafor:practice.example") == "dr.okafor"
    assert display_name("@x:y:8448") == "x"
