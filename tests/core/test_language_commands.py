"""`!language`: pure answers and the Invoke that stores a choice."""

from __future__ import annotations

from datetime import UTC, datetime

from bridge.core.command_set import build_commands
from bridge.core.commands import DESK_ROOM, PAIR_ROOM, CommandContext
from bridge.core.language_commands import SET_OPERATION, LanguageFacts, chosen_language
from bridge.core.model import AppendAudit, Effect, Invoke, Pair, Role, SendMessage

PAIR = Pair("p1", "@greta:hs", "@tom:hs", "!pair:hs", label="7F3A")
COMMANDS = build_commands()


def ctx(
    room_kind: str = PAIR_ROOM, role: Role = Role.PATIENT, current: str = "en"
) -> CommandContext:
    return CommandContext(
        room_kind=room_kind,
        room_id="!pair:hs" if room_kind == PAIR_ROOM else "!desk:hs",
        sender="@greta:hs" if role is Role.PATIENT else "@tom:hs",
        role=role,
        event_id="$e1",
        now=datetime(2026, 12, 1, tzinfo=UTC),
        pair=PAIR if room_kind == PAIR_ROOM else None,
        facts=(LanguageFacts(current, own=False),),
        registry=COMMANDS,
    )


def run(context: CommandContext, text: str) -> list[Effect]:
    """What the command decides, without the audit entry every command gets."""
    return [e for e in COMMANDS.dispatch(context, text) if not isinstance(e, AppendAudit)]


def test_choosing_a_language_is_an_invoke_with_the_code() -> None:
    (effect,) = run(ctx(), "!language DE")
    assert isinstance(effect, Invoke) and effect.operation == SET_OPERATION
    assert effect.params == {
        "user": "@greta:hs",
        "role": "patient",
        "language": "de",
        "event_id": "$e1",
    }
    assert effect.pair_id == "p1"
    (desk,) = run(ctx(DESK_ROOM, Role.THERAPIST), "!language es")
    assert isinstance(desk, Invoke) and desk.params["language"] == "es" and desk.pair_id is None


def test_a_bare_language_says_the_current_one_and_a_wrong_word_the_choices() -> None:
    (current,) = run(ctx(current="de"), "!language")
    assert isinstance(current, SendMessage) and current.template == "language_current"
    assert current.context["name"] == "Deutsch" and "es (español)" in current.context["choices"]
    for wrong in ("!language fr", "!language de es"):
        (usage,) = run(ctx(), wrong)
        assert isinstance(usage, SendMessage) and usage.template == "language_usage"


def test_the_consent_feature_reads_the_same_choice() -> None:
    assert chosen_language("!language es") == "es"
    assert chosen_language("!language") is None and chosen_language("!accept") is None
    assert chosen_language("!language xx") is None and chosen_language(None) is None
