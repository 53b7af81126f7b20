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


def desk_created(therapist: str) -> AppendAudit:
    """The entry of a therapist's desk room, created by the administrator."""
    return AppendAudit(None, "desk.created", "admin", {"therapist": therapist})


def pair_created(
    pair_id: str, actor: str, *, patient: str, therapist: str, room_id: str, policy: str
) -> AppendAudit:
    """The entry of a new pair and its room."""
    details = {"patient": patient, "therapist": therapist, "room_id": room_id, "policy": policy}
    return AppendAudit(pair_id, "pair.created", actor, details)


def pair_reassigned(pair_id: str, actor: str, old: str, new: str) -> AppendAudit:
    """The entry of a pair handed from therapist `old` to `new`."""
    return AppendAudit(pair_id, "pair.reassigned", actor, {"from": old, "to": new})


def pair_removed(pair_id: str, actor: str) -> AppendAudit:
    """The entry of a pair closed (its room left, its address off)."""
    return AppendAudit(pair_id, "pair.removed", actor, {})
