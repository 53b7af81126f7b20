"""Wires the SLA core into the service: the pair hook, the "sla" timers, facts and commands.

`install_sla(service, cfg)` is called once after the Service is built (and before the
scheduler re-arms stored timers); `install_sla_feature(app)` does it for the running
bridge. Messages of other channels (e-mail) reach the pair hook as the member's own
message, so they open a clock exactly as a message in the room does. Every decision
is the core's (bridge.core.sla); this module loads the clock and the people involved,
asks the core, and saves the clock in the caller's transaction, so the clock, its audit
entries, timers and outbox rows commit together.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from bridge import hooks
from bridge.config import Config, Practice
from bridge.config import Policy as PolicyConfig
from bridge.core import sla_commands
from bridge.core.commands import DESK_ROOM, PAIR_ROOM, CommandContext
from bridge.core.model import (
    Effect,
    Invoke,
    Kind,
    Pair,
    Role,
    RoomEvent,
    ScheduleTimer,
    SendMessage,
    TimerFired,
)
from bridge.core.sla import (
    Away,
    Clock,
    Desk,
    SlaPolicy,
    Step,
    cancel_clock,
    message_time,
    on_patient_message,
    on_therapist_message,
    on_timer,
    parse_timer_id,
    therapist_away,
    therapist_back,
)
from bridge.core.sla_commands import OpenClockFact, ReplyPreview
from bridge.core.workhours import WorkingCalendar
from bridge.service import Service, to_pair
from bridge.store import clocks, pairs, therapists
from bridge.store.base import Executor, from_ms, to_ms
from bridge.store.pairs import PairStatus
from bridge.store.therapists import TherapistRecord

if TYPE_CHECKING:
    from bridge.host import Host

log = logging.getLogger(__name__)

#: The timer kind prefix the core's timers use ("sla.heads_up", "sla.due", ...).
TIMER_PREFIX = "sla"
#: Creates desk rooms for supervisors who have none, after the transaction that found them.
ENSURE_DESK_OPERATION = "sla.ensure_desk"
#: How soon a waiting escalation fires again once its supervisor's desk room exists.
REFIRE_AFTER = timedelta(seconds=2)
_MIDNIGHT = time(0)


# ---------------------------------------------------------------- config -> core


def _clock_time(minute: int) -> time:
    """Minutes after local midnight as a wall-clock time; 1440 is midnight at day's end."""
    return _MIDNIGHT if minute >= 24 * 60 else time(minute // 60, minute % 60)


def working_calendar(practice: Practice) -> WorkingCalendar:
    """The practice's calendar: weekly hours in its time zone, public holidays, closures.

    A practice without any opening hours (possible when every policy counts calendar
    time) is open around the clock, so reminders are never held back for an opening.
    """
    weekly: dict[int, list[tuple[time, time]]] = {}
    for weekday in range(7):
        ranges = practice.working_hours.on(weekday)
        if ranges:
            weekly[weekday] = [
                (_clock_time(r.start_minute), _clock_time(r.end_minute)) for r in ranges
            ]
    if not weekly:
        log.info("no working hours configured: reminders may go out at any time")
        weekly = {weekday: [(_MIDNIGHT, _MIDNIGHT)] for weekday in range(7)}
    days_off: Any = practice.holidays.calendar() if practice.holidays is not None else frozenset()
    return WorkingCalendar(practice.tzinfo, weekly, days_off, practice.closures)


def sla_policy(name: str, policy: PolicyConfig, practice: Practice) -> SlaPolicy:
    """The core's policy for one configured policy."""
    return SlaPolicy(
        window=policy.window,
        window_clock=policy.window_clock,
        heads_up_before=policy.heads_up_before,
        remind_at_due=policy.remind_at_due,
        escalate_after=policy.escalate_after,
        supervisors=tuple(policy.supervisors),
        patient_notice=policy.patient_notice,
        open_clock_on=policy.open_clock_on,
        tell_patient_on_breach=policy.tell_patient_on_breach,
        email_reminders="email" in policy.channels,
        crisis_line=practice.crisis_line,
        name=name,
        remind_during=policy.remind_during,
        escalate_during=policy.escalate_during,
    )


def _command_name(text: str) -> str:
    words = text[1:].split()
    return words[0].lower() if words else ""


async def consent_pending(ex: Executor, pair_id: str) -> bool:
    """Whether the patient has still to accept the consent text (no clock opens until then).

    Pairs start "pending" only when the practice asks for consent; "accepted" and
    "not_required" both let clocks open.
    """
    record = await pairs.get(ex, pair_id)
    return record is not None and record.consent_state == "pending"


async def live_session(ex: Executor, pair_id: str, now: datetime) -> bool:
    """Whether patient and therapist are in a live session (a message then needs no clock)."""
    try:
        from bridge.store import sessions
    except ImportError:
        # Live sessions are an optional part of the store: without it nothing is ever live.
        return False
    return bool(await sessions.live_session(ex, pair_id, now))


# ---------------------------------------------------------------- runtime


class SlaRuntime:
    """The SLA side of the service: policies and calendar built once from the config."""

    def __init__(
        self,
        service: Service,
        cfg: Config,
        ensure_desk: Callable[[str], Awaitable[str]] | None = None,
    ) -> None:
        self.service = service
        #: Creates a person's desk room if they have none (the pair manager's); without
        #: it (tests of the wiring) supervisors without a desk are only retried.
        self.ensure_desk = ensure_desk
        self.calendar = working_calendar(cfg.practice)
        self.policies = {
            name: sla_policy(name, policy, cfg.practice) for name, policy in cfg.policies.items()
        }
        self._desk_channel = {name: "desk" in p.channels for name, p in cfg.policies.items()}

    def policy(self, name: str) -> SlaPolicy:
        """The named policy; a name the config no longer has falls back to the default."""
        found = self.policies.get(name)
        if found is None:
            log.warning("unknown SLA policy, using default", extra={"policy": name})
            return self.policies["default"]
        return found

    # ------------------------------------------------------------ people

    def _desk(self, policy: SlaPolicy, user_id: str, row: TherapistRecord | None) -> Desk:
        """Where `user_id`'s reminders go under `policy`'s channels."""
        room = row.desk_room_id if row is not None else None
        if not self._desk_channel.get(policy.name, True):
            room = None
        email = row.email if row is not None and policy.email_reminders else None
        return Desk(user_id, room, email)

    async def _away(
        self, ex: Executor, policy: SlaPolicy, row: TherapistRecord | None, now: datetime
    ) -> Away | None:
        """The therapist's current absence, with the cover's desk; None when not away."""
        if row is None or row.away_until is None:
            return None
        away = Away(from_ms(row.away_until))
        if not away.active(now):
            return None
        if row.cover_id is None:
            return away
        cover_row = await therapists.get(ex, row.cover_id)
        return Away(away.until, self._desk(policy, row.cover_id, cover_row))

    @staticmethod
    def supervisors_of(policy: SlaPolicy, therapist: TherapistRecord | None) -> list[str]:
        """Who an escalation under `policy` of `therapist`'s clock goes to: the policy's
        supervisors and the therapist's own (`therapist add --supervisor`), once each."""
        ids = list(policy.supervisors)
        if therapist is not None and therapist.supervisor_id and therapist.supervisor_id not in ids:
            ids.append(therapist.supervisor_id)
        return ids

    async def _supervisors(
        self, ex: Executor, policy: SlaPolicy, therapist: TherapistRecord | None
    ) -> tuple[list[Desk], list[str]]:
        """The supervisors' desks that can be reached, and those who have no desk room yet."""
        desks: list[Desk] = []
        without_desk: list[str] = []
        for user_id in self.supervisors_of(policy, therapist):
            row = await therapists.get(ex, user_id)
            desk = self._desk(policy, user_id, row)
            if row is None or row.desk_room_id is None:
                without_desk.append(user_id)
            if desk.room_id is None and desk.email is None:
                continue
            desks.append(desk)
        return desks, without_desk

    # ------------------------------------------------------------ pair hook

    @hooks.pair_hook
    async def on_pair_event(self, tx: Executor, pair: Pair, ev: RoomEvent) -> list[Effect]:
        """Open the clock on a patient's message, close it on the therapist's reply."""
        if ev.role not in (Role.PATIENT, Role.THERAPIST) or pair.status != PairStatus.ACTIVE:
            return []
        clock = await clocks.get_open(tx, pair.pair_id)
        # An open clock keeps the policy it opened under, even if the pair's changed since.
        policy = self.policy(clock.policy if clock is not None else pair.policy)
        # The clock counts from when the member sent it, so downtime counts like any minute.
        now = message_time(ev.origin_ts, ev.seen_at)
        if ev.role is Role.PATIENT:
            explicit = False
            if ev.command is not None:
                # Commands are not messages to answer; only a reply request opens a clock.
                if _command_name(ev.command) != "reply" or policy.open_clock_on != "reply_request":
                    return []
                explicit = True
            away = await self._away(tx, policy, await therapists.get(tx, pair.therapist_id), now)
            new, effects = on_patient_message(
                clock,
                pair,
                policy,
                self.calendar,
                ev.kind,
                ev.event_id,
                now,
                explicit_reply_request=explicit,
                live_session=await live_session(tx, pair.pair_id, now),
                consent_pending=await consent_pending(tx, pair.pair_id),
                away=away,
            )
        else:
            new, effects = on_therapist_message(
                clock,
                policy,
                self.calendar,
                ev.kind,
                ev.event_id,
                ev.sender,
                now,
                is_command=ev.command is not None,
            )
        await self._save(tx, clock, new)
        return effects

    @staticmethod
    async def _save(tx: Executor, old: Clock | None, new: Clock | None) -> None:
        if new is not None and new is not old:
            await clocks.save(tx, new)

    # ------------------------------------------------------------ timers

    @hooks.on_timer(TIMER_PREFIX)
    async def on_timer(self, tx: Executor, fired: TimerFired, now: datetime) -> list[Effect]:
        """Heads-up, reminder or escalation of one clock (the core decides which, if any)."""
        ref = parse_timer_id(fired.timer_id)
        if ref is None:
            log.warning("not an SLA timer id", extra={"timer_kind": fired.timer_kind})
            return []
        clock = await clocks.get(tx, ref.clock_id)
        if clock is None or not clock.is_open:
            return []
        record = await pairs.get(tx, clock.pair_id)
        if record is None or record.room_id is None or record.status is not PairStatus.ACTIVE:
            # The pair was closed with its clock still open: nobody is left to remind.
            cancelled, effects = cancel_clock(clock, "pair_inactive", now)
            await self._save(tx, clock, cancelled)
            log.info("SLA clock of an inactive pair cancelled", extra={"pair_id": clock.pair_id})
            return effects
        pair = to_pair(record)
        policy = self.policy(clock.policy)
        row = await therapists.get(tx, clock.therapist_id)
        if row is None or row.desk_room_id is None:
            log.warning("therapist has no desk room", extra={"user_id": clock.therapist_id})
        # Only the escalation reaches supervisors: spare the lookups for other steps.
        supervisors, without_desk = (
            await self._supervisors(tx, policy, row) if ref.step is Step.ESCALATION else ([], [])
        )
        new, effects = on_timer(
            clock,
            fired.timer_id,
            now,
            pair=pair,
            policy=policy,
            cal=self.calendar,
            therapist=self._desk(policy, clock.therapist_id, row),
            supervisors=supervisors,
            away=await self._away(tx, policy, row, now),
        )
        if without_desk and self._desk_channel.get(policy.name, True):
            # A supervisor without a desk room gets one (after this transaction), and the
            # waiting escalation is fired again as soon as it exists.
            params = {
                "user_ids": without_desk,
                "timer_id": fired.timer_id,
                "timer_kind": fired.timer_kind,
            }
            effects.append(Invoke(ENSURE_DESK_OPERATION, pair.room_id, params, pair.pair_id))
        await self._save(tx, clock, new)
        log.info(
            "SLA timer",
            extra={
                "pair_id": clock.pair_id,
                "timer_kind": fired.timer_kind,
                "messages": sum(isinstance(e, SendMessage) for e in effects),
            },
        )
        return effects

    # ------------------------------------------------------------ command facts

    @hooks.facts
    async def facts(
        self, tx: Executor, ctx: CommandContext
    ) -> sla_commands.SlaDeskFacts | sla_commands.SlaPairFacts | None:
        """What the SLA commands need, looked up before the core decides."""
        tz = self.calendar.tz
        if ctx.room_kind == DESK_ROOM and ctx.role is Role.THERAPIST:
            listed: list[OpenClockFact] = []
            for open_clock in await clocks.list_open(tx, therapist_id=ctx.sender):
                record = await pairs.get(tx, open_clock.pair_id)
                if (
                    record is not None
                    and record.room_id is not None
                    and record.status is PairStatus.ACTIVE
                ):
                    listed.append(OpenClockFact(open_clock, record.label, record.room_id))
            everyone = frozenset(t.user_id for t in await therapists.list_therapists(tx))
            return sla_commands.SlaDeskFacts(tz, tuple(listed), everyone)
        if ctx.room_kind == PAIR_ROOM and ctx.pair is not None:
            policy = self.policy(ctx.pair.policy)
            clock = await clocks.get_open(tx, ctx.pair.pair_id)
            preview = None
            if ctx.role is Role.PATIENT and policy.open_clock_on == "reply_request":
                preview = await self._reply_preview(tx, ctx.pair, policy, clock, ctx)
            return sla_commands.SlaPairFacts(tz, policy, clock, preview)
        return None

    async def _reply_preview(
        self, tx: Executor, pair: Pair, policy: SlaPolicy, clock: Clock | None, ctx: CommandContext
    ) -> ReplyPreview:
        """Ask the core what `!reply` will do, with the very inputs the pair hook uses."""
        away = await self._away(tx, policy, await therapists.get(tx, pair.therapist_id), ctx.now)
        opened, effects = on_patient_message(
            clock,
            pair,
            policy,
            self.calendar,
            Kind.TEXT,
            ctx.event_id,
            ctx.now,
            explicit_reply_request=True,
            live_session=await live_session(tx, pair.pair_id, ctx.now),
            consent_pending=await consent_pending(tx, pair.pair_id),
            away=away,
        )
        if opened is None or opened is clock:
            return ReplyPreview(opens=False)
        notice = any(
            isinstance(e, SendMessage) and e.template == "sla_expected_reply" for e in effects
        )
        return ReplyPreview(opens=True, due_at=opened.due_at, notice=notice)

    # ------------------------------------------------------------ supervisors' desks

    @hooks.on_invoke(ENSURE_DESK_OPERATION)
    async def on_ensure_desk(self, invoke: Invoke) -> None:
        """Create the desk rooms of supervisors who have none (idempotent), then fire the
        escalation that was waiting for them at once instead of at its next retry."""
        user_ids = invoke.params.get("user_ids")
        if self.ensure_desk is None or not isinstance(user_ids, list):
            return
        made = 0
        for user_id in user_ids:
            try:
                await self.ensure_desk(str(user_id))
                made += 1
            except Exception as exc:  # the next escalation retry asks again
                log.warning(
                    "could not create a supervisor's desk room",
                    extra={"user_id": user_id, "error": type(exc).__name__},
                )
        timer_id, kind = invoke.params.get("timer_id"), invoke.params.get("timer_kind")
        if made and isinstance(timer_id, str) and isinstance(kind, str):
            await self.service.refresh_rooms()
            now = self.service.clock()
            # Not at `now`: this runs inside the escalation timer's own firing, and the
            # scheduler skips a timer that is due while its previous firing still runs.
            at = now + REFIRE_AFTER
            again: list[Effect] = [ScheduleTimer(timer_id, kind, at, invoke.pair_id)]
            async with self.service.db.transaction() as tx:
                await self.service.apply_durable(tx, again, now)
            await self.service.apply_after(again)

    async def check_escalation_reach(self) -> list[str]:
        """Warnings for active pairs whose escalations could reach nobody; desks made.

        Run at start: every supervisor named by a policy or a therapist gets a desk room,
        so the first escalation does not have to wait for one.
        """
        async with self.service.db.transaction() as tx:
            staff = {t.user_id: t for t in await therapists.list_therapists(tx)}
            active = [p for p in await pairs.list_pairs(tx) if p.status is PairStatus.ACTIVE]
        named = {t.supervisor_id for t in staff.values() if t.supervisor_id}
        for policy in self.policies.values():
            if policy.escalate_after is not None:
                named.update(policy.supervisors)
        warnings: list[str] = []
        for therapist_id, policy_name in sorted({(p.therapist_id, p.policy) for p in active}):
            policy = self.policy(policy_name)
            if policy.escalate_after is None:
                continue
            if not self.supervisors_of(policy, staff.get(therapist_id)):
                warnings.append(
                    f"policy {policy.name!r} escalates, but therapist {therapist_id} has no "
                    f"supervisor and the policy names none: set policies.{policy.name}."
                    f"supervisors or `confidant therapist add {therapist_id} "
                    "--supervisor @someone:server`"
                )
        missing = sorted(u for u in named if u not in staff or not staff[u].desk_room_id)
        if missing and self.ensure_desk is not None:
            await self.on_ensure_desk(Invoke(ENSURE_DESK_OPERATION, "", {"user_ids": missing}))
        return warnings

    # ------------------------------------------------------------ away / back

    @hooks.on_invoke(sla_commands.AWAY_OPERATION)
    async def on_away(self, invoke: Invoke) -> None:
        """Store the absence and pause (or hand to the cover) the therapist's open clocks."""
        therapist = str(invoke.params["therapist"])
        until = datetime.fromisoformat(str(invoke.params["until"]))
        cover = invoke.params.get("cover")
        await self._absence(therapist, until, None if cover is None else str(cover))

    @hooks.on_invoke(sla_commands.BACK_OPERATION)
    async def on_back(self, invoke: Invoke) -> None:
        """End the absence and resume the therapist's paused clocks."""
        await self._absence(str(invoke.params["therapist"]), None, None)

    async def _absence(self, therapist: str, until: datetime | None, cover: str | None) -> None:
        service = self.service
        now = service.clock()
        effects: list[Effect] = []
        async with service.db.transaction() as tx:
            await therapists.set_away(tx, therapist, None if until is None else to_ms(until), cover)
            row = await therapists.get(tx, therapist)
            open_clocks = await clocks.list_open(tx, therapist_id=therapist)
            for clock in open_clocks:
                policy = self.policy(clock.policy)
                new: Clock | None
                if until is None:
                    new, changes = therapist_back(clock, policy, self.calendar, now)
                else:
                    away = await self._away(tx, policy, row, now) or Away(until)
                    new, changes = therapist_away(clock, policy, self.calendar, away, now)
                await self._save(tx, clock, new)
                effects += changes
            await service.apply_durable(tx, effects, now)
        log.info(
            "therapist away" if until is not None else "therapist back",
            extra={"user_id": therapist, "clocks": len(open_clocks), "cover": cover is not None},
        )
        await service.apply_after(effects)


def install_sla(
    service: Service,
    cfg: Config,
    ensure_desk: Callable[[str], Awaitable[str]] | None = None,
) -> SlaRuntime | None:
    """Register the SLA hook, timer handler, facts provider, commands and away/back operations.

    Call it before the scheduler re-arms stored timers, so overdue reminders find their
    handler. A second call on the same service does nothing.
    """
    if service.handles_timer(TIMER_PREFIX):
        return None
    runtime = SlaRuntime(service, cfg, ensure_desk)
    service.install(runtime)
    log.info("SLA installed", extra={"policies": len(runtime.policies)})
    return runtime


async def install_sla_feature(app: Host) -> None:
    """Install the SLA on the running bridge; at start, check who escalations reach."""
    pairs_manager = app.parts.pairs

    async def ensure_desk(user_id: str) -> str:
        return await pairs_manager.ensure_therapist(user_id, app.service.clock())

    runtime = install_sla(app.service, app.cfg, ensure_desk)
    if runtime is None:
        return

    async def check() -> None:
        for warning in await runtime.check_escalation_reach():
            log.warning("escalation can reach nobody", extra={"problem": warning})

    app.on_start(check)


# ---------------------------------------------------------------- the report

if TYPE_CHECKING:
    from bridge.core.sla_report import GroupBy, TherapistStats


async def sla_report(
    ex: Executor,
    cfg: Config,
    start: datetime,
    end: datetime,
    now: datetime,
    *,
    by: GroupBy = "therapist",
) -> list[TherapistStats]:
    """Response times per therapist (or per policy) for [start, end), as `confidant sla
    report` and GET /api/v1/sla/report show them.

    The rows count the clocks a reply closed in the period, and the clocks opened in it
    that are still open and past due at its end (or at `now`, when that comes first). Each
    time counts in its own policy's clock, working or calendar.
    """
    from bridge.core.sla_report import summarize

    closed = await clocks.list_closed(ex, start, end)
    still_open = [c for c in await clocks.list_open(ex) if start <= c.opened_at < end]
    return summarize(
        [*closed, *still_open],
        now=min(now, end),
        clocks_of={name: p.window_clock for name, p in cfg.policies.items()},
        cal=working_calendar(cfg.practice),
        by=by,
    )
