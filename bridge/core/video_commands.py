"""`!video` and `!video end` in a pair room (pure: the service starts and ends the call).

What the handlers need from outside comes as `VideoFacts`; starting or
ending a call draws a meeting name, signs tokens and changes room state, so the handlers
answer with an `Invoke` the service runs after the command's transaction. `call_started`
and `call_ended` say what the call's start and end record and post.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from bridge.core.commands import PAIR_ROOM, CommandContext, command, reply
from bridge.core.model import AppendAudit, Effect, Invoke, Pair, Role, SendMessage


@dataclass(frozen=True, slots=True)
class VideoFacts:
    """What `!video` needs in a pair room."""

    #: The practice has a Jitsi server configured.
    on: bool
    #: The meeting name of the pair's running call, or None.
    call: str | None = None


START_OPERATION = "video.start"
END_OPERATION = "video.end"
#: E-mails the patient her personal link to a meeting (a token-protected Jitsi): never
#: posted where the therapist reads it too. Params: {"meeting": name}.
PATIENT_LINK_OPERATION = "video.patient_link"


@command(
    "video",
    "Start a video call (a Jitsi link and a widget); `!video end` ends it",
    usage="[end]",
    roles=(Role.PATIENT, Role.THERAPIST),
    rooms=(PAIR_ROOM,),
)
def video_command(ctx: CommandContext, args: list[str]) -> list[Effect]:
    facts = ctx.fact(VideoFacts)
    if facts is None or not facts.on:
        return [reply(ctx, "video_off")]
    if ctx.pair is None:
        return []
    params = {"event_id": ctx.event_id, "requested_by": ctx.sender, "role": ctx.role.value}
    if not args:
        return [Invoke(START_OPERATION, ctx.room_id, params, pair_id=ctx.pair.pair_id)]
    if [a.lower() for a in args] == ["end"]:
        if not facts.call:
            return [reply(ctx, "video_none")]
        return [Invoke(END_OPERATION, ctx.room_id, params, pair_id=ctx.pair.pair_id)]
    return [reply(ctx, "video_usage")]


def call_started(
    pair_id: str,
    requested_by: str,
    role: str,
    meeting: str,
    *,
    personal_links: bool,
    event_id: str,
    patient_link_sent: bool = False,
) -> AppendAudit:
    """The entry of a call that started; its sealed content names the meeting. With personal
    links it says whether the patient's could be sent to them (by e-mail)."""
    details: dict[str, object] = {"role": role, "personal_links": personal_links}
    if personal_links:
        details["patient_link_sent"] = patient_link_sent
    return AppendAudit(
        pair_id,
        "video.started",
        requested_by,
        details,
        event_id=event_id,
        content=json.dumps({"meeting": meeting}).encode(),
    )


def call_ended(pair: Pair, requested_by: str, role: str, event_id: str) -> list[Effect]:
    """`!video end` took effect: audit it and say so in the room."""
    return [
        AppendAudit(
            pair.pair_id,
            "video.ended",
            requested_by,
            {"role": role},
            event_id=event_id,
        ),
        SendMessage(
            pair.room_id,
            "video_ended",
            {"ended_by": requested_by},
            txn_id=f"video.end.{event_id}",
            pair_id=pair.pair_id,
        ),
    ]


#: The commands of this module, for `bridge.core.command_set`.
COMMANDS = (video_command,)
