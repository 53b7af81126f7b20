"""Rooms that are not pair rooms: a therapist's desk room, and invitations to rooms the bot
did not create (policy only, no I/O)."""

from __future__ import annotations

from bridge.core.model import AppendAudit, Effect, RoomAction

#: Memberships that put someone in a room (or on the way in).
_ENTERING = frozenset({"join", "invite", "knock"})


def decide_desk_membership(
    room_id: str,
    owner: str,
    bot_id: str,
    *,
    sender: str,
    target: str,
    membership: str,
    event_id: str,
) -> list[Effect]:
    """Anyone but the owner and the bot who joins (or is invited to) a desk room is removed,
    and that is audited: the desk shows reminders about every pair of its owner."""
    if target in (owner, bot_id) or membership not in _ENTERING:
        return []
    return [
        RoomAction(room_id, "kick", target, "private desk room"),
        AppendAudit(
            None,
            "policy.outsider_removed",
            sender,
            {"user": target, "room": "desk"},
            event_id=event_id,
        ),
    ]


def invite_refused(room_id: str, inviter: str | None) -> AppendAudit:
    """The entry of an invitation the bot refused (it only stays in rooms it created)."""
    return AppendAudit(None, "policy.invite_refused", inviter or "unknown", {"room_id": room_id})
