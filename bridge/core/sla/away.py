"""A therapist's absence: without cover it pauses their open clocks, `!back` resumes them.

The working time the therapist is away does not count, so due, heads-up and escalation
move later by it. Away with cover does not pause: the due time stays and the cover
therapist gets the reminders.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from bridge.core.model import AppendAudit, Effect
from bridge.core.sla.clock import ACTOR, Clock, iso_utc
from bridge.core.sla.policy import Away, SlaPolicy
from bridge.core.sla.schedule import reschedule, settle_pause
from bridge.core.workhours import WorkingCalendar, as_utc


def therapist_away(
    clock: Clock | None, policy: SlaPolicy, cal: WorkingCalendar, away: Away, now: datetime
) -> tuple[Clock | None, list[Effect]]:
    """Apply a therapist's absence (`!away UNTIL [cover @user]`) to one of their open clocks.

    Without cover the clock pauses until `away.until` (a later call extends the pause) and
    its timers move; with cover a paused clock resumes now and the due time stays.
    """
    now = as_utc(now)
    if clock is None or not clock.is_open:
        return clock, []
    clock = settle_pause(clock, policy, cal, now)
    if away.cover is not None or not away.active(now):
        return therapist_back(clock, policy, cal, now)
    since = clock.paused_since or now
    paused = replace(clock, paused_since=since, resume_at=as_utc(away.until))
    paused, effects = reschedule(paused, policy, cal, pivot=since)
    effects.append(
        AppendAudit(
            clock.pair_id,
            "sla.paused",
            ACTOR,
            {
                "clock_id": clock.clock_id,
                "until": iso_utc(away.until),
                "due_at": iso_utc(paused.due_at),
            },
        )
    )
    return paused, effects


def therapist_back(
    clock: Clock | None, policy: SlaPolicy, cal: WorkingCalendar, now: datetime
) -> tuple[Clock | None, list[Effect]]:
    """End a pause now (`!back`, or a cover took over); the remaining steps move earlier."""
    now = as_utc(now)
    if clock is None or not clock.is_open:
        return clock, []
    clock = settle_pause(clock, policy, cal, now)
    if clock.paused_since is None:
        return clock, []
    since = clock.paused_since
    end = min(now, clock.resume_at) if clock.resume_at is not None else now
    resumed = replace(
        clock,
        paused_since=None,
        resume_at=None,
        paused_total=clock.paused_total + cal.elapsed(since, end, policy.window_clock),
    )
    resumed, effects = reschedule(resumed, policy, cal, pivot=since)
    effects.append(
        AppendAudit(
            clock.pair_id,
            "sla.resumed",
            ACTOR,
            {"clock_id": clock.clock_id, "due_at": iso_utc(resumed.due_at)},
        )
    )
    return resumed, effects


__all__ = ["therapist_away", "therapist_back"]
