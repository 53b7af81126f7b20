"""SLA commands: `!due`, `!sla`, `!reply`, `!away UNTIL [cover @user]` and `!back`.

The handlers are pure. What they need from the database the service looks up beforehand
(`SlaDeskFacts`, `SlaPairFacts`); `!away` and `!back` change stored
state, so they answer at once and leave the change to an `Invoke` the service runs
after the command's transaction (operations `AWAY_OPERATION` and `BACK_OPERATION`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bridge.core.commands import DESK_ROOM, PAIR_ROOM, CommandContext, command, reply
from bridge.core.model import Effect, Invoke, Role
from bridge.core.sla import BREACHED, Clock, SlaPolicy, Step, room_link
from bridge.core.workhours import as_utc

AWAY_OPERATION = "sla.away"
BACK_OPERATION = "sla.back"

#: `!due` lists at most this many conversations (and says how many more there are).
DUE_LIST_LIMIT = 50
#: The longest absence `!away` accepts.
MAX_AWAY = timedelta(days=366)

_DURATION = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?")
_HHMM = re.compile(r"(\d{1,2}):(\d{2})")


@dataclass(frozen=True, slots=True)
class OpenClockFact:
    """One open clock for `!due`, with what is needed to name and link its room."""

    clock: Clock
    pair_label: str
    room_id: str


@dataclass(frozen=True, slots=True)
class ReplyPreview:
    """What the patient's `!reply` is about to do (the service computes it with the core)."""

    #: A clock opens (False: the policy or the pair's state opens none).
    opens: bool
    due_at: datetime | None = None
    #: The core's own "expected reply" notice goes out, so the command need not answer.
    notice: bool = False


@dataclass(frozen=True, slots=True)
class SlaDeskFacts:
    """What the desk commands (`!due`, `!away`, `!back`) need for one therapist."""

    #: The practice's time zone, for showing times.
    tz: ZoneInfo
    #: The therapist's open clocks.
    open_clocks: tuple[OpenClockFact, ...]
    #: User ids of every therapist (who may cover).
    therapists: frozenset[str]


@dataclass(frozen=True, slots=True)
class SlaPairFacts:
    """What `!sla` and `!reply` need in one pair room."""

    #: The practice's time zone, for showing times.
    tz: ZoneInfo
    policy: SlaPolicy
    #: The pair's open clock, or None.
    clock: Clock | None
    #: For a patient, when the policy opens clocks on request: what `!reply` would open.
    reply: ReplyPreview | None = None


def local_time(at: datetime, tz: ZoneInfo) -> str:
    """A time as the practice reads it: `2026-11-30 14:00`."""
    return as_utc(at).astimezone(tz).strftime("%Y-%m-%d %H:%M")


def _off(ctx: CommandContext) -> list[Effect]:
    """The SLA is not installed (no facts): say so rather than pretend nothing is due."""
    return [reply(ctx, "sla_off")]


# ---------------------------------------------------------------- !due


@command(
    "due",
    "List the conversations waiting for your reply, soonest due first",
    roles=(Role.THERAPIST,),
    rooms=(DESK_ROOM,),
)
def due_command(ctx: CommandContext, args: list[str]) -> list[Effect]:
    """The therapist's open clocks by due time, each with its pair label and room link."""
    desk = ctx.fact(SlaDeskFacts)
    if desk is None:
        return _off(ctx)
    tz = desk.tz
    ordered = sorted(desk.open_clocks, key=lambda f: (f.clock.due_at, f.clock.pair_id))
    items = [
        {
            "pair_label": f.pair_label,
            "room_link": room_link(f.room_id),
            "due_at_local": local_time(f.clock.due_at, tz),
            "overdue": as_utc(ctx.now) > f.clock.due_at,
            "paused_until_local": (
                local_time(f.clock.resume_at, tz)
                if f.clock.is_paused and f.clock.resume_at is not None
                else None
            ),
        }
        for f in ordered[:DUE_LIST_LIMIT]
    ]
    context = {
        "items": items,
        "more": max(0, len(ordered) - DUE_LIST_LIMIT),
        "timezone": tz.key,
    }
    return [reply(ctx, "sla_due", context)]


