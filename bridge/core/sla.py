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
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from bridge.core.model import (
    CONVERSATIONAL_KINDS,
    AppendAudit,
    CancelTimer,
    Effect,
    Kind,
    Pair,
    ScheduleTimer,
    SendEmail,
    SendMessage,
)
from bridge.core.workhours import WindowClock, WorkingCalendar, as_utc

PatientNotice = Literal["always", "out_of_hours", "never"]
OpenClockOn = Literal["any_message", "reply_request"]

#: Actor recorded on audit entries the clock writes on its own (timers).
ACTOR = "confidant:sla"
#: A timer firing this much before its step's time is stale (the clock moved): re-arm it.
STALE_TOLERANCE = timedelta(seconds=1)

_ZERO = timedelta(0)


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

_STEP_FIELD = {Step.HEADS_UP: "heads_up_at", Step.DUE: "due_at", Step.ESCALATION: "escalate_at"}


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
    paused_total: timedelta = _ZERO
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


# ---------------------------------------------------------------- ids


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


def _short(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:8]


def _iso(at: datetime) -> str:
    return as_utc(at).isoformat()


def _local_iso(at: datetime, cal: WorkingCalendar) -> str:
    return at.astimezone(cal.tz).isoformat()


def room_link(room_id: str) -> str:
    """A matrix.to link to a room (an id, no content)."""
    return f"https://matrix.to/#/{room_id}"


# ---------------------------------------------------------------- schedule maths


def _offsets(policy: SlaPolicy) -> dict[Step, timedelta]:
    """How much clock time after opening each step comes."""
    offsets = {Step.DUE: policy.window}
    hb = policy.heads_up_before
    if hb is not None and _ZERO < hb < policy.window:
        offsets[Step.HEADS_UP] = policy.window - hb
    if policy.escalate_after is not None and policy.supervisors:
        offsets[Step.ESCALATION] = policy.window + policy.escalate_after
    return offsets


def _advance(
    cal: WorkingCalendar, policy: SlaPolicy, start: datetime, amount: timedelta
) -> datetime:
    return cal.due_at(start, amount, policy.window_clock)


def _pause_extra(clock: Clock, policy: SlaPolicy, cal: WorkingCalendar) -> timedelta:
    """Clock time not counted: finished pauses plus the running one up to its expected end."""
    extra = clock.paused_total
    if clock.paused_since is not None and clock.resume_at is not None:
        extra += cal.elapsed(clock.paused_since, clock.resume_at, policy.window_clock)
    return extra


def _reschedule(
    clock: Clock, policy: SlaPolicy, cal: WorkingCalendar, pivot: datetime
) -> tuple[Clock, list[Effect]]:
    """Recompute the steps still ahead of `pivot` and re-arm the timers that moved.

    A step is at the instant its clock time (elapsed since opening, minus pauses) reaches
    its offset. Steps done, or already due at `pivot`, keep their time.
    """
    extra = _pause_extra(clock, policy, cal)
    changes: dict[Step, datetime] = {}
    effects: list[Effect] = []
    for step, offset in _offsets(policy).items():
        old = clock.step_at(step)
        if step.value in clock.steps_done or old is None or old <= pivot:
            continue
        new = _advance(cal, policy, clock.opened_at, offset + extra)
        if new != old:
            changes[step] = new
            effects.append(ScheduleTimer(clock.timer_id(step), step.timer_kind, new, clock.pair_id))
    return _with_times(clock, changes), effects


def _settle(clock: Clock, policy: SlaPolicy, cal: WorkingCalendar, now: datetime) -> Clock:
    """Fold a pause whose expected end has passed (its times were computed for that end)."""
    if clock.paused_since is None or clock.resume_at is None or clock.resume_at > now:
        return clock
    paused = cal.elapsed(clock.paused_since, clock.resume_at, policy.window_clock)
    return replace(
        clock, paused_since=None, resume_at=None, paused_total=clock.paused_total + paused
    )


def _with_times(clock: Clock, times: dict[Step, datetime]) -> Clock:
    """`clock` with the given steps' times replaced."""
    if not times:
        return clock
    return replace(
        clock,
        heads_up_at=times.get(Step.HEADS_UP, clock.heads_up_at),
        due_at=times.get(Step.DUE, clock.due_at),
        escalate_at=times.get(Step.ESCALATION, clock.escalate_at),
    )


