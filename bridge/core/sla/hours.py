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


def delivered_at(cal: WorkingCalendar, policy: SlaPolicy, step: Step, at: datetime) -> datetime:
    """When a step falling at `at` reaches people: then, or at the next opening if held."""
    return at if deliverable(cal, policy, step, at) else cal.next_opening(at)


__all__ = ["deliverable", "delivered_at", "hours_for"]
