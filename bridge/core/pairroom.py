"""What the bot does about one event in a pair room (policy only, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.core.commands import PAIR_ROOM, CommandContext, CommandRegistry
from bridge.core.model import (
    AppendAudit,
    Effect,
    Kind,
    Pair,
    Role,
    RoomAction,
    RoomEvent,
    SendMessage,
)

#: Undecryptable events of one pair seen within one such window share a single desk
#: notice: a burst (a restart, a takeover, a patient's device that lost its keys) tells
#: the therapist once, while the audit still records every event.
UNDECRYPTABLE_NOTICE_WINDOW = timedelta(hours=1)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def undecryptable_notice_txn(
    pair_id: str, seen_at: datetime, window: timedelta = UNDECRYPTABLE_NOTICE_WINDOW
) -> str:
    """The outbox txn id of the desk notice for an undecryptable event seen at `seen_at`.

    Every such event of the pair within the same window gets the same id, and the outbox
    ignores a txn id it has queued before: one notice per pair per window, with no state
    to keep. A burst that spans the end of a window gets a second notice, never more.
    """
    return f"undecryptable.{pair_id}.{(seen_at - _EPOCH) // window}"


def audit_for_event(ev: RoomEvent, content: bytes | None) -> AppendAudit:
    """The audit entry for anything seen in a pair room."""
    details: dict[str, Any] = {
        "role": ev.role.value,
        "kind": ev.kind.value,
        "origin_ts": int(ev.origin_ts.timestamp() * 1000),
        "content_sha256": ev.content_sha256,
    }
    if ev.relates_to:
        details["relates_to"] = ev.relates_to
    if ev.membership:
        details["membership"] = ev.membership
    if ev.state_key is not None:
        details["state_key"] = ev.state_key
    action = f"room.{ev.kind.value}"
    outcome = "failed" if ev.kind is Kind.UNDECRYPTABLE else "ok"
    return AppendAudit(
        pair_id=ev.pair_id,
        action=action,
        actor=ev.sender,
        details=details,
        event_id=ev.event_id,
        content=content,
        outcome=outcome,
    )


def decide_pair_event(
    pair: Pair,
    ev: RoomEvent,
    *,
    commands: CommandRegistry,
    desk_room_id: str | None,
    content: bytes | None = None,
    facts: tuple[object, ...] = (),
) -> list[Effect]:
    """Audit the event, enforce membership policy, and run commands (from `commands`)."""
    effects: list[Effect] = [audit_for_event(ev, content)]
    if ev.kind is Kind.MEMBERSHIP:
        effects += _membership(pair, ev, desk_room_id)
    elif ev.kind is Kind.UNDECRYPTABLE and desk_room_id:
        effects.append(
            SendMessage(
                room_id=desk_room_id,
                template="undecryptable",
                context={"pair_label": pair.label, "room_id": pair.room_id},
                txn_id=undecryptable_notice_txn(pair.pair_id, ev.seen_at),
                pair_id=pair.pair_id,
            )
        )
    elif ev.command and ev.role in (Role.PATIENT, Role.THERAPIST):
        ctx = CommandContext(
            room_kind=PAIR_ROOM,
            room_id=pair.room_id,
            sender=ev.sender,
            role=ev.role,
            event_id=ev.event_id,
            now=ev.seen_at,
            pair=pair,
            facts=facts,
        )
        effects += commands.dispatch(ctx, ev.command)
    return effects


def _membership(pair: Pair, ev: RoomEvent, desk_room_id: str | None) -> list[Effect]:
    target = ev.state_key or ""
    if target in (pair.patient_id, pair.therapist_id):
        return []
    if ev.role is Role.BOT and target == ev.sender:
        return []  # the bot's own membership
    if ev.membership not in ("join", "invite", "knock"):
        return []
    # Someone outside the pair is in (or invited to) a pair room: remove them, record it,
    # and tell the therapist. The bot holds the kick power level in every pair room.
    effects: list[Effect] = [
        RoomAction(pair.room_id, "kick", target, "not a member of this conversation"),
        AppendAudit(
            pair_id=pair.pair_id,
            action="policy.outsider_removed",
            actor=ev.sender,
            details={"user": target, "membership": ev.membership or ""},
            event_id=ev.event_id,
        ),
    ]
    if desk_room_id:
        effects.append(
            SendMessage(
                room_id=desk_room_id,
                template="outsider_alert",
                context={"pair_label": pair.label, "room_id": pair.room_id, "user": target},
                txn_id=f"outsider.{ev.event_id}",
                pair_id=pair.pair_id,
            )
        )
    return effects