def _cancel_all(clock: Clock) -> list[Effect]:
    return [CancelTimer(clock.timer_id(step)) for step in Step]


# ---------------------------------------------------------------- patient message


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
    offsets = _offsets(policy)
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
    extra = _pause_extra(opened, policy, cal)
    times = {step: _advance(cal, policy, now, offset + extra) for step, offset in offsets.items()}
    opened = _with_times(opened, times)

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
                "due_at": _iso(opened.due_at),
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

    if policy.patient_notice == "always" or (
        policy.patient_notice == "out_of_hours" and out_of_hours
    ):
        context: dict[str, Any] = {
            "pair_label": pair.label or pair.pair_id,
            "due_at": _iso(opened.due_at),
            "due_at_local": _local_iso(opened.due_at, cal),
            "timezone": cal.tz.key,
            "out_of_hours": out_of_hours,
            "therapist_away": away is not None and away.active(now),
        }
        if out_of_hours and policy.crisis_line:
            context["crisis_line"] = policy.crisis_line
        effects.append(
            SendMessage(
                pair.room_id,
                "sla_expected_reply",
                context,
                txn_id=f"sla:{pair.pair_id}:{cid}:notice",
                pair_id=pair.pair_id,
            )
        )
    return opened, effects


# ---------------------------------------------------------------- therapist message


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
    """
    now = as_utc(now)
    if clock is None or not clock.is_open or is_command or kind not in CONVERSATIONAL_KINDS:
        return clock, []
    clock = _settle(clock, policy, cal, now)
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
            "opened_at": _iso(clock.opened_at),
            "due_at": _iso(clock.due_at),
            "response_seconds_working": int(working.total_seconds()),
            "response_seconds_calendar": int(calendar.total_seconds()),
            "paused_seconds": int(paused_total.total_seconds()),
            "met": met,
        },
        event_id=event_id,
    )
    return closed, [*_cancel_all(clock), audit]


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
    return cancelled, [*_cancel_all(clock), audit]


# ---------------------------------------------------------------- timers


def _deliverable(cal: WorkingCalendar, policy: SlaPolicy, now: datetime) -> bool:
    """Whether a reminder may go out at `now`: open, or closed less than the grace ago."""
    if cal.is_open(now):
        return True
    grace = policy.reminder_grace
    return grace > _ZERO and cal.working_time_between(now - grace, now) > _ZERO


def _desk_context(
    clock: Clock, pair: Pair, cal: WorkingCalendar, step: Step, now: datetime, covering: bool
) -> dict[str, Any]:
    return {
        "pair_id": pair.pair_id,
        "pair_label": pair.label or pair.pair_id,
        "room_id": pair.room_id,
        "room_link": room_link(pair.room_id),
        "therapist_id": clock.therapist_id,
        "step": step.value,
        "opened_at": _iso(clock.opened_at),
        "due_at": _iso(clock.due_at),
        "due_at_local": _local_iso(clock.due_at, cal),
        "timezone": cal.tz.key,
        "overdue": now > clock.due_at,
        "covering": covering,
    }


def _email_context(context: dict[str, Any]) -> dict[str, Any]:
    """The e-mail gets the pair label, due time and link only: nothing clinical."""
    keys = ("pair_label", "room_link", "due_at", "due_at_local", "timezone", "step")
    return {key: context[key] for key in keys}


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
    clock = _settle(clock, policy, cal, now)
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
                {"clock_id": clock.clock_id, "due_at": _iso(clock.due_at)},
            )
        )

    if (step is Step.HEADS_UP and now >= clock.due_at) or (
        step is Step.DUE and not policy.remind_at_due
    ):
        # A heads-up after due is pointless; without a due reminder only the breach is recorded.
        done.add(step.value)
        return replace(clock, steps_done=frozenset(done)), effects

    if not _deliverable(cal, policy, now):
        effects.append(
            ScheduleTimer(timer_id, step.timer_kind, cal.next_opening(now), clock.pair_id)
        )
        return replace(clock, steps_done=frozenset(done)), effects

    if step is Step.ESCALATION:
        effects += _escalate(clock, pair, policy, cal, timer_id, supervisors, now)
    else:
        effects += _remind(clock, pair, policy, cal, step, timer_id, therapist, away, now)
    done.add(step.value)

    if policy.tell_patient_on_breach and BREACHED in done and PATIENT_TOLD not in done:
        done.add(PATIENT_TOLD)
        effects.append(
            SendMessage(
                pair.room_id,
                "sla_breach_patient",
                {"pair_label": pair.label or pair.pair_id, "due_at": _iso(clock.due_at)},
                txn_id=f"sla:{clock.pair_id}:{clock.clock_id}:breach_notice",
                pair_id=clock.pair_id,
            )
        )
    return replace(clock, steps_done=frozenset(done)), effects


def _remind(
    clock: Clock,
    pair: Pair,
    policy: SlaPolicy,
    cal: WorkingCalendar,
    step: Step,
    timer_id: str,
    therapist: Desk,
    away: Away | None,
    now: datetime,
) -> list[Effect]:
    covering = away is not None and away.active(now) and away.cover is not None
    desk = away.cover if covering and away is not None and away.cover is not None else therapist
    context = _desk_context(clock, pair, cal, step, now, covering)
    template = "sla_heads_up" if step is Step.HEADS_UP else "sla_reminder"
    effects: list[Effect] = []
    if desk.room_id:
        effects.append(
            SendMessage(
                desk.room_id, template, context, txn_id=f"{timer_id}:desk", pair_id=pair.pair_id
            )
        )
    if policy.email_reminders and desk.email:
        effects.append(SendEmail(desk.email, f"{template}_email", _email_context(context)))
    outcome = "ok" if effects else "no_recipient"
    effects.append(
        AppendAudit(
            clock.pair_id,
            "sla.reminded",
            ACTOR,
            {
                "clock_id": clock.clock_id,
                "step": step.value,
                "to": desk.user_id,
                "covering": covering,
                "due_at": _iso(clock.due_at),
            },
            outcome=outcome,
        )
    )
    return effects


def _escalate(
    clock: Clock,
    pair: Pair,
    policy: SlaPolicy,
    cal: WorkingCalendar,
    timer_id: str,
    supervisors: Sequence[Desk],
    now: datetime,
) -> list[Effect]:
    context = _desk_context(clock, pair, cal, Step.ESCALATION, now, covering=False)
    effects: list[Effect] = []
    reached: list[str] = []
    for desk in supervisors:
        sent = False
        if desk.room_id:
            effects.append(
                SendMessage(
                    desk.room_id,
                    "sla_escalation",
                    context,
                    txn_id=f"{timer_id}:{_short(desk.user_id)}",
                    pair_id=pair.pair_id,
                )
            )
            sent = True
        if policy.email_reminders and desk.email:
            effects.append(SendEmail(desk.email, "sla_escalation_email", _email_context(context)))
            sent = True
        if sent:
            reached.append(desk.user_id)
    effects.append(
        AppendAudit(
            clock.pair_id,
            "sla.escalated",
            ACTOR,
            {"clock_id": clock.clock_id, "to": reached, "due_at": _iso(clock.due_at)},
            outcome="ok" if reached else "no_recipient",
        )
    )
    return effects


# ---------------------------------------------------------------- away / back


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
    clock = _settle(clock, policy, cal, now)
    if away.cover is not None or not away.active(now):
        return therapist_back(clock, policy, cal, now)
    since = clock.paused_since or now
    paused = replace(clock, paused_since=since, resume_at=as_utc(away.until))
    paused, effects = _reschedule(paused, policy, cal, pivot=since)
    effects.append(
        AppendAudit(
            clock.pair_id,
            "sla.paused",
            ACTOR,
            {
                "clock_id": clock.clock_id,
                "until": _iso(away.until),
                "due_at": _iso(paused.due_at),
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
    clock = _settle(clock, policy, cal, now)
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
    resumed, effects = _reschedule(resumed, policy, cal, pivot=since)
    effects.append(
        AppendAudit(
            clock.pair_id,
            "sla.resumed",
            ACTOR,
            {"clock_id": clock.clock_id, "due_at": _iso(resumed.due_at)},
        )
    )
    return resumed, effects


def open_clocks_by_due(clocks: Iterable[Clock]) -> list[Clock]:
    """Open clocks, soonest due first (for `!due`)."""
    return sorted((c for c in clocks if c.is_open), key=lambda c: (c.due_at, c.pair_id))


__all__ = [
    "ACTOR",
    "BREACHED",
    "PATIENT_TOLD",
    "Away",
    "Clock",
    "ClockState",
    "Desk",
    "SlaPolicy",
    "Step",
    "TimerRef",
    "cancel_clock",
    "clock_id_for",
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
