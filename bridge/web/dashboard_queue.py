"""Today's queue as the dashboard shows it: what each open clock waits for, and when.

Pure: a clock, its policy, the practice's calendar and `now` in, one `QueueItem` out. The
next step is the first of heads-up, due reminder and escalation the clock has not done; it
fires at its time, or at the next opening when the policy holds it for opening hours
(`bridge.core.sla.delivered_at`), which the page shows as "held until 09:00". An escalation
that reached nobody is marked in the clock (`ESCALATION_WAITING`) and shown as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bridge.core.sla import ESCALATION_WAITING, Clock, SlaPolicy, Step, deliverable, delivered_at
from bridge.core.sla.hours import held_until
from bridge.core.workhours import WorkingCalendar

_STEP_NAMES = {
    Step.HEADS_UP: "heads-up",
    Step.DUE: "reminder",
    Step.ESCALATION: "escalation",
}


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One line of the queue: labels, names and times only, never content."""

    label: str
    therapist: str
    policy: str
    due: str
    #: "2 h 05 min" past due, or "" while on time.
    overdue_by: str
    #: "reminder", "escalation", ...; "" when every step is done.
    next_step: str
    #: When the next step reaches people (practice time), "" without one.
    next_at: str
    #: "09:00" (or "Mon 09:00") when the next step waits for opening hours, else "".
    held_until: str
    escalation_waiting: bool
    #: When the escalation reached a supervisor (the clock is still open); "" before.
    escalated_at: str
    paused: bool
    never_joined: bool
    consent_pending: bool


def human_span(span: timedelta) -> str:
    """A duration as people read it on a queue: "45 min", "2 h 05 min", "3 d 4 h"."""
    minutes = max(0, int(span.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {mins:02d} min"
    return f"{mins} min"


def local_time(at: datetime, cal: WorkingCalendar, now: datetime) -> str:
    """`at` in the practice's time zone: the time alone today, with the day otherwise."""
    local = at.astimezone(cal.tz)
    if local.date() == now.astimezone(cal.tz).date():
        return local.strftime("%H:%M")
    return local.strftime("%a %d %b %H:%M")


def next_step(clock: Clock) -> Step | None:
    """The first step of the clock's policy it has not done yet."""
    for step in (Step.HEADS_UP, Step.DUE, Step.ESCALATION):
        if clock.step_at(step) is not None and step.value not in clock.steps_done:
            return step
    return None


def _escalated_at(clock: Clock, cal: WorkingCalendar, now: datetime) -> str:
    at = clock.step_at(Step.ESCALATION)
    if at is None or Step.ESCALATION.value not in clock.steps_done:
        return ""
    return local_time(at, cal, now)


def queue_item(
    clock: Clock,
    policy: SlaPolicy,
    cal: WorkingCalendar,
    now: datetime,
    *,
    label: str,
    therapist: str,
    joined: bool = True,
    consent_state: str = "accepted",
) -> QueueItem:
    """How `clock` reads on the queue at `now`."""
    step = next_step(clock)
    next_at = held = ""
    if step is not None and not clock.is_paused:
        at = clock.step_at(step)
        assert at is not None  # next_step only returns scheduled steps
        if at > now:
            reaches = delivered_at(cal, policy, step, at)
        elif deliverable(cal, policy, step, now):
            # Fell due and may reach people now: its timer fires at once.
            reaches = now
        else:
            # Fell due while the practice is closed: it leaves after the next opening.
            reaches = held_until(cal, at, now)
        next_at = local_time(reaches, cal, now)
        if reaches > max(at, now):
            held = next_at
    waiting = ESCALATION_WAITING in clock.steps_done
    return QueueItem(
        label=label,
        therapist=therapist,
        policy=clock.policy,
        due=local_time(clock.due_at, cal, now),
        overdue_by=human_span(now - clock.due_at) if clock.due_at < now else "",
        next_step=_STEP_NAMES[step] if step is not None else "",
        next_at=next_at,
        held_until=held,
        escalation_waiting=waiting,
        escalated_at=_escalated_at(clock, cal, now),
        paused=clock.is_paused,
        never_joined=not joined,
        consent_pending=consent_state == "pending",
    )


__all__ = ["QueueItem", "human_span", "local_time", "next_step", "queue_item"]
