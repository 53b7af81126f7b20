"""Scheduled live sessions (video or synchronous text): commands, timers and what they post.

Pure: `now` and the practice's time zone come in, effects go out. The service stores
sessions and runs the `Invoke`s (`ADD_OPERATION`, `CANCEL_OPERATION`); each session has three
timers in the `timers` table, so reminders, openings and closings survive restarts:
`session.<id>.reminder` (REMINDER_BEFORE the start, both members), `session.<id>.start`
(the bot opens the session) and `session.<id>.end` (the bot closes it).
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bridge.core.commands import PAIR_ROOM, CommandContext, command, reply
from bridge.core.model import (
    AppendAudit,
    CancelTimer,
    Effect,
    Invoke,
    Pair,
    Role,
    ScheduleTimer,
    SendMessage,
)

ADD_OPERATION = "session.add"
CANCEL_OPERATION = "session.cancel"
#: Timer kind prefix (the service's `timer_handlers` key).
TIMER_PREFIX = "session"

DEFAULT_LENGTH = timedelta(minutes=50)
MAX_LENGTH = timedelta(hours=4)
MIN_LENGTH = timedelta(minutes=5)
MAX_AHEAD = timedelta(days=366)
#: Both members are reminded this long before a session starts.
REMINDER_BEFORE = timedelta(minutes=15)
KINDS = ("video", "text")
STEPS = ("reminder", "start", "end")

_LENGTH = re.compile(r"(?:(\d+)h)?(?:(\d+)m(?:in)?)?")
_TIME = re.compile(r"(\d{1,2}):(\d{2})")
_ID = re.compile(r"[A-Z2-7]{6}")


@dataclass(frozen=True, slots=True)
class SessionView:
    """A scheduled session as commands and timers see it."""

    session_id: str
    kind: str
    starts_at: datetime
    ends_at: datetime
    meeting: str | None = None


@dataclass(frozen=True, slots=True)
class SessionRequest:
    """A valid `!session` or `confidant session add`."""

    starts_at: datetime
    ends_at: datetime
    kind: str


class SessionInputError(ValueError):
    """Input that names no valid session; `template` says why, `context` fills it."""

    def __init__(self, template: str, **context: Any) -> None:
        super().__init__(template)
        self.template = template
        self.context = context


def parse_length(text: str) -> timedelta | None:
    """`50`, `50m`, `1h`, `1h30m` as a duration; None when it is not one."""
    if text.isdigit():
        return timedelta(minutes=int(text))
    match = _LENGTH.fullmatch(text.lower())
    if not match or not any(match.groups()):
        return None
    return timedelta(hours=int(match.group(1) or 0), minutes=int(match.group(2) or 0))


def _local(day_text: str, time_text: str, tz: ZoneInfo, now: datetime) -> datetime:
    today = now.astimezone(tz).date()
    lowered = day_text.lower()
    try:
        if lowered == "today":
            day = today
        elif lowered == "tomorrow":
            day = today + timedelta(days=1)
        else:
            day = date.fromisoformat(day_text)
    except ValueError:
        raise SessionInputError("session_bad_date", text=day_text) from None
    match = _TIME.fullmatch(time_text)
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise SessionInputError("session_bad_time", text=time_text)
    wall = datetime.combine(day, time(int(match.group(1)), int(match.group(2))), tzinfo=tz)
    # A wall time skipped by a DST change does not survive the round trip through UTC.
    utc = wall.astimezone(ZoneInfo("UTC"))
    if utc.astimezone(tz).replace(tzinfo=None) != wall.replace(tzinfo=None):
        raise SessionInputError("session_bad_time", text=time_text)
    return utc


def parse_request(
    args: list[str], now: datetime, tz: ZoneInfo, *, video_on: bool
) -> SessionRequest:
    """`DATE TIME [LENGTH] [video|text]` in the practice's time zone, checked against `now`."""
    if len(args) < 2 or len(args) > 4:
        raise SessionInputError("session_usage")
    starts_at = _local(args[0], args[1], tz, now)
    length = DEFAULT_LENGTH
    kind = "video" if video_on else "text"
    for word in args[2:]:
        if word.lower() in KINDS:
            kind = word.lower()
            continue
        parsed = parse_length(word)
        if parsed is None:
            raise SessionInputError("session_usage")
        length = parsed
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise SessionInputError(
            "session_bad_length",
            minimum=int(MIN_LENGTH.total_seconds() // 60),
            maximum=int(MAX_LENGTH.total_seconds() // 60),
        )
    if kind == "video" and not video_on:
        raise SessionInputError("video_off")
    if starts_at <= now:
        raise SessionInputError("session_in_past")
    if starts_at - now > MAX_AHEAD:
        raise SessionInputError("session_too_far")
    return SessionRequest(starts_at, starts_at + length, kind)


def session_id_for(seed: str) -> str:
    """A short id a therapist can type (6 base32 letters), derived from `seed`."""
    digest = hashlib.sha256(seed.encode()).digest()
    return base64.b32encode(digest).decode("ascii")[:6]


def timer_id(session_id: str, step: str) -> str:
    return f"{TIMER_PREFIX}.{session_id}.{step}"


def parse_timer_id(value: str) -> tuple[str, str] | None:
    """`(session_id, step)` of a session timer id, or None."""
    parts = value.split(".")
    if len(parts) != 3 or parts[0] != TIMER_PREFIX or parts[2] not in STEPS:
        return None
    return parts[1], parts[2]


def session_timers(
    session_id: str, pair_id: str, starts_at: datetime, ends_at: datetime, now: datetime
) -> list[ScheduleTimer]:
    """The session's timers; no reminder when its time has already passed."""
    out: list[ScheduleTimer] = []
    remind_at = starts_at - REMINDER_BEFORE
    if remind_at > now:
        out.append(
            ScheduleTimer(timer_id(session_id, "reminder"), "session.reminder", remind_at, pair_id)
        )
    out.append(ScheduleTimer(timer_id(session_id, "start"), "session.start", starts_at, pair_id))
    out.append(ScheduleTimer(timer_id(session_id, "end"), "session.end", ends_at, pair_id))
    return out


def cancel_timers(session_id: str) -> list[CancelTimer]:
    return [CancelTimer(timer_id(session_id, step)) for step in STEPS]


def local_time(at: datetime, tz: ZoneInfo) -> str:
    return at.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def describe(session: SessionView, tz: ZoneInfo) -> dict[str, Any]:
    """What templates show of a session."""
    return {
        "session_id": session.session_id,
        "kind": session.kind,
        "starts": local_time(session.starts_at, tz),
        "ends": session.ends_at.astimezone(tz).strftime("%H:%M"),
        "minutes": int((session.ends_at - session.starts_at).total_seconds() // 60),
        "timezone": str(tz.key),
    }


def scheduled_entry(
    pair_id: str,
    session_id: str,
    kind: str,
    starts_at_ms: int,
    ends_at_ms: int,
    actor: str,
    event_id: str | None = None,
) -> AppendAudit:
    """The entry of a scheduled session (times in ms, as stored); `event_id` is the
    `!session` command's, None when the command line added it."""
    return AppendAudit(
        pair_id,
        "session.scheduled",
        actor,
        {
            "session_id": session_id,
            "kind": kind,
            "starts_at": starts_at_ms,
            "ends_at": ends_at_ms,
        },
        event_id=event_id,
    )


def on_cancelled(
    session: SessionView,
    pair_id: str,
    room_id: str,
    requested_by: str,
    event_id: str | None,
    tz: ZoneInfo,
) -> list[Effect]:
    """A session was cancelled: its timers go, the room is told.

    `event_id` is the `!session cancel` command's; None when the practice cancelled it from
    the command line (the notice then takes its transaction id from the session).
    """
    return [
        *cancel_timers(session.session_id),
        AppendAudit(
            pair_id,
            "session.cancelled",
            requested_by,
            {"session_id": session.session_id},
            event_id=event_id,
        ),
        SendMessage(
            room_id,
            "session_cancelled",
            describe(session, tz),
            txn_id=f"session.cancelled.{event_id or session.session_id}",
            pair_id=pair_id,
        ),
    ]


def on_step(
    step: str,
    session: SessionView,
    pair: Pair,
    tz: ZoneInfo,
    *,
    link: str | None = None,
    patient_link: str | None = None,
    attended: list[str] | None = None,
) -> list[Effect]:
    """What a session timer does: remind both, open the session, or close it."""
    context: dict[str, Any] = {
        **describe(session, tz),
        "link": link,
        "patient_link": patient_link,
    }
    message = SendMessage(
        pair.room_id,
        f"session_{step}",
        context,
        txn_id=f"{timer_id(session.session_id, step)}",
        pair_id=pair.pair_id,
    )
    if step == "reminder":
        return [message]
    if step == "start":
        return [
            message,
            AppendAudit(
                pair.pair_id,
                "session.started",
                "bot",
                {"session_id": session.session_id, "kind": session.kind},
            ),
        ]
    present = sorted(attended or [])
    details: dict[str, Any] = {
        "session_id": session.session_id,
        "kind": session.kind,
        "patient_wrote": pair.patient_id in present,
        "therapist_wrote": pair.therapist_id in present,
    }
    return [message, AppendAudit(pair.pair_id, "session.ended", "bot", details)]


# ---------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """What `!session` and `!sessions` need in a pair room."""

    #: The pair's upcoming sessions, soonest first.
    sessions: tuple[SessionView, ...]
    #: The practice time zone.
    tz: ZoneInfo
    #: Video sessions are possible (a Jitsi server is configured).
    video: bool


@command(
    "session",
    "Schedule a live session (practice time); `!session cancel ID` cancels one",
    usage="DATE TIME [LENGTH] [video|text]",
    roles=(Role.THERAPIST,),
    rooms=(PAIR_ROOM,),
)
def session_command(ctx: CommandContext, args: list[str]) -> list[Effect]:
    facts = ctx.fact(SessionFacts)
    if facts is None or ctx.pair is None:
        return [reply(ctx, "session_off")]
    params: dict[str, Any] = {"event_id": ctx.event_id, "requested_by": ctx.sender}
    if args and args[0].lower() == "cancel":
        wanted = args[1].upper() if len(args) == 2 else ""
        if not _ID.fullmatch(wanted):
            return [reply(ctx, "session_usage")]
        if wanted not in {s.session_id for s in facts.sessions}:
            return [reply(ctx, "session_unknown", {"session_id": wanted})]
        return [
            Invoke(
                CANCEL_OPERATION, ctx.room_id, {**params, "session_id": wanted}, ctx.pair.pair_id
            )
        ]
    try:
        request = parse_request(args, ctx.now, facts.tz, video_on=facts.video)
    except SessionInputError as err:
        return [reply(ctx, err.template, err.context)]
    params.update(
        {
            "session_id": session_id_for(f"{ctx.pair.pair_id} {ctx.event_id}"),
            "starts_at": request.starts_at.isoformat(),
            "ends_at": request.ends_at.isoformat(),
            "kind": request.kind,
        }
    )
    return [Invoke(ADD_OPERATION, ctx.room_id, params, ctx.pair.pair_id)]


@command(
    "sessions",
    "List the scheduled live sessions",
    roles=(Role.PATIENT, Role.THERAPIST),
    rooms=(PAIR_ROOM,),
)
def sessions_command(ctx: CommandContext, args: list[str]) -> list[Effect]:
    facts = ctx.fact(SessionFacts)
    if facts is None:
        return [reply(ctx, "session_off")]
    tz = facts.tz
    listed = [describe(s, tz) for s in facts.sessions]
    return [reply(ctx, "session_list", {"sessions": listed, "timezone": str(tz.key)})]


#: The commands of this module, for `bridge.core.command_set`.
COMMANDS = (
    session_command,
    sessions_command,
)
