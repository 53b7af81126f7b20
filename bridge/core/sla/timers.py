"""What a clock's timer does when it fires: record a breach, run its step, or re-arm it.

Reminders reach people only when the policy allows (`remind_during`, `escalate_during`:
the practice's hours for working-time policies, any hour for round-the-clock ones); a
timer that fires outside them is re-armed for the next opening, never dropped. An
escalation that reaches nobody stays open and is tried again, never used up silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from bridge.core.model import AppendAudit, Effect, Pair, ScheduleTimer
from bridge.core.sla.clock import (
    ACTOR,
    BREACHED,
    ESCALATION_WAITING,
    PATIENT_TOLD,
    Clock,
    Step,
    iso_utc,
    parse_timer_id,
)
from bridge.core.sla.hours import deliverable, held_until
from bridge.core.sla.notices import breach_notice
from bridge.core.sla.policy import Away, Desk, SlaPolicy
from bridge.core.sla.schedule import settle_pause
from bridge.core.sla.steps import escalate, remind
from bridge.core.workhours import WorkingCalendar, as_utc

#: A timer firing this much before its step's time is stale (the clock moved): re-arm it.
STALE_TOLERANCE = timedelta(seconds=1)
#: How soon an escalation that reached nobody is tried again.
ESCALATION_RETRY = timedelta(minutes=15)


def on_timer(
    clock: Clock | None,
    timer_id: str,
    now: datetime,
    *,
    pair: Pair,
    policy: SlaPolicy,
    cal: WorkingCalendar,
    therapist: Desk,
    supervisors: Sequence[Desk] = (),
    away: Away | None = None,
) -> tuple[Clock | None, list[Effect]]:
    """Act on one of the clock's timers: heads-up, reminder at due, or escalation.

    A timer of a clock that is closed, or of an older clock, does nothing. A reminder
    that would land outside working hours (past the policy's grace after closing) is
    re-armed for the next opening instead. While `away` is active with a cover, the
    cover's desk gets heads-up and reminders. `supervisors` are the escalation desks.
    """
    now = as_utc(now)
    ref = parse_timer_id(timer_id)
    if (
        clock is None
        or not clock.is_open
        or ref is None
        or ref.pair_id != clock.pair_id
        or ref.clock_id != clock.clock_id
    ):
        return clock, []
    step = ref.step
    if step.value in clock.steps_done:
        return clock, []
    clock = settle_pause(clock, policy, cal, now)
    scheduled = clock.step_at(step)
    if scheduled is None:
        return clock, []
    if scheduled - now > STALE_TOLERANCE:
        # The clock moved (a pause) after this timer was armed: fire at the new time.
        return clock, [ScheduleTimer(timer_id, step.timer_kind, scheduled, clock.pair_id)]

    effects: list[Effect] = []
    done = set(clock.steps_done)
    # The due and escalation steps are past due by definition, even when the timer
    # fires a hair early (stored times are whole milliseconds).
    if (step is not Step.HEADS_UP or now >= clock.due_at) and BREACHED not in done:
        done.add(BREACHED)
        effects.append(
            AppendAudit(
                clock.pair_id,
                "sla.breached",
                ACTOR,
                {"clock_id": clock.clock_id, "due_at": iso_utc(clock.due_at)},
            )
        )

    if (step is Step.HEADS_UP and now >= clock.due_at) or (
        step is Step.DUE and not policy.remind_at_due
    ):
        # A heads-up after due is pointless; without a due reminder only the breach is recorded.
        done.add(step.value)
        return replace(clock, steps_done=frozenset(done)), effects

    if policy.tell_patient_on_breach and BREACHED in done and PATIENT_TOLD not in done:
        # The patient hears when the promised time passes, whatever the staff's hours.
        done.add(PATIENT_TOLD)
        effects.append(breach_notice(clock, pair))

    if not deliverable(cal, policy, step, now):
        effects.append(
            ScheduleTimer(timer_id, step.timer_kind, held_until(cal, scheduled, now), clock.pair_id)
        )
        return replace(clock, steps_done=frozenset(done)), effects

    if step is Step.ESCALATION:
        sent, reached = escalate(clock, pair, policy, cal, timer_id, supervisors, now)
        effects += sent
        if not reached:
            # Nobody could be reached: the escalation stays open and is tried again.
            if ESCALATION_WAITING not in done:
                done.add(ESCALATION_WAITING)
                effects.append(
                    AppendAudit(
                        clock.pair_id,
                        "sla.escalation_waiting",
                        ACTOR,
                        {
                            "clock_id": clock.clock_id,
                            "due_at": iso_utc(clock.due_at),
                            "supervisors": len(supervisors),
                        },
                        outcome="no_recipient",
                    )
                )
            retry = now + ESCALATION_RETRY
            effects.append(ScheduleTimer(timer_id, step.timer_kind, retry, clock.pair_id))
            return replace(clock, steps_done=frozenset(done)), effects
        done.discard(ESCALATION_WAITING)
    else:
        effects += remind(clock, pair, policy, cal, step, timer_id, therapist, away, now)
    done.add(step.value)
    return replace(clock, steps_done=frozenset(done)), effects


__all__ = [
    "ESCALATION_RETRY",
    "STALE_TOLERANCE",
    "on_timer",
]
