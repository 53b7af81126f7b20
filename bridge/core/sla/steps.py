"""What a heads-up, a reminder and an escalation send, and to whom.

Reminders go to desk rooms (and, if the policy says so, e-mail), never into the pair
room. E-mails carry the pair label, the due time and a link only: nothing clinical.
Every reminder ends with an audit entry (`no_recipient` when nobody could be reached); an
escalation that reaches nobody is kept open and retried by the timer (`timers.py`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bridge.core.model import AppendAudit, Effect, Pair, SendEmail, SendMessage
from bridge.core.sla.clock import ACTOR, Clock, Step, iso_local, iso_utc
from bridge.core.sla.policy import Away, Desk, SlaPolicy
from bridge.core.workhours import WorkingCalendar


def room_link(room_id: str) -> str:
    """A matrix.to link to a room (an id, no content)."""
    return f"https://matrix.to/#/{room_id}"


def _short(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:8]


def _desk_context(
    clock: Clock, pair: Pair, cal: WorkingCalendar, step: Step, now: datetime, covering: bool
) -> dict[str, Any]:
    return {
        "pair_id": pair.pair_id,
        "pair_label": pair.label or pair.pair_id,
        "room_id": pair.room_id,
        "room_link": room_link(pair.room_id),
        "therapist_id": clock.therapist_id,
        "step": step.value,
        "opened_at": iso_utc(clock.opened_at),
        "due_at": iso_utc(clock.due_at),
        "due_at_local": iso_local(clock.due_at, cal),
        "timezone": cal.tz.key,
        "overdue": now > clock.due_at,
        "covering": covering,
    }


def _email_context(context: dict[str, Any]) -> dict[str, Any]:
    """The e-mail gets the pair label, due time and link only: nothing clinical."""
    keys = ("pair_label", "room_link", "due_at", "due_at_local", "timezone", "step")
    return {key: context[key] for key in keys}


def remind(
    clock: Clock,
    pair: Pair,
    policy: SlaPolicy,
    cal: WorkingCalendar,
    step: Step,
    timer_id: str,
    therapist: Desk,
    away: Away | None,
    now: datetime,
) -> list[Effect]:
    """The heads-up or due reminder: to the therapist's desk, or the cover's while away."""
    covering = away is not None and away.active(now) and away.cover is not None
    desk = away.cover if covering and away is not None and away.cover is not None else therapist
    context = _desk_context(clock, pair, cal, step, now, covering)
    template = "sla_heads_up" if step is Step.HEADS_UP else "sla_reminder"
    effects: list[Effect] = []
    if desk.room_id:
        effects.append(
            SendMessage(
                desk.room_id, template, context, txn_id=f"{timer_id}:desk", pair_id=pair.pair_id
            )
        )
    if policy.email_reminders and desk.email:
        effects.append(SendEmail(desk.email, f"{template}_email", _email_context(context)))
    outcome = "ok" if effects else "no_recipient"
    effects.append(
        AppendAudit(
            clock.pair_id,
            "sla.reminded",
            ACTOR,
            {
                "clock_id": clock.clock_id,
                "step": step.value,
                "to": desk.user_id,
                "covering": covering,
                "due_at": iso_utc(clock.due_at),
            },
            outcome=outcome,
        )
    )
    return effects


def escalate(
    clock: Clock,
    pair: Pair,
    policy: SlaPolicy,
    cal: WorkingCalendar,
    timer_id: str,
    supervisors: Sequence[Desk],
    now: datetime,
) -> tuple[list[Effect], list[str]]:
    """The escalation: to every supervisor's desk or address, and who it reached.

    Audited only when it reached someone; reaching nobody is the caller's to handle (the
    step stays open and is retried).
    """
    context = _desk_context(clock, pair, cal, Step.ESCALATION, now, covering=False)
    effects: list[Effect] = []
    reached: list[str] = []
    for desk in supervisors:
        sent = False
        if desk.room_id:
            effects.append(
                SendMessage(
                    desk.room_id,
                    "sla_escalation",
                    context,
                    txn_id=f"{timer_id}:{_short(desk.user_id)}",
                    pair_id=pair.pair_id,
                    # A desk made for this escalation: the post waits until they are in it.
                    await_member=desk.user_id,
                )
            )
            sent = True
        if policy.email_reminders and desk.email:
            effects.append(SendEmail(desk.email, "sla_escalation_email", _email_context(context)))
            sent = True
        if sent:
            reached.append(desk.user_id)
    if reached:
        effects.append(
            AppendAudit(
                clock.pair_id,
                "sla.escalated",
                ACTOR,
                {"clock_id": clock.clock_id, "to": reached, "due_at": iso_utc(clock.due_at)},
            )
        )
    return effects, reached


__all__ = ["escalate", "remind", "room_link"]
