"""The command registry: `!name args` in pair and desk rooms.

A command is declared with the `command` decorator, which also carries its help text and
who may use it where; each module lists its commands (`COMMANDS`) and
`bridge.core.command_set.build_commands` puts them into one `CommandRegistry`, the instance
the service dispatches with. `!help` lists what that registry holds, so it can never drift
from the code. Handlers are pure: they get a context and return effects.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from bridge.core.model import AppendAudit, Effect, Pair, Role, SendMessage

FactT = TypeVar("FactT")

PAIR_ROOM = "pair"
DESK_ROOM = "desk"


@dataclass(frozen=True, slots=True)
class CommandContext:
    room_kind: str  # PAIR_ROOM or DESK_ROOM
    room_id: str
    sender: str
    role: Role
    event_id: str
    now: datetime
    pair: Pair | None = None
    #: Facts the service looked up before deciding: one frozen dataclass per feature that
    #: had any (`SlaPairFacts`, `VideoFacts`, ...), found with `fact`.
    facts: tuple[object, ...] = ()
    #: The registry the command was dispatched from (what `!help` lists).
    registry: CommandRegistry | None = None

    def fact(self, kind: type[FactT]) -> FactT | None:
        """The facts of type `kind`, or None when no feature provided them (not installed,
        or not for this room or sender)."""
        for found in self.facts:
            if isinstance(found, kind):
                return found
        return None


Handler = Callable[[CommandContext, list[str]], list[Effect]]


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    summary: str
    usage: str
    roles: frozenset[Role]
    rooms: frozenset[str]
    handler: Handler


def command(
    name: str,
    summary: str,
    *,
    usage: str = "",
    roles: Sequence[Role] = (Role.PATIENT, Role.THERAPIST),
    rooms: Sequence[str] = (PAIR_ROOM,),
) -> Callable[[Handler], Command]:
    """Declare `!name`: the handler with its help text and who may use it in which rooms."""

    def declare(handler: Handler) -> Command:
        return Command(name, summary, usage, frozenset(roles), frozenset(rooms), handler)

    return declare


class CommandRegistry:
    """The commands one bridge answers; a name is taken once."""

    def __init__(self, commands: Iterable[Command] = ()) -> None:
        self._commands: dict[str, Command] = {}
        for cmd in commands:
            self.add(cmd)

    def add(self, cmd: Command) -> None:
        if cmd.name in self._commands:
            raise ValueError(f"command !{cmd.name} registered twice")
        self._commands[cmd.name] = cmd

    def command(
        self,
        name: str,
        summary: str,
        *,
        usage: str = "",
        roles: Sequence[Role] = (Role.PATIENT, Role.THERAPIST),
        rooms: Sequence[str] = (PAIR_ROOM,),
    ) -> Callable[[Handler], Handler]:
        """Declare a command and add it here at once (the handler stays a plain function)."""

        def register(handler: Handler) -> Handler:
            self.add(command(name, summary, usage=usage, roles=roles, rooms=rooms)(handler))
            return handler

        return register

    def get(self, name: str) -> Command | None:
        return self._commands.get(name)

    def available(self, room_kind: str, role: Role) -> list[Command]:
        return sorted(
            (c for c in self._commands.values() if room_kind in c.rooms and role in c.roles),
            key=lambda c: c.name,
        )

    def dispatch(self, ctx: CommandContext, text: str) -> list[Effect]:
        """Run `text` (starting with `!`) for the sender; unknown or forbidden -> a short note."""
        try:
            words = shlex.split(text[1:])
        except ValueError:
            words = text[1:].split()
        if not words:
            return []
        name, args = words[0].lower(), words[1:]
        cmd = self.get(name)
        # Audit details are not encrypted: record a command's name only if it is one of
        # ours, never whatever a patient typed after the `!`.
        audit = AppendAudit(
            pair_id=ctx.pair.pair_id if ctx.pair else None,
            action="command",
            actor=ctx.sender,
            details={
                "command": name if cmd is not None else "?",
                "role": ctx.role.value,
                "room": ctx.room_kind,
            },
            event_id=ctx.event_id,
        )
        if cmd is None or ctx.room_kind not in cmd.rooms:
            return [
                _with_outcome(audit, "unknown"),
                reply(ctx, "command_unknown", {"name": name}),
            ]
        if ctx.role not in cmd.roles:
            return [
                _with_outcome(audit, "refused"),
                reply(ctx, "command_refused", {"name": name, "role": ctx.role.value}),
            ]
        return [audit, *cmd.handler(replace(ctx, registry=self), args)]


def _with_outcome(audit: AppendAudit, outcome: str) -> AppendAudit:
    return AppendAudit(
        pair_id=audit.pair_id,
        action=audit.action,
        actor=audit.actor,
        details=audit.details,
        event_id=audit.event_id,
        outcome=outcome,
    )


def reply(ctx: CommandContext, template: str, context: dict[str, Any] | None = None) -> SendMessage:
    """A notice answering a command, with a txn id derived from the command's event id."""
    return SendMessage(
        room_id=ctx.room_id,
        template=template,
        context=context or {},
        txn_id=f"reply.{template}.{ctx.event_id}",
        pair_id=ctx.pair.pair_id if ctx.pair else None,
    )


def help_command(ctx: CommandContext, args: list[str]) -> list[Effect]:
    available = ctx.registry.available(ctx.room_kind, ctx.role) if ctx.registry else []
    commands = [{"name": c.name, "usage": c.usage, "summary": c.summary} for c in available]
    return [reply(ctx, "help", {"commands": commands, "room_kind": ctx.room_kind})]


HELP = command(
    "help",
    "List the commands you can use here",
    roles=(Role.PATIENT, Role.THERAPIST),
    rooms=(PAIR_ROOM, DESK_ROOM),
)(help_command)

#: The commands of this module.
COMMANDS = (HELP,)
