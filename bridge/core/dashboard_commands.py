"""`!dashboard` in a desk room, and the audit entries of the dashboard's sign-ins and actions.

A therapist types `!dashboard` in their (E2EE) desk room; the core only decides that a link
is made (`LINK_OPERATION`, an `Invoke`). The dashboard feature makes a single-use token,
keeps its digest and posts the link into the same desk room (`link_message`), so no
password ever reaches the bridge and the link travels only inside the encrypted room.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bridge.core.commands import DESK_ROOM, CommandContext, command
from bridge.core.model import AppendAudit, Effect, Invoke, Role, SendMessage

#: What `!dashboard` asks the service to do after the command's transaction.
LINK_OPERATION = "dashboard.link"
#: The desk notice carrying the link, and the one sent when the dashboard is off.
LINK_TEMPLATE = "dashboard_link"
OFF_TEMPLATE = "dashboard_off"


@command(
    "dashboard",
    "Get a link that signs you in to the dashboard (your pairs only, single use, valid minutes)",
    roles=(Role.THERAPIST,),
    rooms=(DESK_ROOM,),
)
def dashboard_command(ctx: CommandContext, args: list[str]) -> list[Effect]:
    """Ask for a sign-in link; the feature makes it and answers in this room."""
    return [
        Invoke(LINK_OPERATION, ctx.room_id, {"therapist": ctx.sender, "event_id": ctx.event_id})
    ]


def link_message(
    room_id: str, event_id: str, url: str | None, expires_at: datetime, minutes: int
) -> SendMessage:
    """The desk notice with the link (or, without `url`, that the dashboard is off)."""
    if url is None:
        return SendMessage(room_id, OFF_TEMPLATE, {}, txn_id=f"dashboard-off.{event_id}")
    context: dict[str, Any] = {"url": url, "minutes": minutes, "expires_at": expires_at}
    return SendMessage(room_id, LINK_TEMPLATE, context, txn_id=f"dashboard-link.{event_id}")


def link_issued(therapist: str, expires_at: datetime) -> AppendAudit:
    return AppendAudit(
        None, "dashboard.link_issued", therapist, {"expires_at": expires_at.isoformat()}
    )


def signed_in(viewer: str, via: str) -> AppendAudit:
    """A dashboard session began; `via` is "token" (admin) or "desk_link" (therapist)."""
    return AppendAudit(None, "dashboard.signed_in", viewer, {"via": via})


def link_refused(reason: str) -> AppendAudit:
    return AppendAudit(
        None, "dashboard.link_refused", "unknown", {"reason": reason}, outcome="refused"
    )


def signed_out_everywhere(viewer: str, sessions: int) -> AppendAudit:
    return AppendAudit(None, "dashboard.signed_out_everywhere", viewer, {"sessions": sessions})


def absence_set(
    actor: str, therapist: str, until: datetime | None, cover: str | None
) -> AppendAudit:
    """Someone on the dashboard marked a therapist away (with cover) or back (`until` None)."""
    details: dict[str, Any] = {"therapist": therapist, "cover": cover}
    if until is not None:
        details["until"] = until.isoformat()
    action = "therapist.away" if until is not None else "therapist.back"
    return AppendAudit(None, action, actor, details)


#: The commands of this module, for `bridge.core.command_set`.
COMMANDS = (dashboard_command,)

__all__ = [
    "COMMANDS",
    "LINK_OPERATION",
    "LINK_TEMPLATE",
    "OFF_TEMPLATE",
    "absence_set",
    "dashboard_command",
    "link_issued",
    "link_message",
    "link_refused",
    "signed_in",
    "signed_out_everywhere",
]
