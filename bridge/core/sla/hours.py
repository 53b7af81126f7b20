"""When a clock's steps may reach people: opening hours or any hour, by policy and step."""

from __future__ import annotations

from datetime import datetime, timedelta

from bridge.core.sla.clock import Step
from bridge.core.sla.policy import ReachHours, SlaPolicy
from bridge.core.workhours import WorkingCalendar

_ZERO = timedelta(0)


def hours_for(policy: SlaPolicy, step: Step) -> ReachHours:
    """When `step` may reach people under `policy`."""
    return policy.escalation_hours if step is Step.ESCALATION else policy.reminder_hours


def deliverable(cal: WorkingCalendar, policy: SlaPolicy, step: Step, now: datetime) -> bool:
    """Whether `step` may reach people at `now`.

    Within opening hours, or closed less than the policy's grace ago (a reminder due at
    closing time still goes out); always, where the policy reaches people at any hour.
    """
    if hours_for(policy, step) == "any_time" or cal.is_open(now):
        return True
    grace = policy.reminder_grace
    return grace > _ZERO and cal.working_time_between(now - grace, now) > _ZERO


#: Steps held until an opening are spread after it by when they fell due, compressed by
#: this factor: a weekend's reminders leave in due order over a few minutes instead of
#: all at once (the outbox then paces them within the homeserver's rate limits).
HOLD_COMPRESSION = 1000
#: How far back before the opening the spread reaches; steps due earlier go first.
HOLD_REACH = timedelta(days=4)


def held_until(cal: WorkingCalendar, due: datetime, now: datetime) -> datetime:
    """When a step that fell due at `due` and is held at `now` goes out.

    The next opening after `now`, plus a spread that grows with `due` (at most
    `HOLD_REACH / HOLD_COMPRESSION`, under six minutes), so the held steps keep their due
    order and do not all fire in the same instant.
    """
    opening = cal.next_opening(now)
    since = due - (opening - HOLD_REACH)
    spread = min(max(since, _ZERO), HOLD_REACH) / HOLD_COMPRESSION
    # Whole milliseconds, as the timers table keeps them.
    return opening + timedelta(milliseconds=int(spread.total_seconds() * 1000))


def delivered_at(cal: WorkingCalendar, policy: SlaPolicy, step: Step, at: datetime) -> datetime:
    """When a step falling at `at` reaches people: then, or after the next opening if held."""
    return at if deliverable(cal, policy, step, at) else held_until(cal, at, at)


__all__ = [
    "HOLD_COMPRESSION",
    "HOLD_REACH",
    "deliverable",
    "delivered_at",
    "held_until",
    "hours_for",
]
