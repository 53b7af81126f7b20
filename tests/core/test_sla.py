"""The SLA clock state machine: opening, closing, timers, deferral, away and stable ids."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest

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
from bridge.core.sla import (
    BREACHED,
    ESCALATION_RETRY,
    ESCALATION_WAITING,
    MAX_BACKDATE,
    Away,
    Clock,
    ClockState,
    Desk,
    SlaPolicy,
    Step,
    cancel_clock,
    clock_id_for,
    message_time,
    on_patient_message,
    on_therapist_message,
    on_timer,
    open_clocks_by_due,
    parse_timer_id,
    therapist_away,
    therapist_back,
    timer_id,
)
from bridge.core.sla.hours import HOLD_REACH, held_until
from bridge.core.workhours import WorkingCalendar, calendar_from

BERLIN = ZoneInfo("Europe/Berlin")
H = timedelta(hours=1)
CAL = WorkingCalendar(BERLIN, {d: [(time(9), time(17))] for d in range(5)})
PAIR = Pair("p1", "@pat:practice", "@doc:practice", "!pair:practice", label="7F3A")
THERAPIST = Desk("@doc:practice", "!desk-doc:practice", "doc@practice.example")
COVER = Desk("@cover:practice", "!desk-cover:practice", "cover@practice.example")
SUPERVISOR = Desk("@sup:practice", "!desk-sup:practice", "sup@practice.example")
POLICY = SlaPolicy(
    window=4 * H,
    heads_up_before=1 * H,
    escalate_after=2 * H,
    supervisors=("@sup:practice",),
    crisis_line="+49 30 0000",
)


def berlin(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=BERLIN).astimezone(UTC)


WED_10 = berlin(2025, 6, 4, 10)  # a Wednesday in working hours


T = TypeVar("T")


def of_type(effects: list[Effect], kind: type[T]) -> list[T]:
    return [e for e in effects if isinstance(e, kind)]


def audits(effects: list[Effect]) -> list[str]:
    return [e.action for e in of_type(effects, AppendAudit)]


def open_clock(
    now: datetime = WED_10, policy: SlaPolicy = POLICY, **kw: Any
) -> tuple[Clock, list[Effect]]:
    clock, effects = on_patient_message(None, PAIR, policy, CAL, Kind.TEXT, "$e1", now, **kw)
    assert clock is not None
    return clock, effects


def fire(
    clock: Clock | None,
    step: Step,
    now: datetime,
    policy: SlaPolicy = POLICY,
    **kw: Any,
) -> tuple[Clock | None, list[Effect]]:
    assert clock is not None
    kw.setdefault("supervisors", [SUPERVISOR])
    return on_timer(
        clock,
        clock.timer_id(step),
        now,
        pair=PAIR,
        policy=policy,
        cal=CAL,
        therapist=THERAPIST,
        **kw,
    )


# ---------------------------------------------------------------- opening


def test_first_message_opens_a_clock_with_three_timers() -> None:
    clock, effects = open_clock()
    assert clock.state is ClockState.OPEN
    assert clock.opened_at == WED_10
    assert (clock.heads_up_at, clock.due_at, clock.escalate_at) == (
        berlin(2025, 6, 4, 13),
        berlin(2025, 6, 4, 14),
        berlin(2025, 6, 4, 16),
    )
    assert clock.therapist_id == "@doc:practice"
    timers = {t.timer_kind: t for t in of_type(effects, ScheduleTimer)}
    assert set(timers) == {"sla.heads_up", "sla.due", "sla.escalation"}
    assert timers["sla.due"].at == clock.due_at
    assert timers["sla.due"].timer_id == f"sla:p1:{clock.clock_id}:due"
    assert all(t.pair_id == "p1" for t in timers.values())
    assert audits(effects) == ["sla.opened"]
    opened = of_type(effects, AppendAudit)[0]
    assert opened.event_id == "$e1"
    assert opened.details["due_at"] == clock.due_at.isoformat()
    # in working hours and policy "out_of_hours": no notice to the patient
    assert of_type(effects, SendMessage) == []


@pytest.mark.parametrize("kind", sorted(CONVERSATIONAL_KINDS))
def test_every_conversational_kind_opens(kind: Kind) -> None:
    clock, _ = on_patient_message(None, PAIR, POLICY, CAL, kind, "$e1", WED_10)
    assert clock is not None and clock.is_open
    assert clock.first_kind == kind.value


@pytest.mark.parametrize(
    "kind", [Kind.REACTION, Kind.EDIT, Kind.REDACTION, Kind.MEMBERSHIP, Kind.STATE, Kind.NOTICE]
)
def test_non_messages_do_not_open(kind: Kind) -> None:
    assert on_patient_message(None, PAIR, POLICY, CAL, kind, "$e1", WED_10) == (None, [])


def test_later_patient_messages_do_not_move_the_clock() -> None:
    clock, _ = open_clock()
    for i, kind in enumerate([Kind.VOICE, Kind.EMAIL, Kind.TEXT]):
        later = WED_10 + (i + 1) * H
        again, effects = on_patient_message(clock, PAIR, POLICY, CAL, kind, f"$e{i}", later)
        assert again is clock
        assert effects == []


@pytest.mark.parametrize(
    ("kw", "opens"),
    [
        ({"live_session": True}, False),
        ({"consent_pending": True}, False),
        ({"explicit_reply_request": True, "live_session": True}, False),
        ({}, True),
    ],
)
def test_no_clock_during_live_session_or_pending_consent(kw: dict[str, bool], opens: bool) -> None:
    clock, effects = on_patient_message(None, PAIR, POLICY, CAL, Kind.TEXT, "$e1", WED_10, **kw)
    assert (clock is not None) is opens
    assert bool(effects) is opens


@pytest.mark.parametrize(
    ("kind", "explicit", "opens"),
    [
        (Kind.TEXT, False, False),  # journaling: no clock
        (Kind.VOICE, False, False),
        (Kind.TEXT, True, True),  # `!reply`
    ],
)
def test_reply_request_mode(kind: Kind, explicit: bool, opens: bool) -> None:
    policy = replace(POLICY, open_clock_on="reply_request")
    clock, _ = on_patient_message(
        None, PAIR, policy, CAL, kind, "$e1", WED_10, explicit_reply_request=explicit
    )
    assert (clock is not None) is opens


def test_explicit_reply_request_opens_in_any_message_mode_too() -> None:
    clock, _ = on_patient_message(
        None, PAIR, POLICY, CAL, Kind.OTHER, "$e1", WED_10, explicit_reply_request=True
    )
    assert clock is not None


@pytest.mark.parametrize(
    ("notice", "arrival", "sent", "crisis"),
    [
        ("out_of_hours", berlin(2025, 6, 6, 20), True, True),  # Friday evening
        ("out_of_hours", WED_10, False, False),
        ("always", WED_10, True, False),  # crisis line only out of hours
        ("always", berlin(2025, 6, 7, 11), True, True),  # Saturday
        ("never", berlin(2025, 6, 7, 11), False, False),
    ],
)
def test_patient_notice(notice: Any, arrival: datetime, sent: bool, crisis: bool) -> None:
    clock, effects = open_clock(arrival, replace(POLICY, patient_notice=notice))
    messages = of_type(effects, SendMessage)
    assert len(messages) == int(sent)
    if sent:
        (msg,) = messages
        assert msg.room_id == PAIR.room_id
        assert msg.template == "sla_expected_reply"
        assert msg.txn_id == f"sla:p1:{clock.clock_id}:notice"
        assert msg.context["due_at"] == clock.due_at.isoformat()
        assert msg.context["out_of_hours"] is not CAL.is_open(arrival)
        assert ("crisis_line" in msg.context) is crisis


def test_out_of_hours_arrival_is_due_after_the_next_opening() -> None:
    clock, effects = open_clock(berlin(2025, 6, 6, 20))  # Friday 20:00
    assert clock.due_at == berlin(2025, 6, 9, 13)  # Monday 09:00 + 4 h
    assert clock.heads_up_at == berlin(2025, 6, 9, 12)
    (msg,) = of_type(effects, SendMessage)
    assert msg.context["due_at_local"] == "2025-06-09T13:00:00+02:00"
    assert msg.context["crisis_line"] == "+49 30 0000"


def test_due_across_dst_keeps_the_wall_clock_hour() -> None:
    clock, _ = open_clock(berlin(2025, 3, 28, 16))  # Friday before spring forward
    assert clock.due_at.astimezone(BERLIN).hour == 12
    assert clock.due_at == datetime(2025, 3, 31, 10, tzinfo=UTC)


def test_calendar_window_escalates_even_without_policy_supervisors() -> None:
    # The therapist's own supervisor is looked up when the escalation fires, so the step is
    # armed whenever the policy escalates.
    policy = replace(POLICY, window_clock="calendar", window=24 * H, supervisors=())
    clock, effects = open_clock(policy=policy)
    assert clock.due_at == WED_10 + 24 * H
    assert clock.heads_up_at == WED_10 + 23 * H
    assert clock.escalate_at == clock.due_at + (POLICY.escalate_after or H)
    assert {t.timer_kind for t in of_type(effects, ScheduleTimer)} == {
        "sla.heads_up",
        "sla.due",
        "sla.escalation",
    }


def test_heads_up_not_shorter_than_the_window_means_none() -> None:
    clock, effects = open_clock(policy=replace(POLICY, heads_up_before=4 * H))
    assert clock.heads_up_at is None
    assert "sla.heads_up" not in {t.timer_kind for t in of_type(effects, ScheduleTimer)}


# ---------------------------------------------------------------- closing


def test_reply_before_the_heads_up_closes_and_cancels() -> None:
    clock, _ = open_clock()
    reply_at = WED_10 + 30 * timedelta(minutes=1)
    closed, effects = on_therapist_message(
        clock, POLICY, CAL, Kind.TEXT, "$r1", "@doc:practice", reply_at
    )
    assert closed is not None
    assert closed.state is ClockState.CLOSED
    assert closed.met is True
    assert closed.response_working == closed.response_calendar == timedelta(minutes=30)
    assert {c.timer_id for c in of_type(effects, CancelTimer)} == {
        clock.timer_id(step) for step in Step
    }
    (audit,) = of_type(effects, AppendAudit)
    assert audit.action == "sla.closed"
    assert audit.actor == "@doc:practice"
    assert audit.event_id == "$r1"
    assert audit.details["response_seconds_working"] == 1800
    assert audit.details["met"] is True
    # the heads-up timer, if it still fires, does nothing
    assert fire(closed, Step.HEADS_UP, berlin(2025, 6, 4, 13)) == (closed, [])


def test_late_reply_over_the_weekend() -> None:
    clock, _ = open_clock(berlin(2025, 6, 6, 15))  # Friday 15:00, due Monday 11:00
    closed, effects = on_therapist_message(
        clock, POLICY, CAL, Kind.VOICE, "$r1", "@doc:practice", berlin(2025, 6, 9, 12)
    )
    assert closed is not None and closed.met is False
    assert closed.response_working == 5 * H
    assert closed.response_calendar == 69 * H
    assert of_type(effects, AppendAudit)[0].details["response_seconds_calendar"] == 69 * 3600


@pytest.mark.parametrize(
    ("kind", "is_command"),
    [(Kind.REACTION, False), (Kind.EDIT, False), (Kind.TEXT, True)],
)
def test_reactions_edits_and_commands_do_not_close(kind: Kind, is_command: bool) -> None:
    clock, _ = open_clock()
    result = on_therapist_message(
        clock, POLICY, CAL, kind, "$r", "@doc:practice", WED_10 + H, is_command=is_command
    )
    assert result == (clock, [])


def test_no_clock_nothing_to_close() -> None:
    assert on_therapist_message(None, POLICY, CAL, Kind.TEXT, "$r", "@d", WED_10) == (None, [])


def test_new_clock_after_close() -> None:
    clock, _ = open_clock()
    closed, _ = on_therapist_message(clock, POLICY, CAL, Kind.TEXT, "$r", "@d", WED_10 + H)
    again, _ = on_patient_message(closed, PAIR, POLICY, CAL, Kind.TEXT, "$e2", WED_10 + 2 * H)
    assert again is not None and again.is_open
    assert again.clock_id != clock.clock_id
    # a timer of the old clock is ignored by the new one
    stale = on_timer(
        again,
        clock.timer_id(Step.DUE),
        berlin(2025, 6, 4, 14),
        pair=PAIR,
        policy=POLICY,
        cal=CAL,
        therapist=THERAPIST,
    )
    assert stale == (again, [])


def test_cancel_clock() -> None:
    clock, _ = open_clock()
    cancelled, effects = cancel_clock(clock, "pair_closed", WED_10 + H)
    assert cancelled is not None and cancelled.state is ClockState.CANCELLED
    assert len(of_type(effects, CancelTimer)) == 3
    assert audits(effects) == ["sla.cancelled"]
    assert cancel_clock(cancelled, "again", WED_10 + 2 * H) == (cancelled, [])


# ---------------------------------------------------------------- timers


def test_heads_up_goes_to_the_desk_room() -> None:
    clock, _ = open_clock()
    after, effects = fire(clock, Step.HEADS_UP, berlin(2025, 6, 4, 13))
    assert after is not None and Step.HEADS_UP.value in after.steps_done
    (msg,) = of_type(effects, SendMessage)
    assert msg.room_id == THERAPIST.room_id
    assert msg.template == "sla_heads_up"
    assert msg.txn_id == f"{clock.timer_id(Step.HEADS_UP)}:desk"
    assert msg.context["room_link"] == "https://matrix.to/#/!pair:practice"
    assert msg.context["pair_label"] == "7F3A"
    assert audits(effects) == ["sla.reminded"]
    # the same timer again (a retry) does nothing
    assert fire(after, Step.HEADS_UP, berlin(2025, 6, 4, 13)) == (after, [])


def test_due_records_the_breach_and_reminds() -> None:
    clock, _ = open_clock()
    after, effects = fire(clock, Step.DUE, berlin(2025, 6, 4, 14))
    assert after is not None
    assert {BREACHED, "due"} <= after.steps_done
    assert audits(effects) == ["sla.breached", "sla.reminded"]
    (msg,) = of_type(effects, SendMessage)
    assert msg.template == "sla_reminder"
    assert msg.room_id == THERAPIST.room_id
    # nothing went to the patient: the policy does not tell them
    assert all(m.room_id != PAIR.room_id for m in of_type(effects, SendMessage))


def test_due_timer_a_hair_early_still_counts_as_the_breach() -> None:
    policy = replace(POLICY, tell_patient_on_breach=True)
    clock, _ = open_clock(WED_10 + timedelta(microseconds=700), policy)
    early = clock.due_at - timedelta(microseconds=700)  # the stored, truncated time
    after, effects = fire(clock, Step.DUE, early, policy)
    assert after is not None and BREACHED in after.steps_done
    assert "sla_breach_patient" in [m.template for m in of_type(effects, SendMessage)]


def test_patient_told_on_breach_once() -> None:
    policy = replace(POLICY, tell_patient_on_breach=True)
    clock, _ = open_clock(policy=policy)
    after, effects = fire(clock, Step.DUE, berlin(2025, 6, 4, 14), policy)
    to_patient = [m for m in of_type(effects, SendMessage) if m.room_id == PAIR.room_id]
    assert [m.template for m in to_patient] == ["sla_breach_patient"]
    _, effects = fire(after, Step.ESCALATION, berlin(2025, 6, 4, 16), policy)
    assert all(m.room_id != PAIR.room_id for m in of_type(effects, SendMessage))


def test_heads_up_after_due_is_dropped() -> None:
    clock, _ = open_clock()
    after, effects = fire(clock, Step.HEADS_UP, berlin(2025, 6, 4, 14, 30))
    assert after is not None and "heads_up" in after.steps_done
    assert of_type(effects, SendMessage) == []


def test_calendar_reminder_and_escalation_reach_people_at_night() -> None:
    # A round-the-clock policy reminds round the clock unless it says otherwise.
    policy = replace(POLICY, window_clock="calendar", window=12 * H, heads_up_before=None)
    clock, _ = open_clock(policy=policy)  # Wednesday 10:00, due 22:00
    after, effects = fire(clock, Step.DUE, clock.due_at, policy)
    assert after is not None and "due" in after.steps_done
    assert audits(effects) == ["sla.breached", "sla.reminded"]
    assert of_type(effects, ScheduleTimer) == []
    assert after.escalate_at == berlin(2025, 6, 5, 0)
    final, effects = fire(after, Step.ESCALATION, after.escalate_at, policy)
    assert final is not None and "escalation" in final.steps_done
    assert audits(effects) == ["sla.escalated"]


def test_working_policy_may_escalate_at_any_hour() -> None:
    # Window in working time, but the crisis escalation reaches supervisors at night.
    policy = replace(POLICY, escalate_after=3 * H, escalate_during="any_time")
    clock, _ = open_clock(berlin(2025, 6, 4, 13), policy=policy)  # due 17:00
    assert clock.escalate_at is not None
    # Three working hours after Wednesday 17:00 is Thursday 12:00 in the working clock.
    assert clock.escalate_at == berlin(2025, 6, 5, 12)
    _, effects = fire(clock, Step.DUE, berlin(2025, 6, 4, 20), policy)  # held: closed
    assert [t.at for t in of_type(effects, ScheduleTimer)] == [
        held_until(CAL, clock.due_at, berlin(2025, 6, 4, 20))
    ]
    night = replace(clock, escalate_at=berlin(2025, 6, 4, 23))
    _, effects = fire(night, Step.ESCALATION, berlin(2025, 6, 4, 23), policy)
    assert audits(effects) == ["sla.breached", "sla.escalated"]


def test_reminder_outside_hours_waits_for_the_next_opening() -> None:
    policy = replace(
        POLICY,
        window_clock="calendar",
        window=12 * H,
        heads_up_before=None,
        remind_during="opening_hours",
    )
    clock, _ = open_clock(policy=policy)  # Wednesday 10:00, due 22:00
    assert clock.due_at == berlin(2025, 6, 4, 22)
    after, effects = fire(clock, Step.DUE, clock.due_at, policy)
    assert after is not None
    assert audits(effects) == ["sla.breached"]
    (deferred,) = of_type(effects, ScheduleTimer)
    assert deferred.timer_id == clock.timer_id(Step.DUE)
    assert berlin(2025, 6, 5, 9) <= deferred.at < berlin(2025, 6, 5, 9, 6)
    assert of_type(effects, SendMessage) == []
    # at the opening it goes out, and the breach is not recorded twice
    final, effects = fire(after, Step.DUE, deferred.at, policy)
    assert final is not None and "due" in final.steps_done
    assert audits(effects) == ["sla.reminded"]
    assert [m.template for m in of_type(effects, SendMessage)] == ["sla_reminder"]


def test_reminder_at_closing_time_is_sent_within_the_grace() -> None:
    clock, _ = open_clock(berlin(2025, 6, 4, 13))  # due 17:00, exactly at closing
    assert clock.due_at == berlin(2025, 6, 4, 17)
    _, effects = fire(clock, Step.DUE, berlin(2025, 6, 4, 17, 0, 1))
    assert [m.template for m in of_type(effects, SendMessage)] == ["sla_reminder"]
    _, effects = fire(clock, Step.DUE, berlin(2025, 6, 4, 17, 30))  # the bridge was down
    assert [t.at for t in of_type(effects, ScheduleTimer)] == [
        held_until(CAL, clock.due_at, berlin(2025, 6, 4, 17, 30))
    ]


def test_escalation_reaches_every_supervisor() -> None:
    second = Desk("@sup2:practice", "!dm-sup2:practice")
    clock, _ = open_clock()
    clock, _ = fire(clock, Step.DUE, berlin(2025, 6, 4, 14))
    after, effects = fire(
        clock, Step.ESCALATION, berlin(2025, 6, 4, 16), supervisors=[SUPERVISOR, second]
    )
    assert after is not None and "escalation" in after.steps_done
    messages = of_type(effects, SendMessage)
    assert [m.room_id for m in messages] == [SUPERVISOR.room_id, second.room_id]
    assert {m.template for m in messages} == {"sla_escalation"}
    assert len({m.txn_id for m in messages}) == 2
    (audit,) = of_type(effects, AppendAudit)
    assert audit.action == "sla.escalated"
    assert audit.details["to"] == ["@sup:practice", "@sup2:practice"]


def test_escalation_without_a_reachable_supervisor_stays_open_and_is_retried() -> None:
    clock, _ = open_clock()
    at = berlin(2025, 6, 4, 16)
    waiting, effects = fire(clock, Step.ESCALATION, at, supervisors=[])
    assert [(a.action, a.outcome) for a in of_type(effects, AppendAudit)] == [
        ("sla.breached", "ok"),
        ("sla.escalation_waiting", "no_recipient"),
    ]
    assert waiting is not None
    assert "escalation" not in waiting.steps_done and ESCALATION_WAITING in waiting.steps_done
    (retry,) = of_type(effects, ScheduleTimer)
    assert (retry.timer_id, retry.at) == (clock.timer_id(Step.ESCALATION), at + ESCALATION_RETRY)
    # Still nobody: tried again, not audited again.
    again, effects = fire(waiting, Step.ESCALATION, retry.at, supervisors=[])
    assert audits(effects) == [] and len(of_type(effects, ScheduleTimer)) == 1
    # A desk exists now: the escalation goes out once and the step is done.
    assert again is not None
    done, effects = fire(again, Step.ESCALATION, retry.at + ESCALATION_RETRY)
    assert done is not None and "escalation" in done.steps_done
    assert ESCALATION_WAITING not in done.steps_done
    assert audits(effects) == ["sla.escalated"]
    assert [m.room_id for m in of_type(effects, SendMessage)] == [SUPERVISOR.room_id]


def test_expected_reply_quotes_when_a_reminder_backs_it() -> None:
    # Calendar window ending at night with reminders held until opening: the patient is
    # told the next opening, not a time no reminder backs.
    held = replace(
        POLICY,
        window_clock="calendar",
        window=12 * H,
        patient_notice="always",
        remind_during="opening_hours",
    )
    _, effects = open_clock(policy=held)  # due 22:00
    (notice,) = [m for m in of_type(effects, SendMessage) if m.template == "sla_expected_reply"]
    assert (
        notice.context["due_at"]
        == held_until(CAL, berlin(2025, 6, 4, 22), berlin(2025, 6, 4, 22)).isoformat()
    )
    _, effects = open_clock(policy=replace(held, remind_during=None))
    (notice,) = [m for m in of_type(effects, SendMessage) if m.template == "sla_expected_reply"]
    assert notice.context["due_at"] == berlin(2025, 6, 4, 22).isoformat()


def test_remind_at_due_off_only_records_the_breach() -> None:
    policy = replace(POLICY, remind_at_due=False)
    clock, _ = open_clock(policy=policy)
    _, effects = fire(clock, Step.DUE, berlin(2025, 6, 4, 14), policy)
    assert audits(effects) == ["sla.breached"]
    assert of_type(effects, SendMessage) == []


def test_email_reminder_carries_no_content() -> None:
    policy = replace(POLICY, email_reminders=True)
    clock, _ = open_clock(policy=policy)
    _, effects = fire(clock, Step.DUE, berlin(2025, 6, 4, 14), policy)
    (mail,) = of_type(effects, SendEmail)
    assert mail.to == THERAPIST.email
    assert mail.template == "sla_reminder_email"
    assert set(mail.context) == {
        "pair_label",
        "room_link",
        "due_at",
        "due_at_local",
        "timezone",
        "step",
    }


def test_early_timer_is_rearmed_for_the_step_time() -> None:
    clock, _ = open_clock()
    after, effects = fire(clock, Step.DUE, berlin(2025, 6, 4, 12))
    assert after == clock
    assert effects == [ScheduleTimer(clock.timer_id(Step.DUE), "sla.due", clock.due_at, "p1")]


def test_unknown_timer_ids_do_nothing() -> None:
    clock, _ = open_clock()
    for tid in ("other:1", "sla:p1:zz:due", f"sla:p2:{clock.clock_id}:due", "sla:p1:x:nope"):
        result = on_timer(
            clock, tid, WED_10, pair=PAIR, policy=POLICY, cal=CAL, therapist=THERAPIST
        )
        assert result == (clock, [])
    assert on_timer(
        None, "sla:p1:x:due", WED_10, pair=PAIR, policy=POLICY, cal=CAL, therapist=THERAPIST
    ) == (None, [])


# ---------------------------------------------------------------- away


def test_away_with_cover_sends_reminders_to_the_cover() -> None:
    clock, _ = open_clock()
    away = Away(until=berlin(2025, 6, 10), cover=COVER)
    same, effects = therapist_away(clock, POLICY, CAL, away, WED_10 + timedelta(minutes=5))
    assert same == clock and effects == []  # the due time stays
    _, effects = fire(clock, Step.DUE, clock.due_at, away=away)
    (msg,) = of_type(effects, SendMessage)
    assert msg.room_id == COVER.room_id
    assert msg.context["covering"] is True
    assert of_type(effects, AppendAudit)[-1].details["to"] == COVER.user_id
    # once the absence is over the therapist gets them again
    later_clock, _ = open_clock(berlin(2025, 6, 11, 10))
    _, effects = fire(later_clock, Step.DUE, later_clock.due_at, away=away)
    assert of_type(effects, SendMessage)[0].room_id == THERAPIST.room_id


def test_away_without_cover_pauses_and_moves_the_timers() -> None:
    clock, _ = open_clock()  # Wednesday 10:00, due 14:00
    left = berlin(2025, 6, 4, 11)
    away = Away(until=berlin(2025, 6, 5, 12))  # back Thursday noon
    paused, effects = therapist_away(clock, POLICY, CAL, away, left)
    assert paused is not None and paused.is_paused
    # one working hour was used before leaving, three remain from Thursday noon
    assert paused.due_at == berlin(2025, 6, 5, 15)
    assert paused.heads_up_at == berlin(2025, 6, 5, 14)
    assert paused.escalate_at == berlin(2025, 6, 5, 17)
    moved = {t.timer_kind: t.at for t in of_type(effects, ScheduleTimer)}
    assert moved == {
        "sla.heads_up": paused.heads_up_at,
        "sla.due": paused.due_at,
        "sla.escalation": paused.escalate_at,
    }
    assert audits(effects) == ["sla.paused"]
    # the old due timer, had it fired, is re-armed for the new time
    _, effects = fire(paused, Step.DUE, clock.due_at)
    assert effects == [ScheduleTimer(clock.timer_id(Step.DUE), "sla.due", paused.due_at, "p1")]

    # back early, Thursday 10:00: the remaining three hours count from now
    back, effects = therapist_back(paused, POLICY, CAL, berlin(2025, 6, 5, 10))
    assert back is not None and not back.is_paused
    assert back.due_at == berlin(2025, 6, 5, 13)
    assert back.paused_total == 7 * H  # Wednesday 11-17 and Thursday 9-10
    assert {t.timer_kind for t in of_type(effects, ScheduleTimer)} == {
        "sla.heads_up",
        "sla.due",
        "sla.escalation",
    }
    assert audits(effects) == ["sla.resumed"]


def test_pause_ends_by_itself_at_until() -> None:
    clock, _ = open_clock()
    paused, _ = therapist_away(
        clock, POLICY, CAL, Away(until=berlin(2025, 6, 5, 12)), berlin(2025, 6, 4, 11)
    )
    assert paused is not None
    after, effects = fire(paused, Step.DUE, paused.due_at)
    assert after is not None and not after.is_paused
    assert after.paused_total == 9 * H  # Wednesday 11-17 and Thursday 9-12
    assert [m.room_id for m in of_type(effects, SendMessage)] == [THERAPIST.room_id]


def test_extending_an_absence_moves_the_timers_again() -> None:
    clock, _ = open_clock()
    left = berlin(2025, 6, 4, 11)
    paused, _ = therapist_away(clock, POLICY, CAL, Away(until=berlin(2025, 6, 5, 12)), left)
    longer, _ = therapist_away(paused, POLICY, CAL, Away(until=berlin(2025, 6, 6, 12)), left + H)
    assert longer is not None and longer.paused_since == left
    assert longer.due_at == berlin(2025, 6, 6, 15)


def test_cover_named_later_resumes_a_paused_clock() -> None:
    clock, _ = open_clock()
    paused, _ = therapist_away(
        clock, POLICY, CAL, Away(until=berlin(2025, 6, 6)), berlin(2025, 6, 4, 11)
    )
    covered, effects = therapist_away(
        paused, POLICY, CAL, Away(until=berlin(2025, 6, 6), cover=COVER), berlin(2025, 6, 4, 12)
    )
    assert covered is not None and not covered.is_paused
    assert covered.due_at == berlin(2025, 6, 4, 15)  # one hour paused
    assert audits(effects) == ["sla.resumed"]


def test_clock_opened_while_away_without_cover_starts_paused() -> None:
    away = Away(until=berlin(2025, 6, 5, 9))
    policy = replace(POLICY, patient_notice="always")
    clock, effects = open_clock(WED_10, policy, away=away)
    assert clock.is_paused
    assert clock.due_at == berlin(2025, 6, 5, 13)
    (msg,) = of_type(effects, SendMessage)
    assert msg.context["therapist_away"] is True
    assert msg.context["due_at"] == clock.due_at.isoformat()


def test_reply_during_a_pause_closes_with_the_paused_time() -> None:
    clock, _ = open_clock()
    paused, _ = therapist_away(
        clock, POLICY, CAL, Away(until=berlin(2025, 6, 6)), berlin(2025, 6, 4, 11)
    )
    closed, effects = on_therapist_message(
        paused, POLICY, CAL, Kind.TEXT, "$r", "@doc:practice", berlin(2025, 6, 4, 15)
    )
    assert closed is not None and closed.met is True and not closed.is_paused
    assert closed.paused_total == 4 * H
    assert of_type(effects, AppendAudit)[0].details["paused_seconds"] == 4 * 3600


def test_back_without_a_pause_does_nothing() -> None:
    clock, _ = open_clock()
    assert therapist_back(clock, POLICY, CAL, WED_10 + H) == (clock, [])


# ---------------------------------------------------------------- ids


def test_ids_are_stable_and_parse_back() -> None:
    first = on_patient_message(
        None, PAIR, POLICY, CAL, Kind.TEXT, "$e1:practice", berlin(2025, 6, 6, 20)
    )
    second = on_patient_message(
        None, PAIR, POLICY, CAL, Kind.TEXT, "$e1:practice", berlin(2025, 6, 6, 20)
    )
    assert first == second
    clock = first[0]
    assert clock is not None
    assert clock.clock_id == clock_id_for("p1", "$e1:practice")
    assert clock.clock_id != clock_id_for("p2", "$e1:practice")
    for step in Step:
        ref = parse_timer_id(timer_id("pair:with:colons", clock.clock_id, step))
        assert ref is not None
        assert (ref.pair_id, ref.clock_id, ref.step) == ("pair:with:colons", clock.clock_id, step)
    assert parse_timer_id("session:x") is None


def test_timer_effects_are_deterministic() -> None:
    clock, _ = open_clock()
    a = fire(clock, Step.DUE, berlin(2025, 6, 4, 14))
    b = fire(clock, Step.DUE, berlin(2025, 6, 4, 14))
    assert a == b


def test_open_clocks_by_due() -> None:
    early, _ = open_clock(berlin(2025, 6, 4, 9))
    late, _ = open_clock(berlin(2025, 6, 4, 11))
    closed, _ = on_therapist_message(
        early, POLICY, CAL, Kind.TEXT, "$r", "@d", berlin(2025, 6, 4, 12)
    )
    assert closed is not None
    assert open_clocks_by_due([late, early]) == [early, late]
    assert open_clocks_by_due([late, closed]) == [late]


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="positive"):
        SlaPolicy(window=timedelta(0))
    with pytest.raises(ValueError, match="escalate_after"):
        SlaPolicy(window=H, escalate_after=-H)


def test_calendar_with_public_holidays() -> None:
    cal = calendar_from(
        "Europe/Berlin",
        {d: [(time(9), time(17))] for d in range(5)},
        country="DE",
        subdivision="BE",
    )
    clock, _ = on_patient_message(
        None, PAIR, POLICY, cal, Kind.EMAIL, "$e1", berlin(2025, 4, 17, 16)
    )
    assert clock is not None
    assert clock.due_at == berlin(2025, 4, 22, 12)  # across Good Friday and Easter Monday


# ---------------------------------------------------------------- message time


def test_message_time_is_the_origin_bounded_by_when_it_was_seen() -> None:
    seen = WED_10
    assert message_time(seen - 40 * H, seen) == seen - 40 * H  # the bridge was down
    assert message_time(seen + H, seen) == seen  # a homeserver clock ahead of ours
    assert message_time(seen - 30 * 24 * H, seen) == seen - MAX_BACKDATE


def test_downtime_counts_against_the_reply_time() -> None:
    # Sent Wednesday 10:00 and 10:04:48, both seen by the bridge only at 10:05 after an
    # outage: the response time is the 4 min 48 s between the two messages' own times.
    sent, seen = WED_10, WED_10 + timedelta(minutes=5)
    clock, _ = open_clock(message_time(sent, seen))
    assert clock.opened_at == sent
    reply = message_time(sent + timedelta(seconds=288), seen)
    closed, _ = on_therapist_message(clock, POLICY, CAL, Kind.TEXT, "$r", "@doc:practice", reply)
    assert closed is not None and closed.response_calendar == timedelta(seconds=288)


def test_a_reply_dated_before_the_clock_opened_counts_as_immediate() -> None:
    clock, _ = open_clock()
    closed, _ = on_therapist_message(
        clock, POLICY, CAL, Kind.TEXT, "$r", "@doc:practice", WED_10 - timedelta(seconds=3)
    )
    assert closed is not None and closed.response_calendar == timedelta(0) and closed.met


def test_held_reminders_leave_after_the_opening_in_due_order_and_spread() -> None:
    # A weekend's reminders, due Friday evening to Sunday night, all held until Monday 09:00.
    monday = berlin(2025, 6, 9, 9)
    dues = [berlin(2025, 6, 6, 17, 30) + n * timedelta(minutes=37) for n in range(100)]
    held = [held_until(CAL, due, due) for due in dues]
    assert held == sorted(held) and len(set(held)) == len(held)
    assert all(monday <= at < monday + HOLD_REACH / 1000 for at in held)
    assert held[-1] - held[0] > timedelta(minutes=1)  # spread, not one instant
    # Held since before the reach: first of all, at the opening itself.
    assert held_until(CAL, monday - 2 * HOLD_REACH, berlin(2025, 6, 8, 12)) == monday
