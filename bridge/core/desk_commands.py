"""Commands in a therapist's desk room (registered on the shared command registry)."""

from __future__ import annotations

from bridge.core.commands import DESK_ROOM, CommandContext, command, reply
from bridge.core.model import Effect, Invoke, Role

#: What `!export` asks the service to do after the command's transaction.
EXPORT_OPERATION = "export"


@command(
    "export",
    "Get the transcript of one of your conversations as an encrypted zip",
    usage="PAIR-LABEL",
    roles=(Role.THERAPIST,),
    rooms=(DESK_ROOM,),
)
def export_command(ctx: CommandContext, args: list[str]) -> list[Effect]:
    if len(args) != 1:
        return [reply(ctx, "export_usage")]
    return [
        Invoke(
            EXPORT_OPERATION,
            ctx.room_id,
            {"pair": args[0], "requested_by": ctx.sender, "event_id": ctx.event_id},
        )
    ]


#: The commands of this module, for `bridge.core.command_set`.
COMMANDS = (export_command,)
