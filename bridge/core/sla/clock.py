"""The clock record: its states and steps, its stable ids, and how its times are written."""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bridge.core.workhours import WorkingCalendar, as_utc

#: Actor recorded on audit entries the clock writes on its own (timers).
ACTOR = "confidant:sla"


class ClockState(enum.StrEnum):
    """Life of a clock: open until a therapist replies (closed) or it is dropped (cancelled)."""

    OPEN = "open"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class Step(enum.StrEnum):
    """The timed steps of an open clock."""

    HEADS_UP = "heads_up"
    DUE = "due"
    ESCALATION = "escalation"

    @property
    def timer_kind(self) -> str:
        """The `timer_kind` of this step's timers."""
        return f"sla.{self.value}"


#: Markers in `Clock.steps_done` besides the steps themselves.
BREACHED = "breached"
PATIENT_TOLD = "patient_told"
#: The escalation is due but reached nobody yet (no supervisor desk or address): retried.
ESCALATION_WAITING = "escalation_waiting"

_STEP_FIELD = {Step.HEADS_UP: "heads_up_at", Step.DUE: "due_at", Step.ESCALATION: "escalate_at"}


@dataclass(frozen=True, slots=True)
class Clock:
    """One SLA clock of a pair. Times are aware UTC datetimes."""

    pair_id: str
    clock_id: str
    therapist_id: str
    policy: str
    opened_at: datetime
    first_event_id: str
    first_kind: str
    due_at: datetime
    heads_up_at: datetime | None = None
    escalate_at: datetime | None = None
    steps_done: frozenset[str] = frozenset()
    state: ClockState = ClockState.OPEN
    #: Set while paused (therapist away without cover) with the expected return.
    paused_since: datetime | None = None
    resume_at: datetime | None = None
    #: Time of finished pauses, in the window's clock.
    paused_total: timedelta = timedelta(0)
    closed_at: datetime | None = None
    closed_by: str | None = None
    closing_event_id: str | None = None
    response_working: timedelta | None = None
    response_calendar: timedelta | None = None
    met: bool | None = None

    @property
    def is_open(self) -> bool:
        """Whether the clock is still waiting for a reply."""
        return self.state is ClockState.OPEN

    @property
    def is_paused(self) -> bool:
        """Whether the clock is paused (therapist away without cover)."""
        return self.paused_since is not None

    def step_at(self, step: Step) -> datetime | None:
        """When `step` is scheduled for this clock (None: not part of its policy)."""
        value: datetime | None = getattr(self, _STEP_FIELD[step])
        return value

    def timer_id(self, step: Step) -> str:
        """The stable id of this clock's timer for `step`."""
        return timer_id(self.pair_id, self.clock_id, step)


@dataclass(frozen=True, slots=True)
class TimerRef:
    """What an SLA timer id names."""

    pair_id: str
    clock_id: str
    step: Step


def clock_id_for(pair_id: str, first_event_id: str) -> str:
    """The stable id of the clock a pair's event opens (safe in timer and transaction ids)."""
    return hashlib.sha256(f"{pair_id}\x00{first_event_id}".encode()).hexdigest()[:16]


def timer_id(pair_id: str, clock_id: str, step: Step) -> str:
    """The stable id of one step's timer."""
    return f"sla:{pair_id}:{clock_id}:{step.value}"


def parse_timer_id(value: str) -> TimerRef | None:
    """Read an SLA timer id; None if `value` is not one."""
    if not value.startswith("sla:"):
        return None
    parts = value[4:].rsplit(":", 2)
    if len(parts) != 3:
        return None
    pair_id, clock_id, step = parts
    try:
        return TimerRef(pair_id, clock_id, Step(step))
    except ValueError:
        return None


#: The furthest back a message's own time is believed: a bridge down for longer than this
#: opens the clock at this bound, so a wrong homeserver clock cannot date a message years ago.
MAX_BACKDATE = timedelta(days=7)


def message_time(origin: datetime, seen: datetime) -> datetime:
    """The time a clock counts a message from: when it was sent, not when the bridge saw it.

    `origin` is the homeserver's `origin_server_ts` (for e-mail, when the bridge accepted
    it), `seen` the bridge's own clock. A message cannot have been sent after it was seen,
    so an origin ahead of `seen` (clock skew) counts as `seen`; one further back than
    `MAX_BACKDATE` counts as that bound. Downtime therefore counts against the reply time
    like any other minute.
    """
    origin, seen = as_utc(origin), as_utc(seen)
    return max(min(origin, seen), seen - MAX_BACKDATE)


def iso_utc(at: datetime) -> str:
    """A clock time as audit entries and templates carry it (ISO 8601, UTC)."""
    return as_utc(at).isoformat()


def iso_local(at: datetime, cal: WorkingCalendar) -> str:
    """A clock time in the practice's time zone (ISO 8601), for texts people read."""
    return at.astimezone(cal.tz).isoformat()


def open_clocks_by_due(clocks: Iterable[Clock]) -> list[Clock]:
    """Open clocks, soonest due first (for `!due`)."""
    return sorted((c for c in clocks if c.is_open), key=lambda c: (c.due_at, c.pair_id))


__all__ = [
    "ACTOR",
    "BREACHED",
    "ESCALATION_WAITING",
    "MAX_BACKDATE",
    "PATIENT_TOLD",
    "Clock",
    "ClockState",
    "Step",
    "TimerRef",
    "clock_id_for",
    "iso_local",
    "iso_utc",
    "message_time",
    "open_clocks_by_due",
    "parse_timer_id",
    "timer_id",
]
