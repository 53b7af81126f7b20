"""When each step of a clock falls, in the policy's clock, with pauses left out.

A step is at the instant its clock time (elapsed since opening, minus pauses) reaches
its offset: the window for the due step, less the heads-up lead for the heads-up, plus
the escalation delay for the escalation.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from bridge.core.model import CancelTimer, Effect, ScheduleTimer
from bridge.core.sla.clock import Clock, Step
from bridge.core.sla.policy import SlaPolicy
from bridge.core.workhours import WorkingCalendar

_ZERO = timedelta(0)


def step_offsets(policy: SlaPolicy) -> dict[Step, timedelta]:
    """How much clock time after opening each step comes."""
    offsets = {Step.DUE: policy.window}
    hb = policy.heads_up_before
    if hb is not None and _ZERO < hb < policy.window:
        offsets[Step.HEADS_UP] = policy.window - hb
    # Supervisors may come from the therapist as well as the policy: they are looked up
    # when the escalation fires, so the step exists whenever the policy escalates.
    if policy.escalate_after is not None:
        offsets[Step.ESCALATION] = policy.window + policy.escalate_after
    return offsets


def advance(
    cal: WorkingCalendar, policy: SlaPolicy, start: datetime, amount: timedelta
) -> datetime:
    """The instant `amount` of the policy's clock time has passed after `start`."""
    return cal.due_at(start, amount, policy.window_clock)


def pause_extra(clock: Clock, policy: SlaPolicy, cal: WorkingCalendar) -> timedelta:
    """Clock time not counted: finished pauses plus the running one up to its expected end."""
    extra = clock.paused_total
    if clock.paused_since is not None and clock.resume_at is not None:
        extra += cal.elapsed(clock.paused_since, clock.resume_at, policy.window_clock)
    return extra


def reschedule(
    clock: Clock, policy: SlaPolicy, cal: WorkingCalendar, pivot: datetime
) -> tuple[Clock, list[Effect]]:
    """Recompute the steps still ahead of `pivot` and re-arm the timers that moved.

    Steps done, or already due at `pivot`, keep their time.
    """
    extra = pause_extra(clock, policy, cal)
    changes: dict[Step, datetime] = {}
    effects: list[Effect] = []
    for step, offset in step_offsets(policy).items():
        old = clock.step_at(step)
        if step.value in clock.steps_done or old is None or old <= pivot:
            continue
        new = advance(cal, policy, clock.opened_at, offset + extra)
        if new != old:
            changes[step] = new
            effects.append(ScheduleTimer(clock.timer_id(step), step.timer_kind, new, clock.pair_id))
    return with_times(clock, changes), effects


def settle_pause(clock: Clock, policy: SlaPolicy, cal: WorkingCalendar, now: datetime) -> Clock:
    """Fold a pause whose expected end has passed (its times were computed for that end)."""
    if clock.paused_since is None or clock.resume_at is None or clock.resume_at > now:
        return clock
    paused = cal.elapsed(clock.paused_since, clock.resume_at, policy.window_clock)
    return replace(
        clock, paused_since=None, resume_at=None, paused_total=clock.paused_total + paused
    )


def with_times(clock: Clock, times: dict[Step, datetime]) -> Clock:
    """`clock` with the given steps' times replaced."""
    if not times:
        return clock
    return replace(
        clock,
        heads_up_at=times.get(Step.HEADS_UP, clock.heads_up_at),
        due_at=times.get(Step.DUE, clock.due_at),
        escalate_at=times.get(Step.ESCALATION, clock.escalate_at),
    )


def cancel_timers(clock: Clock) -> list[Effect]:
    """Cancel every step's timer of `clock` (the clock closed or was dropped)."""
    return [CancelTimer(clock.timer_id(step)) for step in Step]


__all__ = [
    "advance",
    "cancel_timers",
    "pause_extra",
    "reschedule",
    "settle_pause",
    "step_offsets",
    "with_times",
]
