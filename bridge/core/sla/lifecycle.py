"""Opening, closing and dropping a clock: a patient's message, a therapist's reply, a cancel."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from bridge.core.model import CONVERSATIONAL_KINDS, AppendAudit, Effect, Kind, Pair, ScheduleTimer
from bridge.core.sla.clock import ACTOR, Clock, ClockState, clock_id_for, iso_utc
from bridge.core.sla.notices import expected_reply_notice
from bridge.core.sla.policy import Away, SlaPolicy
from bridge.core.sla.schedule import (
    advance,
    cancel_timers,
    pause_extra,
    settle_pause,
    step_offsets,
    with_times,
)
from bridge.core.workhours import WorkingCalendar, as_utc


def on_patient_message(
    clock: Clock | None,
    pair: Pair,
    policy: SlaPolicy,
    cal: WorkingCalendar,
    kind: Kind | str,
    event_id: str,
    now: datetime,
    *,
    explicit_reply_request: bool = False,
    live_session: bool = False,
    consent_pending: bool = False,
    away: Away | None = None,
) -> tuple[Clock | None, list[Effect]]:
    """Open a clock on the first unanswered patient message, if the policy wants one.

    An open clock is not moved by later messages. No clock opens during a live session
    or while consent is pending; with `open_clock_on="reply_request"` only an explicit
    reply request (`!reply`) opens one. `away` is the therapist's absence, if any.
    """
    now = as_utc(now)
    if clock is not None and clock.is_open:
        return clock, []
    if live_session or consent_pending:
        return clock, []
    if policy.open_clock_on == "reply_request":
        if not explicit_reply_request:
            return clock, []
    elif not explicit_reply_request and kind not in CONVERSATIONAL_KINDS:
        return clock, []

    cid = clock_id_for(pair.pair_id, event_id)
    offsets = step_offsets(policy)
    paused = away is not None and away.active(now) and away.cover is None
    opened = Clock(
        pair_id=pair.pair_id,
        clock_id=cid,
        therapist_id=pair.therapist_id,
        policy=policy.name,
        opened_at=now,
        first_event_id=event_id,
        first_kind=str(kind),
        due_at=now,
        paused_since=now if paused else None,
        resume_at=as_utc(away.until) if paused and away is not None else None,
    )
    extra = pause_extra(opened, policy, cal)
    times = {step: advance(cal, policy, now, offset + extra) for step, offset in offsets.items()}
    opened = with_times(opened, times)

    out_of_hours = not cal.is_open(now)
    effects: list[Effect] = [
        AppendAudit(
            pair.pair_id,
            "sla.opened",
            pair.patient_id,
            {
                "clock_id": cid,
                "policy": policy.name,
                "kind": str(kind),
                "due_at": iso_utc(opened.due_at),
                "window_seconds": int(policy.window.total_seconds()),
                "window_clock": policy.window_clock,
                "out_of_hours": out_of_hours,
                "paused": paused,
            },
            event_id=event_id,
        )
    ]
    for step in offsets:
        at = opened.step_at(step)
        assert at is not None  # every step in `offsets` got a time above
        effects.append(ScheduleTimer(opened.timer_id(step), step.timer_kind, at, pair.pair_id))

    notice = expected_reply_notice(
        opened,
        pair,
        policy,
        cal,
        out_of_hours=out_of_hours,
        therapist_away=away is not None and away.active(now),
    )
    if notice is not None:
        effects.append(notice)
    return opened, effects


def on_therapist_message(
    clock: Clock | None,
    policy: SlaPolicy,
    cal: WorkingCalendar,
    kind: Kind | str,
    event_id: str,
    sender: str,
    now: datetime,
    *,
    is_command: bool = False,
) -> tuple[Clock | None, list[Effect]]:
    """Close the open clock on the therapist's message and record the response time.

    Commands (`!sla`, `!video`...) and non-message events (reactions, edits) do not close it.
    `now` is the reply's own time (`message_time`); a reply dated before the clock opened
    (the patient's message was decrypted late) counts as an immediate one.
    """
    now = as_utc(now)
    if clock is None or not clock.is_open or is_command or kind not in CONVERSATIONAL_KINDS:
        return clock, []
    now = max(now, clock.opened_at)
    clock = settle_pause(clock, policy, cal, now)
    paused_total = clock.paused_total
    if clock.paused_since is not None:
        paused_total += cal.elapsed(clock.paused_since, now, policy.window_clock)
    working = cal.working_time_between(clock.opened_at, now)
    calendar = now - clock.opened_at
    met = now <= clock.due_at
    closed = replace(
        clock,
        state=ClockState.CLOSED,
        paused_since=None,
        resume_at=None,
        paused_total=paused_total,
        closed_at=now,
        closed_by=sender,
        closing_event_id=event_id,
        response_working=working,
        response_calendar=calendar,
        met=met,
    )
    audit = AppendAudit(
        clock.pair_id,
        "sla.closed",
        sender,
        {
            "clock_id": clock.clock_id,
            "opened_at": iso_utc(clock.opened_at),
            "due_at": iso_utc(clock.due_at),
            "response_seconds_working": int(working.total_seconds()),
            "response_seconds_calendar": int(calendar.total_seconds()),
            "paused_seconds": int(paused_total.total_seconds()),
            "met": met,
        },
        event_id=event_id,
    )
    return closed, [*cancel_timers(clock), audit]


def cancel_clock(
    clock: Clock | None, reason: str, now: datetime, *, actor: str = ACTOR
) -> tuple[Clock | None, list[Effect]]:
    """Drop an open clock without a reply (pair closed, clock cleared by an admin)."""
    if clock is None or not clock.is_open:
        return clock, []
    now = as_utc(now)
    cancelled = replace(
        clock, state=ClockState.CANCELLED, paused_since=None, resume_at=None, closed_at=now
    )
    audit = AppendAudit(
        clock.pair_id, "sla.cancelled", actor, {"clock_id": clock.clock_id, "reason": reason}
    )
    return cancelled, [*cancel_timers(clock), audit]


__all__ = ["cancel_clock", "on_patient_message", "on_therapist_message"]
