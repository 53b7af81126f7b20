"""What the bot decides about one pair-room event: audit, membership policy, commands."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bridge.core.command_set import build_commands
from bridge.core.model import (
    AppendAudit,
    Effect,
    Kind,
    Pair,
    Role,
    RoomAction,
    RoomEvent,
    SendMessage,
)
from bridge.core.pairroom import (
    UNDECRYPTABLE_NOTICE_WINDOW,
    audit_for_event,
    decide_pair_event,
    undecryptable_notice_txn,
)

COMMANDS = build_commands()

BOT = "@confidant:practice"
OUTSIDER = "@mallory:practice"
DESK = "!desk:practice"
PAIR = Pair("p1", "@pat:practice", "@doc:practice", "!pair:practice", label="7F3A")
SENT = datetime(2024, 5, 6, 9, 59, 58, 250_000, tzinfo=UTC)
NOW = SENT + timedelta(seconds=2)
DIGEST = "ab" * 32


def event(
    kind: Kind,
    sender: str,
    role: Role,
    *,
    event_id: str = "$ev1",
    command: str | None = None,
    membership: str | None = None,
    state_key: str | None = None,
    relates_to: str | None = None,
) -> RoomEvent:
    return RoomEvent(
        pair_id=PAIR.pair_id,
        room_id=PAIR.room_id,
        event_id=event_id,
        sender=sender,
        role=role,
        kind=kind,
        origin_ts=SENT,
        seen_at=NOW,
        content_sha256=DIGEST,
        command=command,
        relates_to=relates_to,
        membership=membership,
        state_key=state_key,
    )


def member(sender: str, role: Role, target: str, membership: str) -> RoomEvent:
    return event(Kind.MEMBERSHIP, sender, role, membership=membership, state_key=target)


def audits(effects: list[Effect]) -> list[AppendAudit]:
    return [e for e in effects if isinstance(e, AppendAudit)]


def room_audits(effects: list[Effect]) -> list[AppendAudit]:
    return [a for a in audits(effects) if a.action.startswith("room.")]


def messages(effects: list[Effect]) -> list[SendMessage]:
    return [e for e in effects if isinstance(e, SendMessage)]


def actions(effects: list[Effect]) -> list[RoomAction]:
    return [e for e in effects if isinstance(e, RoomAction)]


EVERY_EVENT = [
    event(Kind.TEXT, PAIR.patient_id, Role.PATIENT),
    event(Kind.VOICE, PAIR.patient_id, Role.PATIENT),
    event(Kind.TEXT, PAIR.therapist_id, Role.THERAPIST, command="!help"),
    event(Kind.TEXT, PAIR.patient_id, Role.PATIENT, command="!nonsense"),
    event(Kind.EDIT, PAIR.therapist_id, Role.THERAPIST, relates_to="$orig"),
    event(Kind.REDACTION, PAIR.patient_id, Role.PATIENT, relates_to="$orig"),
    event(Kind.REACTION, PAIR.patient_id, Role.PATIENT, relates_to="$orig"),
    event(Kind.NOTICE, BOT, Role.BOT),
    event(Kind.STATE, BOT, Role.BOT, state_key=""),
    event(Kind.UNDECRYPTABLE, PAIR.patient_id, Role.PATIENT),
    event(Kind.TEXT, OUTSIDER, Role.OUTSIDER),
    member(PAIR.patient_id, Role.PATIENT, PAIR.patient_id, "join"),
    member(BOT, Role.BOT, BOT, "join"),
    member(BOT, Role.BOT, OUTSIDER, "invite"),
    member(OUTSIDER, Role.OUTSIDER, OUTSIDER, "join"),
]


@pytest.mark.parametrize(
    "ev", EVERY_EVENT, ids=[f"{e.kind.value}-{e.role.value}" for e in EVERY_EVENT]
)
def test_every_event_is_audited_once_with_role_kind_and_hash(ev: RoomEvent) -> None:
    effects = decide_pair_event(
        PAIR, ev, commands=COMMANDS, desk_room_id=DESK, content=b"sealed later"
    )
    (entry,) = room_audits(effects)
    assert entry.action == f"room.{ev.kind.value}"
    assert entry.pair_id == PAIR.pair_id
    assert entry.event_id == ev.event_id
    assert entry.actor == ev.sender
    assert entry.details["role"] == ev.role.value
    assert entry.details["kind"] == ev.kind.value
    assert entry.details["content_sha256"] == DIGEST
    assert entry.details["origin_ts"] == 1714989598250
    assert entry.content == b"sealed later"
    # Nothing else the core adds is attributed to this event as a second "room." entry.
    assert effects[0] is entry


def test_audit_details_carry_relation_membership_and_state_key() -> None:
    edit = audit_for_event(
        event(Kind.EDIT, PAIR.patient_id, Role.PATIENT, relates_to="$orig"), None
    )
    assert edit.details["relates_to"] == "$orig"
    assert "membership" not in edit.details and "state_key" not in edit.details
    join = audit_for_event(member(PAIR.patient_id, Role.PATIENT, PAIR.patient_id, "join"), None)
    assert join.details["membership"] == "join"
    assert join.details["state_key"] == PAIR.patient_id
    state = audit_for_event(event(Kind.STATE, BOT, Role.BOT, state_key=""), None)
    assert state.details["state_key"] == ""
    text = audit_for_event(event(Kind.TEXT, PAIR.patient_id, Role.PATIENT), None)
    assert set(text.details) == {"role", "kind", "origin_ts", "content_sha256"}
    assert text.outcome == "ok"


@pytest.mark.parametrize(
    ("sender", "role", "membership"),
    [
        (OUTSIDER, Role.OUTSIDER, "join"),
        (BOT, Role.BOT, "invite"),
        (PAIR.therapist_id, Role.THERAPIST, "invite"),
        (OUTSIDER, Role.OUTSIDER, "knock"),
    ],
)
def test_outsider_in_the_room_is_kicked_audited_and_reported_without_content(
    sender: str, role: Role, membership: str
) -> None:
    ev = member(sender, role, OUTSIDER, membership)
    effects = decide_pair_event(PAIR, ev, commands=COMMANDS, desk_room_id=DESK, content=b"{}")
    assert actions(effects) == [
        RoomAction(PAIR.room_id, "kick", OUTSIDER, "not a member of this conversation")
    ]
    (policy,) = [a for a in audits(effects) if a.action == "policy.outsider_removed"]
    assert policy.pair_id == PAIR.pair_id
    assert policy.event_id == ev.event_id
    assert policy.details == {"user": OUTSIDER, "membership": membership}
    assert policy.content is None
    (alert,) = messages(effects)
    assert alert.room_id == DESK
    assert alert.template == "outsider_alert"
    assert alert.context == {"pair_label": "7F3A", "room_id": PAIR.room_id, "user": OUTSIDER}
    assert alert.txn_id == f"outsider.{ev.event_id}"
    assert alert.pair_id == PAIR.pair_id


def test_outsider_is_kicked_even_without_a_desk_room() -> None:
    effects = decide_pair_event(
        PAIR,
        member(OUTSIDER, Role.OUTSIDER, OUTSIDER, "join"),
        commands=COMMANDS,
        desk_room_id=None,
    )
    assert [a.action for a in actions(effects)] == ["kick"]
    assert messages(effects) == []


@pytest.mark.parametrize(
    "ev",
    [
        member(PAIR.patient_id, Role.PATIENT, PAIR.patient_id, "join"),
        member(PAIR.therapist_id, Role.THERAPIST, PAIR.therapist_id, "join"),
        member(BOT, Role.BOT, PAIR.patient_id, "invite"),
        member(BOT, Role.BOT, PAIR.therapist_id, "invite"),
        member(PAIR.patient_id, Role.PATIENT, PAIR.patient_id, "leave"),
        member(BOT, Role.BOT, BOT, "join"),
        member(BOT, Role.BOT, BOT, "leave"),
        member(BOT, Role.BOT, OUTSIDER, "leave"),  # the kick itself
        member(OUTSIDER, Role.OUTSIDER, OUTSIDER, "leave"),
        member(BOT, Role.BOT, OUTSIDER, "ban"),
    ],
    ids=[
        "patient-join",
        "therapist-join",
        "patient-invited",
        "therapist-invited",
        "patient-leave",
        "bot-join",
        "bot-leave",
        "outsider-kicked",
        "outsider-left",
        "outsider-banned",
    ],
)
def test_membership_that_needs_no_action(ev: RoomEvent) -> None:
    effects = decide_pair_event(PAIR, ev, commands=COMMANDS, desk_room_id=DESK)
    assert effects == [audit_for_event(ev, None)]


def test_undecryptable_fails_the_audit_and_tells_the_desk() -> None:
    ev = event(Kind.UNDECRYPTABLE, PAIR.patient_id, Role.PATIENT, event_id="$enc")
    effects = decide_pair_event(PAIR, ev, commands=COMMANDS, desk_room_id=DESK, content=None)
    (entry,) = audits(effects)
    assert entry.action == "room.undecryptable"
    assert entry.outcome == "failed"
    assert entry.content is None
    (notice,) = messages(effects)
    assert notice.room_id == DESK
    assert notice.template == "undecryptable"
    assert notice.context == {"pair_label": "7F3A", "room_id": PAIR.room_id}
    assert notice.txn_id == undecryptable_notice_txn(PAIR.pair_id, NOW)
    assert actions(effects) == []


def undecryptable_at(seen_at: datetime, n: int, pair: Pair = PAIR) -> RoomEvent:
    ev = event(Kind.UNDECRYPTABLE, pair.patient_id, Role.PATIENT, event_id=f"$enc{n}")
    return replace(ev, pair_id=pair.pair_id, room_id=pair.room_id, seen_at=seen_at)


def queued_notices(burst: list[tuple[Pair, RoomEvent]]) -> dict[str, SendMessage]:
    """The desk notices an outbox would hold: it ignores a txn id it has queued before."""
    queued: dict[str, SendMessage] = {}
    for pair, ev in burst:
        for msg in messages(decide_pair_event(pair, ev, commands=COMMANDS, desk_room_id=DESK)):
            queued.setdefault(msg.txn_id, msg)
    return queued


def test_a_burst_of_undecryptable_events_gives_one_desk_notice() -> None:
    start = datetime(2024, 5, 6, 10, 0, 5, tzinfo=UTC)
    burst = [(PAIR, undecryptable_at(start + timedelta(seconds=i * 20), i)) for i in range(42)]
    effects = [decide_pair_event(PAIR, ev, commands=COMMANDS, desk_room_id=DESK) for _, ev in burst]
    # Every event is audited as a failure; the desk is told once.
    assert [len(room_audits(e)) for e in effects] == [1] * 42
    assert all(room_audits(e)[0].outcome == "failed" for e in effects)
    (notice,) = queued_notices(burst).values()
    assert notice.room_id == DESK and notice.template == "undecryptable"
    assert notice.context == {"pair_label": "7F3A", "room_id": PAIR.room_id}


def test_a_later_burst_gives_another_notice() -> None:
    first = datetime(2024, 5, 6, 10, 0, 5, tzinfo=UTC)
    later = first + UNDECRYPTABLE_NOTICE_WINDOW
    burst = [(PAIR, undecryptable_at(first + timedelta(seconds=i), i)) for i in range(5)]
    burst += [(PAIR, undecryptable_at(later + timedelta(seconds=i), 10 + i)) for i in range(5)]
    assert len(queued_notices(burst)) == 2


def test_each_pair_in_a_burst_gets_its_own_notice() -> None:
    other = Pair("p2", "@pat2:practice", "@doc:practice", "!pair2:practice", label="9C1D")
    burst = [(PAIR, undecryptable_at(NOW, 1)), (other, undecryptable_at(NOW, 2, other))]
    notices = queued_notices(burst)
    assert sorted(n.context["pair_label"] for n in notices.values()) == ["7F3A", "9C1D"]


def test_one_notice_window_is_one_bucket_of_the_clock() -> None:
    window_start = datetime(2024, 5, 6, 10, 0, tzinfo=UTC)
    same = {
        undecryptable_notice_txn(PAIR.pair_id, window_start + timedelta(seconds=s))
        for s in (0, 1, 1800, 3599)
    }
    assert len(same) == 1
    assert undecryptable_notice_txn(PAIR.pair_id, window_start - timedelta(seconds=1)) not in same
    assert undecryptable_notice_txn(PAIR.pair_id, window_start + timedelta(hours=1)) not in same


def test_undecryptable_without_desk_is_only_audited() -> None:
    ev = event(Kind.UNDECRYPTABLE, PAIR.patient_id, Role.PATIENT)
    assert decide_pair_event(PAIR, ev, commands=COMMANDS, desk_room_id=None) == [
        audit_for_event(ev, None)
    ]


def test_member_command_is_dispatched_with_stable_reply() -> None:
    ev = event(Kind.TEXT, PAIR.patient_id, Role.PATIENT, event_id="$c1", command="!help")
    effects = decide_pair_event(PAIR, ev, commands=COMMANDS, desk_room_id=DESK)
    command_audits = [a for a in audits(effects) if a.action == "command"]
    assert [a.details["command"] for a in command_audits] == ["help"]
    (msg,) = messages(effects)
    assert msg.room_id == PAIR.room_id and msg.template == "help"
    assert msg.txn_id == "reply.help.$c1"


@pytest.mark.parametrize(
    ("sender", "role"), [(BOT, Role.BOT), (OUTSIDER, Role.OUTSIDER)], ids=["bot-echo", "outsider"]
)
def test_commands_from_the_bot_or_an_outsider_are_never_dispatched(sender: str, role: Role) -> None:
    ev = event(Kind.TEXT, sender, role, command="!help")
    effects = decide_pair_event(PAIR, ev, commands=COMMANDS, desk_room_id=DESK)
    assert effects == [audit_for_event(ev, None)]


def test_plain_message_only_audited() -> None:
    ev = event(Kind.TEXT, PAIR.therapist_id, Role.THERAPIST)
    assert decide_pair_event(PAIR, ev, commands=COMMANDS, desk_room_id=DESK) == [
        audit_for_event(ev, None)
    ]


def test_decision_is_pure() -> None:
    ev = member(OUTSIDER, Role.OUTSIDER, OUTSIDER, "join")
    first = decide_pair_event(PAIR, ev, commands=COMMANDS, desk_room_id=DESK)
    assert decide_pair_event(PAIR, ev, commands=COMMANDS, desk_room_id=DESK) == first
    assert (
        decide_pair_event(replace(PAIR), replace(ev), commands=COMMANDS, desk_room_id=DESK) == first
    )
