"""What a pair's SLA policy asks for, and where its reminders go (desks, absences)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from bridge.core.workhours import WindowClock, as_utc

PatientNotice = Literal["always", "out_of_hours", "never"]
OpenClockOn = Literal["any_message", "reply_request"]
#: When a step may reach people: only while the practice is open, or at any hour.
ReachHours = Literal["opening_hours", "any_time"]

_ZERO = timedelta(0)


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    """How a pair's clock behaves; the config layer builds this from the YAML policy."""

    window: timedelta
    window_clock: WindowClock = "working"
    #: Heads-up this long before due (in the window's clock); None or >= window: no heads-up.
    heads_up_before: timedelta | None = None
    remind_at_due: bool = True
    #: Escalate this long after due (in the window's clock); None: never escalate.
    escalate_after: timedelta | None = None
    supervisors: tuple[str, ...] = ()
    patient_notice: PatientNotice = "out_of_hours"
    open_clock_on: OpenClockOn = "any_message"
    tell_patient_on_breach: bool = False
    email_reminders: bool = False
    crisis_line: str | None = None
    #: A reminder firing this soon after the practice closed is still sent (due at closing time).
    reminder_grace: timedelta = timedelta(minutes=15)
    name: str = "default"
    #: When heads-up and due reminders may reach the therapist; None: the clock decides
    #: (opening hours for a working-time window, any time for a round-the-clock one).
    remind_during: ReachHours | None = None
    #: When an escalation may reach supervisors; None: as `remind_during` (a crisis
    #: policy sets "any_time" so a supervisor hears at night).
    escalate_during: ReachHours | None = None

    @property
    def reminder_hours(self) -> ReachHours:
        """When reminders reach the therapist, with the clock's default filled in."""
        if self.remind_during is not None:
            return self.remind_during
        return "opening_hours" if self.window_clock == "working" else "any_time"

    @property
    def escalation_hours(self) -> ReachHours:
        """When escalations reach supervisors, with the default filled in."""
        return self.escalate_during if self.escalate_during is not None else self.reminder_hours

    def __post_init__(self) -> None:
        if self.window <= _ZERO:
            raise ValueError("window must be positive")
        if self.escalate_after is not None and self.escalate_after < _ZERO:
            raise ValueError("escalate_after must not be negative")
        if self.heads_up_before is not None and self.heads_up_before < _ZERO:
            raise ValueError("heads_up_before must not be negative")


@dataclass(frozen=True, slots=True)
class Desk:
    """Where one person's reminders go: a desk room (or DM room) and optionally an e-mail."""

    user_id: str
    room_id: str | None
    email: str | None = None


@dataclass(frozen=True, slots=True)
class Away:
    """A therapist's absence until `until`, optionally covered by another therapist."""

    until: datetime
    cover: Desk | None = None

    def active(self, now: datetime) -> bool:
        """Whether the absence still holds at `now`."""
        return as_utc(now) < as_utc(self.until)


__all__ = ["Away", "Desk", "OpenClockOn", "PatientNotice", "ReachHours", "SlaPolicy"]
