"""`!video` decisions: off without Jitsi, start and end as operations, who may use it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.core import video_commands
from bridge.core.command_set import build_commands
from bridge.core.commands import DESK_ROOM, PAIR_ROOM, CommandContext
from bridge.core.model import AppendAudit, Invoke, Pair, Role, SendMessage

COMMANDS = build_commands()

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
PAIR = Pair("p1", "@pat:practice", "@doc:practice", "!pair:practice", label="7F3A")
SENDERS = {Role.PATIENT: PAIR.patient_id, Role.THERAPIST: PAIR.therapist_id}
ON = (video_commands.VideoFacts(on=True, call=None),)
RUNNING = (video_commands.VideoFacts(on=True, call="confidant-x"),)


def run(text: str, facts: tuple[object, ...], role: Role = Role.PATIENT, room: str = PAIR_ROOM):
    ctx = CommandContext(
        room_kind=room,
        room_id=PAIR.room_id,
        sender=SENDERS.get(role, "@x:practice"),
        role=role,
        event_id="$ev",
        now=NOW,
        pair=PAIR if room == PAIR_ROOM else None,
        facts=facts,
    )
    effects = COMMANDS.dispatch(ctx, text)
    assert isinstance(effects[0], AppendAudit)
    return effects[1:]


def templates(effects) -> list[str]:
    return [e.template for e in effects if isinstance(e, SendMessage)]


@pytest.mark.parametrize("role", [Role.PATIENT, Role.THERAPIST])
def test_video_starts_for_both_members(role: Role) -> None:
    [invoke] = run("!video", ON, role)
    assert isinstance(invoke, Invoke)
    assert invoke.operation == video_commands.START_OPERATION
    assert invoke.pair_id == PAIR.pair_id and invoke.room_id == PAIR.room_id
    assert invoke.params == {
        "event_id": "$ev",
        "requested_by": SENDERS[role],
        "role": role.value,
    }


@pytest.mark.parametrize("text", ["!video", "!video end"])
def test_video_off_without_jitsi(text: str) -> None:
    assert templates(run(text, (video_commands.VideoFacts(on=False),))) == ["video_off"]
    # Facts missing entirely (the feature is not installed) reads as off too.
    assert templates(run(text, ())) == ["video_off"]


def test_video_end_needs_a_running_call() -> None:
    assert templates(run("!video end", ON)) == ["video_none"]
    [invoke] = run("!video END", RUNNING, Role.THERAPIST)
    assert isinstance(invoke, Invoke) and invoke.operation == video_commands.END_OPERATION


def test_video_with_other_words_explains_itself() -> None:
    assert templates(run("!video now please", ON)) == ["video_usage"]


def test_video_is_not_a_desk_command() -> None:
    assert templates(run("!video", ON, Role.THERAPIST, DESK_ROOM)) == ["command_unknown"]
