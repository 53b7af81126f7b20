"""`!language` in a pair room or a desk room: the language the bot writes to you in.

Pure: the answer to a bare `!language` or a wrong word comes at once; choosing one is an
`Invoke` the language feature runs (it stores the choice, audits it and confirms in the new
language). Commands stay the same words in every language.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.core.commands import DESK_ROOM, PAIR_ROOM, CommandContext, command, reply
from bridge.core.language import LANGUAGES, NATIVE_NAMES, parse_language
from bridge.core.model import Effect, Invoke, Role

LANGUAGE_COMMAND = "language"
SET_OPERATION = "language.set"


@dataclass(frozen=True, slots=True)
class LanguageFacts:
    """The sender's language now: their own, else the practice's."""

    current: str
    own: bool


def choices() -> str:
    """The languages one can choose, as `!language` lists them: "en (English), de (...)"."""
    return ", ".join(f"{code} ({NATIVE_NAMES[code]})" for code in LANGUAGES)


def chosen_language(command_text: str | None) -> str | None:
    """The language a `!language CODE` message chooses, None for anything else."""
    words = (command_text or "").lstrip("!").split()
    if len(words) != 2 or words[0].lower() != LANGUAGE_COMMAND:
        return None
    return parse_language(words[1])


@command(
    LANGUAGE_COMMAND,
    "Choose the language the assistant writes to you in (the commands stay the same)",
    usage="[en|de|es]",
    roles=(Role.PATIENT, Role.THERAPIST),
    rooms=(PAIR_ROOM, DESK_ROOM),
)
def language_command(ctx: CommandContext, args: list[str]) -> list[Effect]:
    facts = ctx.fact(LanguageFacts)
    if not args:
        current = facts.current if facts is not None else LANGUAGES[0]
        context = {"language": current, "name": NATIVE_NAMES[current], "choices": choices()}
        return [reply(ctx, "language_current", context)]
    code = parse_language(args[0]) if len(args) == 1 else None
    if code is None:
        return [reply(ctx, "language_usage", {"choices": choices()})]
    params = {
        "user": ctx.sender,
        "role": ctx.role.value,
        "language": code,
        "event_id": ctx.event_id,
    }
    pair_id = ctx.pair.pair_id if ctx.pair is not None else None
    return [Invoke(SET_OPERATION, ctx.room_id, params, pair_id=pair_id)]


#: The commands of this module, for `bridge.core.command_set`.
COMMANDS = (language_command,)