# ---------------------------------------------------------------- !sla


@command(
    "sla",
    "Show whether a reply is due in this conversation, and when",
    roles=(Role.THERAPIST,),
    rooms=(PAIR_ROOM,),
)
def sla_command(ctx: CommandContext, args: list[str]) -> list[Effect]:
    """This pair's clock: nothing waiting, or since when, due when, and what was sent."""
    facts = ctx.fact(SlaPairFacts)
    if facts is None:
        return _off(ctx)
    policy, clock, tz = facts.policy, facts.clock, facts.tz
    context: dict[str, Any] = {
        "open": clock is not None and clock.is_open,
        "policy": policy.name,
        "timezone": tz.key,
    }
    if clock is not None and clock.is_open:
        context.update(
            opened_at_local=local_time(clock.opened_at, tz),
            due_at_local=local_time(clock.due_at, tz),
            overdue=as_utc(ctx.now) > clock.due_at,
            paused_until_local=(
                local_time(clock.resume_at, tz)
                if clock.is_paused and clock.resume_at is not None
                else None
            ),
            heads_up_sent=Step.HEADS_UP.value in clock.steps_done,
            reminder_sent=Step.DUE.value in clock.steps_done,
            escalated=Step.ESCALATION.value in clock.steps_done,
            breached=BREACHED in clock.steps_done,
        )
    return [reply(ctx, "sla_status", context)]


# ---------------------------------------------------------------- !reply


@command(
    "reply",
    "Ask your therapist for a reply to what you wrote",
    roles=(Role.PATIENT,),
    rooms=(PAIR_ROOM,),
)
def reply_command(ctx: CommandContext, args: list[str]) -> list[Effect]:
    """Answer a reply request; the clock itself is opened by the service's SLA hook."""
    facts = ctx.fact(SlaPairFacts)
    if facts is None:
        return _off(ctx)
    policy, clock, tz = facts.policy, facts.clock, facts.tz
    if policy.open_clock_on == "any_message":
        return [reply(ctx, "sla_reply_not_needed")]
    if clock is not None and clock.is_open:
        pending = {"due_at_local": local_time(clock.due_at, tz), "timezone": tz.key}
        return [reply(ctx, "sla_reply_pending", pending)]
    preview = facts.reply
    if isinstance(preview, ReplyPreview) and preview.notice:
        return []  # the core's expected-reply notice is the answer
    due = preview.due_at if isinstance(preview, ReplyPreview) and preview.opens else None
    context: dict[str, Any] = {
        "due_at_local": local_time(due, tz) if due is not None else None,
        "timezone": tz.key,
    }
    return [reply(ctx, "sla_reply_requested", context)]


# ---------------------------------------------------------------- !away / !back


class AwayError(ValueError):
    """`!away` arguments that cannot be used; the text is shown to the therapist."""


def parse_until(words: list[str], now: datetime, tz: ZoneInfo) -> tuple[datetime, int]:
    """Read UNTIL from the start of `words`; return it (UTC) and how many words it used.

    Accepted: a duration (`4h`, `3d`, `1w2d`), a local date (`2026-12-03`: back at the
    start of that day), or a local date and time (`2026-12-03T14:00` or `2026-12-03 14:00`).
    """
    if not words:
        raise AwayError("say until when, e.g. !away 3d or !away 2026-12-03")
    now = as_utc(now)
    text = words[0].lower()
    used = 1
    match = _DURATION.fullmatch(text)
    if text and match is not None and any(match.groups()):
        w, d, h, m = (int(g or 0) for g in match.groups())
        until = now + timedelta(weeks=w, days=d, hours=h, minutes=m)
    else:
        local, used = _local_datetime(words)
        until = local.replace(tzinfo=tz) if local.tzinfo is None else local
        until = as_utc(until)
    if until <= now:
        raise AwayError("that time has already passed")
    if until - now > MAX_AWAY:
        raise AwayError("an absence can last a year at most")
    return until, used


