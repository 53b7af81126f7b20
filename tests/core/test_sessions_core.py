"""Scheduled sessions, pure: parsing in the practice's time zone, timers, steps, commands."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bridge.core import sessions as core
from bridge.core.command_set import build_commands
from bridge.core.commands import PAIR_ROOM, CommandContext
from bridge.core.model import AppendAudit, CancelTimer, Invoke, Pair, Role, SendMessage

COMMANDS = build_commands()

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # 10:00 in Berlin
PAIR = Pair("p1", "@pat:practice", "@doc:practice", "!pair:practice", label="7F3A")


def test_parse_uses_the_practice_time_zone_and_defaults() -> None:
    req = core.parse_request(["2026-12-01", "14:00"], NOW, BERLIN, video_on=True)
    assert req.starts_at == datetime(2026, 12, 1, 13, 0, tzinfo=UTC)
    assert req.ends_at - req.starts_at == core.DEFAULT_LENGTH
    assert req.kind == "video"
    assert core.parse_request(["today", "15:30"], NOW, BERLIN, video_on=False).kind == "text"


@pytest.mark.parametrize(
    ("words", "length", "kind"),
    [
        (["1h30m", "text"], timedelta(minutes=90), "text"),
        (["video", "45"], timedelta(minutes=45), "video"),
        (["2h"], timedelta(hours=2), "video"),
        (["25min"], timedelta(minutes=25), "video"),
    ],
)
def test_parse_length_and_kind_in_any_order(words, length, kind) -> None:
    req = core.parse_request(["tomorrow", "09:00", *words], NOW, BERLIN, video_on=True)
    assert req.starts_at == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert (req.ends_at - req.starts_at, req.kind) == (length, kind)


@pytest.mark.parametrize(
    ("args", "template"),
    [
        (["2026-12-01"], "session_usage"),
        (["2026-13-01", "10:00"], "session_bad_date"),
        (["2026-12-01", "25:00"], "session_bad_time"),
        (["2026-12-01", "10:00", "soon"], "session_usage"),
        (["2026-12-01", "10:00", "3m"], "session_bad_length"),
        (["2026-12-01", "10:00", "5h"], "session_bad_length"),
        (["2026-11-30", "09:59"], "session_in_past"),
        (["2028-01-01", "10:00"], "session_too_far"),
        # 02:30 does not exist in Berlin on the day clocks go forward.
        (["2027-03-28", "02:30"], "session_bad_time"),
    ],
)
def test_parse_refuses_with_a_reason(args: list[str], template: str) -> None:
    with pytest.raises(core.SessionInputError) as err:
        core.parse_request(args, NOW, BERLIN, video_on=True)
    assert err.value.template == template


def test_video_session_needs_jitsi() -> None:
    with pytest.raises(core.SessionInputError) as err:
        core.parse_request(["2026-12-01", "10:00", "video"], NOW, BERLIN, video_on=False)
    assert err.value.template == "video_off"


def test_timers_reminder_start_end() -> None:
    start = NOW + timedelta(hours=2)
    end = start + timedelta(minutes=50)
    got = core.session_timers("ABCDEF", "p1", start, end, NOW)
    assert [(t.timer_id, t.timer_kind, t.at) for t in got] == [
        ("session.ABCDEF.reminder", "session.reminder", start - core.REMINDER_BEFORE),
        ("session.ABCDEF.start", "session.start", start),
        ("session.ABCDEF.end", "session.end", end),
    ]
    assert all(t.pair_id == "p1" for t in got)
    # A session starting sooner than the reminder lead gets no reminder.
    soon = core.session_timers("ABCDEF", "p1", NOW + timedelta(minutes=5), end, NOW)
    assert [t.timer_kind for t in soon] == ["session.start", "session.end"]
    assert [c.timer_id for c in core.cancel_timers("ABCDEF")] == [t.timer_id for t in got]


def test_timer_ids_round_trip() -> None:
    assert core.parse_timer_id(core.timer_id("ABCDEF", "start")) == ("ABCDEF", "start")
    assert core.parse_timer_id("sla.due.x") is None
    assert core.parse_timer_id("session.ABCDEF.later") is None


def test_session_ids_are_short_and_stable() -> None:
    first = core.session_id_for("p1 $event")
    assert first == core.session_id_for("p1 $event") and len(first) == 6
    assert first != core.session_id_for("p1 $other")


SESSION = core.SessionView(
    "ABCDEF", "video", NOW + timedelta(hours=1), NOW + timedelta(hours=2), "confidant-x"
)


def test_steps() -> None:
    [reminder] = core.on_step("reminder", SESSION, PAIR, BERLIN, link="https://m/x")
    assert isinstance(reminder, SendMessage)
    assert reminder.room_id == PAIR.room_id and reminder.template == "session_reminder"
    assert reminder.context["link"] == "https://m/x" and reminder.context["starts"].endswith(
        "11:00"
    )
    assert reminder.txn_id == "session.ABCDEF.reminder"
    start = core.on_step("start", SESSION, PAIR, BERLIN)
    assert [type(e) for e in start] == [SendMessage, AppendAudit]
    assert start[1].action == "session.started"  # type: ignore[union-attr]
    end = core.on_step("end", SESSION, PAIR, BERLIN, attended=[PAIR.patient_id])
    audit = end[1]
    assert isinstance(audit, AppendAudit) and audit.action == "session.ended"
    assert audit.details["patient_wrote"] is True and audit.details["therapist_wrote"] is False


def run(text: str, role: Role = Role.THERAPIST, facts: tuple[object, ...] | None = None):
    base = (core.SessionFacts((SESSION,), BERLIN, video=True),)
    ctx = CommandContext(
        room_kind=PAIR_ROOM,
        room_id=PAIR.room_id,
        sender=PAIR.therapist_id if role is Role.THERAPIST else PAIR.patient_id,
        role=role,
        event_id="$ev",
        now=NOW,
        pair=PAIR,
        facts=base if facts is None else facts,
    )
    return COMMANDS.dispatch(ctx, text)[1:]


def test_session_command_gives_an_add_operation() -> None:
    [invoke] = run("!session 2026-12-01 14:00 1h text")
    assert isinstance(invoke, Invoke) and invoke.operation == core.ADD_OPERATION
    assert invoke.params["starts_at"] == "2026-12-01T13:00:00+00:00"
    assert invoke.params["ends_at"] == "2026-12-01T14:00:00+00:00"
    assert invoke.params["kind"] == "text"
    assert invoke.params["session_id"] == core.session_id_for("p1 $ev")


def test_session_command_errors_answer_in_the_room() -> None:
    [answer] = run("!session yesterday 10:00")
    assert isinstance(answer, SendMessage) and answer.template == "session_bad_date"
    [answer] = run("!session 2026-12-01 10:00", facts=())
    assert isinstance(answer, SendMessage) and answer.template == "session_off"


def test_patients_cannot_schedule_but_can_list() -> None:
    [answer] = run("!session 2026-12-01 14:00", Role.PATIENT)
    assert isinstance(answer, SendMessage) and answer.template == "command_refused"
    [listing] = run("!sessions", Role.PATIENT)
    assert isinstance(listing, SendMessage) and listing.template == "session_list"
    assert [s["session_id"] for s in listing.context["sessions"]] == ["ABCDEF"]


def test_cancel_only_known_sessions() -> None:
    [invoke] = run("!session cancel abcdef")
    assert isinstance(invoke, Invoke) and invoke.operation == core.CANCEL_OPERATION
    assert invoke.params["session_id"] == "ABCDEF"
    [answer] = run("!session cancel ZZZZZZ")
    assert isinstance(answer, SendMessage) and answer.template == "session_unknown"
    [answer] = run("!session cancel")
    assert isinstance(answer, SendMessage) and answer.template == "session_usage"
    assert not any(isinstance(e, CancelTimer) for e in run("!session cancel ZZZZZZ"))
