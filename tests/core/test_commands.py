"""The command registry: help from the registry, unknown and refused commands, txn ids."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.core.command_set import build_commands
from bridge.core.commands import (
    DESK_ROOM,
    PAIR_ROOM,
    CommandContext,
    CommandRegistry,
    help_command,
    reply,
)
from bridge.core.model import AppendAudit, Effect, Pair, Role, SendMessage

NOW = datetime(2024, 5, 6, 10, 0, tzinfo=UTC)
PAIR = Pair("p1", "@pat:practice", "@doc:practice", "!pair:practice", label="7F3A")
SENDERS = {Role.PATIENT: PAIR.patient_id, Role.THERAPIST: PAIR.therapist_id}


def ctx(
    role: Role = Role.PATIENT, room_kind: str = PAIR_ROOM, event_id: str = "$cmd1"
) -> CommandContext:
    in_pair = room_kind == PAIR_ROOM
    return CommandContext(
        room_kind=room_kind,
        room_id=PAIR.room_id if in_pair else "!desk:practice",
        sender=SENDERS.get(role, "@someone:practice"),
        role=role,
        event_id=event_id,
        now=NOW,
        pair=PAIR if in_pair else None,
    )


def echo(context: CommandContext, args: list[str]) -> list[Effect]:
    return [reply(context, "echo", {"args": args})]


@pytest.fixture
def registry() -> CommandRegistry:
    """A registry with the real !help and a few commands of different reach (`!help` lists
    the registry it was dispatched from)."""
    fresh = CommandRegistry()
    fresh.command(
        "help",
        "List the commands",
        roles=(Role.PATIENT, Role.THERAPIST),
        rooms=(PAIR_ROOM, DESK_ROOM),
    )(help_command)
    fresh.command("video", "Start a video call", usage="[now]")(echo)
    fresh.command("export", "Export the conversation", roles=(Role.THERAPIST,))(echo)
    fresh.command("due", "What is waiting", roles=(Role.THERAPIST,), rooms=(DESK_ROOM,))(echo)
    return fresh


def audits(effects: list[Effect]) -> list[AppendAudit]:
    return [e for e in effects if isinstance(e, AppendAudit)]


def messages(effects: list[Effect]) -> list[SendMessage]:
    return [e for e in effects if isinstance(e, SendMessage)]


def listed(effects: list[Effect]) -> list[str]:
    (msg,) = messages(effects)
    assert msg.template == "help"
    return [c["name"] for c in msg.context["commands"]]


@pytest.mark.parametrize(
    ("role", "room_kind", "expected"),
    [
        (Role.PATIENT, PAIR_ROOM, ["help", "video"]),
        (Role.THERAPIST, PAIR_ROOM, ["export", "help", "video"]),
        (Role.THERAPIST, DESK_ROOM, ["due", "help"]),
    ],
)
def test_help_lists_only_what_this_role_may_use_here(
    registry: CommandRegistry, role: Role, room_kind: str, expected: list[str]
) -> None:
    effects = registry.dispatch(ctx(role, room_kind), "!help")
    assert listed(effects) == expected
    (audit,) = audits(effects)
    assert audit.outcome == "ok" and audit.details["command"] == "help"


def test_help_carries_usage_and_summary(registry: CommandRegistry) -> None:
    (msg,) = messages(registry.dispatch(ctx(), "!help"))
    video = next(c for c in msg.context["commands"] if c["name"] == "video")
    assert video == {"name": "video", "usage": "[now]", "summary": "Start a video call"}
    assert msg.context["room_kind"] == PAIR_ROOM


def test_unknown_command_is_answered_and_audited(registry: CommandRegistry) -> None:
    effects = registry.dispatch(ctx(event_id="$e9"), "!nonsense now")
    (audit,) = audits(effects)
    (msg,) = messages(effects)
    assert audit.outcome == "unknown"
    assert audit.action == "command"
    assert audit.actor == PAIR.patient_id
    assert audit.pair_id == PAIR.pair_id
    assert audit.event_id == "$e9"
    # What the patient typed stays out of the (unencrypted) audit details.
    assert audit.details == {"command": "?", "role": "patient", "room": PAIR_ROOM}
    assert msg.template == "command_unknown"
    assert msg.context == {"name": "nonsense"}
    assert msg.room_id == PAIR.room_id


def test_command_of_another_room_kind_counts_as_unknown(registry: CommandRegistry) -> None:
    effects = registry.dispatch(ctx(Role.THERAPIST), "!due")
    assert [a.outcome for a in audits(effects)] == ["unknown"]
    assert [m.template for m in messages(effects)] == ["command_unknown"]


def test_therapist_command_is_refused_to_the_patient(registry: CommandRegistry) -> None:
    effects = registry.dispatch(ctx(Role.PATIENT, event_id="$e2"), "!export")
    (audit,) = audits(effects)
    (msg,) = messages(effects)
    assert audit.outcome == "refused"
    assert audit.details == {"command": "export", "role": "patient", "room": PAIR_ROOM}
    assert msg.template == "command_refused"
    assert msg.context == {"name": "export", "role": "patient"}
    # The handler did not run.
    assert all(m.template != "echo" for m in messages(effects))


def test_allowed_command_runs_with_its_arguments(registry: CommandRegistry) -> None:
    effects = registry.dispatch(ctx(Role.THERAPIST), '!EXPORT "from monday" html')
    assert [a.outcome for a in audits(effects)] == ["ok"]
    (msg,) = messages(effects)
    assert msg.template == "echo"
    assert msg.context == {"args": ["from monday", "html"]}


def test_unbalanced_quotes_still_dispatch(registry: CommandRegistry) -> None:
    (msg,) = messages(registry.dispatch(ctx(), "!video 'now"))
    assert msg.context == {"args": ["'now"]}


def test_empty_command_does_nothing(registry: CommandRegistry) -> None:
    assert registry.dispatch(ctx(), "!") == []


def test_registering_a_name_twice_raises(registry: CommandRegistry) -> None:
    with pytest.raises(ValueError, match="!video"):
        registry.command("video", "again")(echo)
    assert registry.get("video") is not None


def test_reply_txn_ids_are_stable_and_per_event(registry: CommandRegistry) -> None:
    first = messages(registry.dispatch(ctx(event_id="$a"), "!help"))
    again = messages(registry.dispatch(ctx(event_id="$a"), "!help"))
    other = messages(registry.dispatch(ctx(event_id="$b"), "!help"))
    assert first[0].txn_id == again[0].txn_id == "reply.help.$a"
    assert other[0].txn_id != first[0].txn_id
    unknown = messages(registry.dispatch(ctx(event_id="$a"), "!what"))
    assert unknown[0].txn_id == "reply.command_unknown.$a"


def test_desk_reply_has_no_pair(registry: CommandRegistry) -> None:
    effects = registry.dispatch(ctx(Role.THERAPIST, DESK_ROOM), "!help")
    assert audits(effects)[0].pair_id is None
    (msg,) = messages(effects)
    assert msg.pair_id is None and msg.room_id == "!desk:practice"


def test_the_shipped_registry_has_help_everywhere() -> None:
    SHIPPED = build_commands()
    for room_kind in (PAIR_ROOM, DESK_ROOM):
        for role in (Role.PATIENT, Role.THERAPIST):
            assert "help" in [c.name for c in SHIPPED.available(room_kind, role)]
    assert SHIPPED.available(PAIR_ROOM, Role.OUTSIDER) == []
    assert SHIPPED.available(PAIR_ROOM, Role.BOT) == []