def _local_datetime(words: list[str]) -> tuple[datetime, int]:
    """A local date, or date and time, from the start of `words`; and how many words it used."""
    hint = (
        f"{words[0]} is not a date (2026-12-03), date and time (2026-12-03T14:00) "
        "or duration (4h, 3d)"
    )
    try:
        if "t" in words[0].lower():
            return datetime.fromisoformat(words[0]), 1
        day = date.fromisoformat(words[0])
    except ValueError:
        raise AwayError(hint) from None
    if len(words) > 1 and (hm := _HHMM.fullmatch(words[1])) is not None:
        hour, minute = int(hm.group(1)), int(hm.group(2))
        if hour > 23 or minute > 59:
            raise AwayError(f"{words[1]} is not a time of day")
        return datetime.combine(day, time(hour, minute)), 2
    return datetime.combine(day, time(0)), 1


def parse_away(
    args: list[str], now: datetime, tz: ZoneInfo, therapist: str, therapists: frozenset[str]
) -> tuple[datetime, str | None]:
    """Read `UNTIL [cover @user]`; the cover must be another known therapist."""
    until, used = parse_until(args, now, tz)
    rest = args[used:]
    if rest and rest[0].lower() == "cover":
        rest = rest[1:]
        if not rest:
            raise AwayError("name who covers, e.g. cover @colleague:example.org")
    if len(rest) > 1:
        raise AwayError("too many words; use !away UNTIL [cover @user]")
    cover = rest[0] if rest else None
    if cover is not None:
        if cover == therapist:
            raise AwayError("you cannot cover for yourself")
        if cover not in therapists:
            raise AwayError(f"{cover} is not a therapist of this practice")
    return until, cover


@command(
    "away",
    "Mark yourself away; with cover, a colleague gets your reminders, otherwise clocks pause",
    usage="UNTIL [cover @user]",
    roles=(Role.THERAPIST,),
    rooms=(DESK_ROOM,),
)
def away_command(ctx: CommandContext, args: list[str]) -> list[Effect]:
    """Record an absence: the answer now, the clock changes through an Invoke."""
    desk = ctx.fact(SlaDeskFacts)
    if desk is None:
        return _off(ctx)
    tz = desk.tz
    try:
        until, cover = parse_away(args, ctx.now, tz, ctx.sender, desk.therapists)
    except AwayError as exc:
        return [reply(ctx, "sla_away_invalid", {"reason": str(exc)})]
    context: dict[str, Any] = {
        "until_local": local_time(until, tz),
        "timezone": tz.key,
        "cover": cover,
        "open_count": len(desk.open_clocks),
    }
    params = {"therapist": ctx.sender, "until": until.isoformat(), "cover": cover}
    return [
        reply(ctx, "sla_away", context),
        Invoke(AWAY_OPERATION, ctx.room_id, params),
    ]


@command(
    "back",
    "End your absence: reminders come to you again and paused clocks run",
    roles=(Role.THERAPIST,),
    rooms=(DESK_ROOM,),
)
def back_command(ctx: CommandContext, args: list[str]) -> list[Effect]:
    """End an absence: the answer now, the clock changes through an Invoke."""
    desk = ctx.fact(SlaDeskFacts)
    if desk is None:
        return _off(ctx)
    context = {"open_count": len(desk.open_clocks)}
    return [
        reply(ctx, "sla_back", context),
        Invoke(BACK_OPERATION, ctx.room_id, {"therapist": ctx.sender}),
    ]


#: The commands of this module, for `bridge.core.command_set`.
COMMANDS = (
    due_command,
    sla_command,
    reply_command,
    away_command,
    back_command,
)


__all__ = [
    "AWAY_OPERATION",
    "BACK_OPERATION",
    "COMMANDS",
    "AwayError",
    "OpenClockFact",
    "ReplyPreview",
    "SlaDeskFacts",
    "SlaPairFacts",
    "away_command",
    "back_command",
    "due_command",
    "local_time",
    "parse_away",
    "parse_until",
    "reply_command",
    "sla_command",
]
