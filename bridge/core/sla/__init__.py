"""The SLA clock: when a patient's message opens it, what each timer does, what closes it.

Every function is pure: it takes the current clock (or None), the inputs and `now`,
and returns `(clock, effects)`. The returned clock is what the service stores: the
same object when nothing changed, a closed clock when it closed (kept for reports),
None when there is no clock. Timer ids, transaction ids and audit entries are
derived from the pair id and the event that opened the clock, so replaying a
decision yields the same effects and a retry never posts twice.

Away without cover pauses the clock: the working time the therapist is away does
not count, so due, heads-up and escalation move later by it. Away with cover does
not pause it: the due time stays and the cover therapist gets the reminders.

The package, one job per module:

- `policy`: the pair's policy, reminder desks and absences (the inputs);
- `clock`: the clock record, its states and steps, stable timer and clock ids;
- `schedule`: when each step falls in the policy's clock, pauses left out;
- `lifecycle`: a patient's message opens a clock, a therapist's reply closes it;
- `hours`: when a step may reach people (opening hours or any hour, per policy and step);
- `timers`: what a step's timer does when it fires (breach, quiet hours, re-arm);
- `steps`: what the heads-up, the reminder and the escalation send, and to whom;
- `notices`: what the patient is told (expected reply time, missed reply);
- `away`: a therapist's absence pauses or hands over their clocks.

Callers import from the package (`from bridge.core.sla import on_timer`).
"""

from bridge.core.sla.away import therapist_away, therapist_back
from bridge.core.sla.clock import (
    ACTOR,
    BREACHED,
    ESCALATION_WAITING,
    MAX_BACKDATE,
    PATIENT_TOLD,
    Clock,
    ClockState,
    Step,
    TimerRef,
    clock_id_for,
    message_time,
    open_clocks_by_due,
    parse_timer_id,
    timer_id,
)
from bridge.core.sla.hours import deliverable, delivered_at
from bridge.core.sla.lifecycle import cancel_clock, on_patient_message, on_therapist_message
from bridge.core.sla.policy import Away, Desk, OpenClockOn, PatientNotice, ReachHours, SlaPolicy
from bridge.core.sla.steps import room_link
from bridge.core.sla.timers import ESCALATION_RETRY, STALE_TOLERANCE, on_timer

__all__ = [
    "ACTOR",
    "BREACHED",
    "ESCALATION_RETRY",
    "ESCALATION_WAITING",
    "MAX_BACKDATE",
    "PATIENT_TOLD",
    "STALE_TOLERANCE",
    "Away",
    "Clock",
    "ClockState",
    "Desk",
    "OpenClockOn",
    "PatientNotice",
    "ReachHours",
    "SlaPolicy",
    "Step",
    "TimerRef",
    "cancel_clock",
    "clock_id_for",
    "deliverable",
    "delivered_at",
    "message_time",
    "on_patient_message",
    "on_therapist_message",
    "on_timer",
    "open_clocks_by_due",
    "parse_timer_id",
    "room_link",
    "therapist_away",
    "therapist_back",
    "timer_id",
]
