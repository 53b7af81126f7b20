"""`!video` and `!video end` in a pair room (pure: the service starts and ends the call).

What the handlers need from outside comes in `ctx.facts` (see `FACT_*`); starting or
ending a call draws a meeting name, signs tokens and changes room state, so the handlers
answer with an `Invoke` the service runs after the command's transaction.
"""

from __future__ import annotations

from bridge.core.commands import PAIR_ROOM, REGISTRY, CommandContext, reply
from bridge.core.model import Effect, Invoke, Role

#: Pair room: True when the practice has a Jitsi server configured.
FACT_VIDEO_ON = "video_on"
#: Pair room: the meeting name of the pair's running call, or None.
FACT_VIDEO_CALL = "video_call"

START_OPERATION = "video.start"
END_OPERATION = "video.end"


@REGISTRY.command(
    "video",
    "Start a video call (a Jitsi link and a widget); `!video end` ends it",
    usage="[end]",
    roles=(Role.PATIENT, Role.THERAPIST),
    rooms=(PAIR_ROOM,),
)
def video_command(ctx: CommandContext, args: list[str]) -> list[Effect]:
    if not ctx.facts.get(FACT_VIDEO_ON):
        return [reply(ctx, "video_off")]
    if ctx.pair is None:
        return []
    params = {"event_id": ctx.event_id, "requested_by": ctx.sender, "role": ctx.role.value}
    if not args:
        return [Invoke(START_OPERATION, ctx.room_id, params, pair_id=ctx.pair.pair_id)]
    if [a.lower() for a in args] == ["end"]:
        if not ctx.facts.get(FACT_VIDEO_CALL):
            return [reply(ctx, "video_none")]
        return [Invoke(END_OPERATION, ctx.room_id, params, pair_id=ctx.pair.pair_id)]
    return [reply(ctx, "video_usage")]
