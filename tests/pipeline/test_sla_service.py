"""SLA wiring without I/O: config to core, the SLA commands, and every SLA template."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bridge.adapters.render import Renderer
from bridge.config import minimal_config
from bridge.core.command_set import build_commands
from bridge.core.commands import DESK_ROOM, PAIR_ROOM, CommandContext
from bridge.core.model import AppendAudit, Effect, Invoke, Kind, Pair, Role, SendEmail, SendMessage
from bridge.core.sla import (
    Away,
    Clock,
    Desk,
    SlaPolicy,
    Step,
    on_patient_message,
    on_timer,
)
from bridge.core.sla_commands import (
    AWAY_OPERATION,
    BACK_OPERATION,
    AwayError,
    OpenClockFact,
    ReplyPreview,
    SlaDeskFacts,
    SlaPairFacts,
    parse_away,
    parse_until,
)
from bridge.core.workhours import WorkingCalendar
from bridge.features.sla import sla_policy, working_calendar

COMMANDS = build_commands()

BERLIN = ZoneInfo("Europe/Berlin")
H = timedelta(hours=1)
NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # a Monday, 11:00 in Berlin
PAIR = Pair("p1", "@pat:practice", "@doc:practice", "!pair:practice", label="7F3A")
DESK = "!desk-doc:practice"
CAL = WorkingCalendar(BERLIN, {d: [(time(9), time(17))] for d in range(5)})
POLICY = SlaPolicy(window=4 * H, heads_up_before=H, name="default")
REQUEST = SlaPolicy(window=4 * H, open_clock_on="reply_request", name="journal")
SECRET = "I feel terrible about what happened"


def ctx(role: Role, room_kind: str, facts: object | None, event_id: str = "$cmd") -> CommandContext:
    in_pair = room_kind == PAIR_ROOM
    return CommandContext(
        room_kind=room_kind,
        room_id=PAIR.room_id if in_pair else DESK,
        sender=PAIR.patient_id if role is Role.PATIENT else PAIR.therapist_id,
        role=role,
        event_id=event_id,
        now=NOW,
        pair=PAIR if in_pair else None,
        facts=() if facts is None else (facts,),
    )


def messages(effects: list[Effect]) -> list[SendMessage]:
    return [e for e in effects if isinstance(e, SendMessage)]


def render(msg: SendMessage) -> str:
    return Renderer().text(msg.template, msg.context)


def opened_clock(policy: SlaPolicy = POLICY, at: datetime = NOW) -> Clock:
    clock, _ = on_patient_message(
        None, PAIR, policy, CAL, Kind.TEXT, "$first", at, explicit_reply_request=True
    )
    assert clock is not None
    return clock


# ---------------------------------------------------------------- config -> core


def test_calendar_from_config_has_hours_zone_holidays_and_closures() -> None:
    cfg = minimal_config(
        practice={
            "timezone": "Europe/Berlin",
            "working_hours": {
                "mon": "09:00-12:00, 13:00-17:00",
                "tue": None,
                "sat": "10:00-24:00",
            },
            "holidays": {"country": "DE", "subdivision": "BE"},
            "closures": ["2026-12-24..2026-12-31"],
        }
    )
    cal = working_calendar(cfg.practice)
    assert cal.tz.key == "Europe/Berlin"
    # Monday 30 Nov 2026: open 09-12 and 13-17 local (UTC+1), closed over lunch.
    assert cal.is_open(datetime(2026, 11, 30, 8, 30, tzinfo=UTC))
    assert not cal.is_open(datetime(2026, 11, 30, 11, 30, tzinfo=UTC))
    assert not cal.is_open(datetime(2026, 11, 30, 16, 30, tzinfo=UTC))
    # Saturday until midnight at the end of the day.
    assert cal.is_open(datetime(2026, 12, 5, 22, 59, tzinfo=UTC))
    assert not cal.is_open(datetime(2026, 12, 5, 23, 0, tzinfo=UTC))
    # Tuesday has no hours here; a holiday (Easter Monday) and a closure close Mondays.
    assert not cal.is_working_day(date(2026, 12, 1))
    assert not cal.is_working_day(date(2026, 4, 6))
    assert not cal.is_working_day(date(2026, 12, 28))
    assert cal.is_working_day(date(2027, 1, 4))


def test_practice_without_hours_is_open_around_the_clock() -> None:
    closed = dict.fromkeys(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))
    cfg = minimal_config(
        practice={"working_hours": closed},
        policies={"default": {"window": "2h", "window_clock": "calendar"}},
    )
    cal = working_calendar(cfg.practice)
    assert cal.is_open(datetime(2026, 11, 29, 3, 0, tzinfo=UTC))  # a Sunday night


def test_policy_from_config() -> None:
    cfg = minimal_config(
        practice={"crisis_line": "+49 30 1234"},
        outbound_email={"enabled": True, "host": "smtp.example.org", "from_address": "c@e.org"},
        policies={
            "default": {"window": "3s", "window_clock": "calendar", "heads_up_before": None},
            "strict": {
                "window": "8h",
                "heads_up_before": "2h",
                "escalate_after": "1h",
                "supervisors": ["@sup:localhost"],
                "channels": ["desk", "email"],
                "patient_notice": "always",
                "open_clock_on": "reply_request",
                "tell_patient_on_breach": True,
                "remind_at_due": False,
            },
        },
    )
    fast = sla_policy("default", cfg.policies["default"], cfg.practice)
    assert fast == SlaPolicy(
        window=timedelta(seconds=3),
        window_clock="calendar",
        heads_up_before=None,
        crisis_line="+49 30 1234",
        name="default",
    )
    strict = sla_policy("strict", cfg.policies["strict"], cfg.practice)
    assert strict.name == "strict" and strict.window == 8 * H
    assert strict.heads_up_before == 2 * H and strict.escalate_after == H
    assert strict.supervisors == ("@sup:localhost",)
    assert strict.email_reminders and not strict.remind_at_due
    assert strict.patient_notice == "always" and strict.open_clock_on == "reply_request"
    assert strict.tell_patient_on_breach


# ---------------------------------------------------------------- !due


def desk_facts(*entries: OpenClockFact) -> SlaDeskFacts:
    return SlaDeskFacts(BERLIN, entries, frozenset({"@cover:p"}))


def test_due_lists_open_clocks_soonest_first_with_links_and_no_content() -> None:
    early = opened_clock(at=NOW - timedelta(days=3))  # overdue by now
    other = Pair("p2", "@pat2:practice", PAIR.therapist_id, "!other:practice", label="B2C4")
    late, _ = on_patient_message(None, other, POLICY, CAL, Kind.TEXT, "$x", NOW)
    assert late is not None
    facts = desk_facts(
        OpenClockFact(late, "B2C4", "!other:practice"), OpenClockFact(early, "7F3A", PAIR.room_id)
    )
    effects = COMMANDS.dispatch(ctx(Role.THERAPIST, DESK_ROOM, facts), "!due")
    (msg,) = messages(effects)
    assert msg.room_id == DESK
    text = render(msg)
    lines = text.splitlines()
    assert "7F3A" in lines[1] and "(overdue)" in lines[1]
    assert "https://matrix.to/#/!pair:practice" in lines[1]
    assert "B2C4" in lines[2] and "overdue" not in lines[2]
    assert "Europe/Berlin" in lines[0]


def test_due_with_nothing_open() -> None:
    effects = COMMANDS.dispatch(ctx(Role.THERAPIST, DESK_ROOM, desk_facts()), "!due")
    assert render(messages(effects)[0]) == "Nothing is waiting for your reply."


def test_due_without_the_sla_installed_says_so() -> None:
    effects = COMMANDS.dispatch(ctx(Role.THERAPIST, DESK_ROOM, None), "!due")
    assert messages(effects)[0].template == "sla_off"


def test_due_is_refused_to_patients_and_unknown_in_pair_rooms() -> None:
    effects = COMMANDS.dispatch(ctx(Role.THERAPIST, PAIR_ROOM, None), "!due")
    assert messages(effects)[0].template == "command_unknown"


# ---------------------------------------------------------------- !sla


def test_sla_shows_the_open_clock() -> None:
    clock = opened_clock()
    facts = SlaPairFacts(BERLIN, POLICY, clock)
    text = render(messages(COMMANDS.dispatch(ctx(Role.THERAPIST, PAIR_ROOM, facts), "!sla"))[0])
    assert "since 2026-11-30 11:00" in text and "due 2026-11-30 15:00" in text
    assert "overdue" not in text


def test_sla_without_a_clock() -> None:
    facts = SlaPairFacts(BERLIN, POLICY, None)
    text = render(messages(COMMANDS.dispatch(ctx(Role.THERAPIST, PAIR_ROOM, facts), "!sla"))[0])
    assert text.startswith("No message is waiting")


def test_sla_is_for_therapists() -> None:
    facts = SlaPairFacts(BERLIN, POLICY, None)
    effects = COMMANDS.dispatch(ctx(Role.PATIENT, PAIR_ROOM, facts), "!sla")
    assert messages(effects)[0].template == "command_refused"


# ---------------------------------------------------------------- !reply


def test_reply_when_every_message_opens_a_clock_is_a_notice_only() -> None:
    facts = SlaPairFacts(BERLIN, POLICY, None)
    effects = COMMANDS.dispatch(ctx(Role.PATIENT, PAIR_ROOM, facts), "!reply")
    assert [m.template for m in messages(effects)] == ["sla_reply_not_needed"]
    assert not any(isinstance(e, Invoke) for e in effects)


def test_reply_request_acknowledged_with_the_due_time() -> None:
    preview = ReplyPreview(opens=True, due_at=NOW + 4 * H, notice=False)
    facts = SlaPairFacts(BERLIN, REQUEST, None, preview)
    (msg,) = messages(COMMANDS.dispatch(ctx(Role.PATIENT, PAIR_ROOM, facts), "!reply"))
    assert msg.template == "sla_reply_requested"
    assert "by 2026-11-30 15:00 (Europe/Berlin)" in render(msg)


def test_reply_request_left_to_the_expected_reply_notice() -> None:
    preview = ReplyPreview(opens=True, due_at=NOW + 4 * H, notice=True)
    facts = SlaPairFacts(BERLIN, REQUEST, None, preview)
    effects = COMMANDS.dispatch(ctx(Role.PATIENT, PAIR_ROOM, facts), "!reply")
    assert messages(effects) == []
    assert [e.action for e in effects if isinstance(e, AppendAudit)] == ["command"]


def test_reply_while_a_clock_is_open() -> None:
    clock = opened_clock(REQUEST)
    facts = SlaPairFacts(BERLIN, REQUEST, clock)
    (msg,) = messages(COMMANDS.dispatch(ctx(Role.PATIENT, PAIR_ROOM, facts), "!reply"))
    assert msg.template == "sla_reply_pending" and "15:00" in render(msg)


# ---------------------------------------------------------------- !away / !back


@pytest.mark.parametrize(
    ("words", "expected", "used"),
    [
        (["4h"], NOW + 4 * H, 1),
        (["1w2d"], NOW + timedelta(days=9), 1),
        (["2026-12-03"], datetime(2026, 12, 2, 23, 0, tzinfo=UTC), 1),
        (["2026-12-03", "14:30"], datetime(2026, 12, 3, 13, 30, tzinfo=UTC), 2),
        (["2026-12-03T14:30"], datetime(2026, 12, 3, 13, 30, tzinfo=UTC), 1),
        (["2026-12-03T14:30+00:00"], datetime(2026, 12, 3, 14, 30, tzinfo=UTC), 1),
    ],
)
def test_parse_until(words: list[str], expected: datetime, used: int) -> None:
    assert parse_until(words, NOW, BERLIN) == (expected, used)


@pytest.mark.parametrize(
    "words",
    [[], ["soon"], ["2026-11-01"], ["0h"], ["800d"], ["2026-12-03", "25:00"], ["2026-13-01"]],
)
def test_parse_until_refuses(words: list[str]) -> None:
    with pytest.raises(AwayError):
        parse_until(words, NOW, BERLIN)


def test_parse_away_cover() -> None:
    known = frozenset({"@cover:p", PAIR.therapist_id})
    assert parse_away(["3d", "cover", "@cover:p"], NOW, BERLIN, PAIR.therapist_id, known) == (
        NOW + timedelta(days=3),
        "@cover:p",
    )
    assert parse_away(["3d", "@cover:p"], NOW, BERLIN, PAIR.therapist_id, known)[1] == "@cover:p"
    for bad in (["3d", "cover"], ["3d", "cover", "@nobody:p"], ["3d", "@doc:practice"]):
        with pytest.raises(AwayError):
            parse_away(bad, NOW, BERLIN, PAIR.therapist_id, known)


def test_away_answers_and_asks_the_service_to_apply_it() -> None:
    facts = desk_facts(OpenClockFact(opened_clock(), "7F3A", PAIR.room_id))
    effects = COMMANDS.dispatch(ctx(Role.THERAPIST, DESK_ROOM, facts), "!away 2d cover @cover:p")
    (msg,) = messages(effects)
    text = render(msg)
    assert "until 2026-12-02 11:00 (Europe/Berlin)" in text and "@cover:p" in text
    (invoke,) = [e for e in effects if isinstance(e, Invoke)]
    assert invoke.operation == AWAY_OPERATION and invoke.room_id == DESK
    assert invoke.params == {
        "therapist": PAIR.therapist_id,
        "until": (NOW + timedelta(days=2)).isoformat(),
        "cover": "@cover:p",
    }


def test_away_with_bad_arguments_changes_nothing() -> None:
    effects = COMMANDS.dispatch(ctx(Role.THERAPIST, DESK_ROOM, desk_facts()), "!away yesterday")
    assert not any(isinstance(e, Invoke) for e in effects)
    (msg,) = messages(effects)
    assert msg.template == "sla_away_invalid" and "Usage: !away" in render(msg)


def test_back() -> None:
    effects = COMMANDS.dispatch(ctx(Role.THERAPIST, DESK_ROOM, desk_facts()), "!back")
    (invoke,) = [e for e in effects if isinstance(e, Invoke)]
    assert invoke.operation == BACK_OPERATION and invoke.params == {"therapist": "@doc:practice"}
    assert render(messages(effects)[0]).startswith("Welcome back")


def test_help_lists_the_sla_commands_where_they_apply() -> None:
    desk = messages(COMMANDS.dispatch(ctx(Role.THERAPIST, DESK_ROOM, None), "!help"))[0]
    names = {c["name"] for c in desk.context["commands"]}
    assert {"due", "away", "back"} <= names and "sla" not in names
    patient = messages(COMMANDS.dispatch(ctx(Role.PATIENT, PAIR_ROOM, None), "!help"))[0]
    names = {c["name"] for c in patient.context["commands"]}
    assert "reply" in names and not {"due", "sla", "away"} & names


# ---------------------------------------------------------------- templates the core uses


def test_every_core_message_renders_without_content() -> None:
    policy = SlaPolicy(
        window=4 * H,
        heads_up_before=H,
        escalate_after=H,
        supervisors=("@sup:practice",),
        patient_notice="always",
        tell_patient_on_breach=True,
        email_reminders=True,
        crisis_line="+49 30 1234",
    )
    doc = Desk(PAIR.therapist_id, DESK, "doc@example.org")
    sup = Desk("@sup:practice", "!desk-sup:practice", "sup@example.org")
    cover = Desk("@cover:practice", "!desk-cover:practice", "cover@example.org")
    evening = datetime(2026, 11, 30, 19, 0, tzinfo=UTC)  # closed: the notice has the crisis line
    clock, effects = on_patient_message(None, PAIR, policy, CAL, Kind.TEXT, "$m", evening)
    assert clock is not None
    sent = messages(effects)
    for step in (Step.HEADS_UP, Step.DUE, Step.ESCALATION):
        at = clock.step_at(step)
        assert at is not None
        away = Away(at + H, cover) if step is Step.HEADS_UP else None
        clock, effects = on_timer(
            clock,
            clock.timer_id(step),
            at,
            pair=PAIR,
            policy=policy,
            cal=CAL,
            therapist=doc,
            supervisors=[sup],
            away=away,
        )
        assert clock is not None
        sent += messages(effects)
        emails = [e for e in effects if isinstance(e, SendEmail)]
        assert emails
        for email in emails:
            body = Renderer().text(email.template, email.context)
            assert "7F3A" in body and "https://matrix.to/#/!pair:practice" in body
    texts = {m.template: render(m) for m in sent}
    assert set(texts) == {
        "sla_expected_reply",
        "sla_heads_up",
        "sla_reminder",
        "sla_escalation",
        "sla_breach_patient",
    }
    assert "+49 30 1234" in texts["sla_expected_reply"]
    assert "2026-12-01 13:00 (Europe/Berlin)" in texts["sla_expected_reply"]
    assert "You are covering for @doc:practice" in texts["sla_heads_up"]
    for name in ("sla_heads_up", "sla_reminder", "sla_escalation"):
        assert "7F3A" in texts[name]
        assert texts[name].endswith("https://matrix.to/#/!pair:practice")
    assert all(SECRET not in text for text in texts.values())
