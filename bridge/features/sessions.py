"""Scheduled live sessions in the running bridge: commands, timers, and sessions the CLI adds.

The core (`bridge.core.sessions`) decides; this module stores sessions, answers the
`session.add`/`session.cancel` operations, and handles the `session` timers. The database
is the source of truth: a session's timers are rows in `timers`, re-armed at every start.
Sessions added by `confidant session add` (which only writes the database) are picked up
by a poll that arms their timers in the running bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from bridge import hooks
from bridge.adapters.render import Renderer
from bridge.adapters.video import (
    LAYOUT_EVENT_TYPE,
    WIDGET_EVENT_TYPE,
    layout_state_content,
    new_room_name,
    remove_widget_content,
    widget_state_content,
)
from bridge.audit.log import AuditLog
from bridge.core import sessions as core
from bridge.core.commands import PAIR_ROOM, CommandContext
from bridge.core.model import (
    AppendAudit,
    CancelTimer,
    Effect,
    Invoke,
    Pair,
    SendMessage,
    TimerFired,
)
from bridge.core.video_commands import PATIENT_LINK_OPERATION
from bridge.outbox import enqueue_message
from bridge.ports import MeetingLinks
from bridge.store import Database, pairs, sessions, therapists, timers
from bridge.store import audit as audit_store
from bridge.store.base import ContentSealer, Executor, from_ms, to_ms
from bridge.store.pairs import PairRecord, PairStatus
from bridge.store.sessions import SessionRecord

if TYPE_CHECKING:
    from bridge.host import Host

log = logging.getLogger(__name__)

#: How often the bridge looks for sessions the command line added.
ARM_POLL_SECONDS = 2.0
WIDGET_OPERATION = "session.widget"


def view(record: SessionRecord) -> core.SessionView:
    return core.SessionView(
        record.session_id,
        record.kind,
        from_ms(record.starts_at),
        from_ms(record.ends_at),
        record.meeting,
    )


def scheduled_audit(record: SessionRecord, actor: str, event_id: str | None) -> AppendAudit:
    return core.scheduled_entry(
        record.pair_id,
        record.session_id,
        record.kind,
        record.starts_at,
        record.ends_at,
        actor,
        event_id,
    )


async def store_session(tx: Executor, audit: Any, record: SessionRecord, now: datetime) -> bool:
    """Write a session, its timers and its audit entry without arming anything.

    For the command line (`armed` False: the running bridge arms the timers when it sees
    the session); `audit` is the AuditLog. False when the session id exists already.
    """
    if not await sessions.add(tx, record):
        return False
    for timer in core.session_timers(
        record.session_id, record.pair_id, from_ms(record.starts_at), from_ms(record.ends_at), now
    ):
        await timers.schedule(
            tx,
            timer_id=timer.timer_id,
            kind=timer.timer_kind,
            due_at=to_ms(timer.at),
            pair_id=timer.pair_id,
        )
    await audit.append(tx, scheduled_audit(record, record.created_by, None), now)
    return True


# ---------------------------------------------------------------- the command line's use cases


class SessionRefused(Exception):
    """A session the practice asked for that cannot be scheduled or cancelled; says why."""


@dataclass(frozen=True)
class SessionDesk:
    """What scheduling from outside the running bridge needs: the store, never the homeserver."""

    db: Database
    audit: AuditLog
    renderer: Renderer
    sealer: ContentSealer
    tz: ZoneInfo
    video_on: bool


async def schedule_session(
    desk: SessionDesk, pair: PairRecord, words: list[str], now: datetime, *, actor: str
) -> SessionRecord:
    """Schedule a session for `pair` from `date time [length] [kind]` words.

    The session, its timers and its audit entry are written; the running bridge arms the
    timers when it sees the session. Raises SessionRefused with the reason.
    """
    if pair.status is not PairStatus.ACTIVE:
        raise SessionRefused(f"pair {pair.label} is {pair.status.value}, not active")
    try:
        request = core.parse_request(words, now, desk.tz, video_on=desk.video_on)
    except core.SessionInputError as err:
        raise SessionRefused(desk.renderer.text(err.template, err.context)) from err
    record = SessionRecord(
        session_id=core.session_id_for(secrets.token_hex(16)),
        pair_id=pair.pair_id,
        kind=request.kind,
        starts_at=to_ms(request.starts_at),
        ends_at=to_ms(request.ends_at),
        meeting=new_room_name() if request.kind == "video" else None,
        status="scheduled",
        created_by=actor,
        created_at=to_ms(now),
        cancelled_at=None,
        armed=False,
    )
    async with desk.db.transaction() as tx:
        await store_session(tx, desk.audit, record, now)
    return record


async def cancel_session(
    desk: SessionDesk, pair: PairRecord, session_id: str, now: datetime, *, actor: str
) -> SessionRecord:
    """Cancel one of `pair`'s sessions: its timers go, it is audited, and the pair room is
    told (queued in the outbox for the running bridge). Raises SessionRefused."""
    wanted = session_id.upper()
    async with desk.db.transaction() as tx:
        found = await sessions.get(tx, wanted)
        if found is None or found.pair_id != pair.pair_id:
            raise SessionRefused(f"no session {wanted} for pair {pair.label}")
        if not await sessions.cancel(tx, wanted, to_ms(now)):
            raise SessionRefused(f"session {wanted} is already cancelled")
        effects: list[Effect] = []
        if pair.room_id is not None:
            effects = core.on_cancelled(
                view(found), pair.pair_id, pair.room_id, actor, None, desk.tz
            )
        else:
            effects = list(core.cancel_timers(wanted))
        for effect in effects:
            if isinstance(effect, CancelTimer):
                await timers.cancel(tx, effect.timer_id)
            elif isinstance(effect, AppendAudit):
                await desk.audit.append(tx, effect, now)
            elif isinstance(effect, SendMessage):
                await enqueue_message(tx, desk.renderer, desk.sealer, effect, now)
    return found


class SessionsFeature:
    def __init__(self, app: Host) -> None:
        self.app = app
        self.cfg = app.cfg
        self.parts = app.parts
        self.service = app.service
        self.tz = app.cfg.practice.tzinfo
        self._task: asyncio.Task[None] | None = None

    @property
    def video_on(self) -> bool:
        return self.cfg.jitsi.domain is not None

    # ------------------------------------------------------------ commands

    @hooks.facts
    async def facts(self, tx: Executor, ctx: CommandContext) -> core.SessionFacts | None:
        if ctx.room_kind != PAIR_ROOM or ctx.pair is None:
            return None
        upcoming = await sessions.list_for_pair(tx, ctx.pair.pair_id, ending_after=to_ms(ctx.now))
        return core.SessionFacts(tuple(view(r) for r in upcoming), self.tz, self.video_on)

    @hooks.on_invoke(core.ADD_OPERATION)
    async def add(self, effect: Invoke) -> None:
        """Store a session from `!session` with its timers, and confirm it in the room."""
        params = effect.params
        assert effect.pair_id is not None
        now = self.service.clock()
        kind = str(params["kind"])
        record = SessionRecord(
            session_id=str(params["session_id"]),
            pair_id=effect.pair_id,
            kind=kind,
            starts_at=to_ms(datetime.fromisoformat(str(params["starts_at"]))),
            ends_at=to_ms(datetime.fromisoformat(str(params["ends_at"]))),
            meeting=new_room_name() if kind == "video" else None,
            status="scheduled",
            created_by=str(params["requested_by"]),
            created_at=to_ms(now),
            cancelled_at=None,
            armed=True,
        )
        effects: list[Effect] = []
        async with self.parts.db.transaction() as tx:
            if not await sessions.add(tx, record):
                return
            effects = [
                *core.session_timers(
                    record.session_id,
                    record.pair_id,
                    from_ms(record.starts_at),
                    from_ms(record.ends_at),
                    now,
                ),
                scheduled_audit(record, record.created_by, str(params["event_id"])),
                SendMessage(
                    effect.room_id,
                    "session_added",
                    core.describe(view(record), self.tz),
                    txn_id=f"session.added.{params['event_id']}",
                    pair_id=record.pair_id,
                ),
            ]
            await self.service.apply_durable(tx, effects, now)
        await self.service.apply_after(effects)
        log.info("session scheduled", extra={"pair_id": record.pair_id, "kind": kind})

    @hooks.on_invoke(core.CANCEL_OPERATION)
    async def cancel(self, effect: Invoke) -> None:
        params = effect.params
        session_id = str(params["session_id"])
        now = self.service.clock()
        effects: list[Effect] = []
        async with self.parts.db.transaction() as tx:
            record = await sessions.get(tx, session_id)
            if record is None or record.pair_id != effect.pair_id:
                return
            if not await sessions.cancel(tx, session_id, to_ms(now)):
                return
            effects = core.on_cancelled(
                view(record),
                record.pair_id,
                effect.room_id,
                str(params["requested_by"]),
                str(params["event_id"]),
                self.tz,
            )
            await self.service.apply_durable(tx, effects, now)
        await self.service.apply_after(effects)

    # ------------------------------------------------------------ timers

    @hooks.on_timer(core.TIMER_PREFIX)
    async def on_timer(self, tx: Executor, fired: TimerFired, now: datetime) -> list[Effect]:
        """Remind, open or close a session (nothing for a cancelled one or a closed pair)."""
        from bridge.service import to_pair

        parsed = core.parse_timer_id(fired.timer_id)
        if parsed is None:
            log.warning("not a session timer id", extra={"timer_kind": fired.timer_kind})
            return []
        session_id, step = parsed
        record = await sessions.get(tx, session_id)
        if record is None or record.status != "scheduled":
            return []
        pair_record = await pairs.get(tx, record.pair_id)
        if (
            pair_record is None
            or pair_record.room_id is None
            or pair_record.status is not PairStatus.ACTIVE
        ):
            return []
        pair = to_pair(pair_record)
        session = view(record)
        link = patient_link = None
        effects: list[Effect] = []
        links = self._links(record, pair, now) if step != "end" else None
        if links is not None:
            link, patient_link = links.plain, links.patient
            desk = await therapists.get(tx, pair.therapist_id)
            if links.therapist is not None and desk is not None and desk.desk_room_id:
                effects.append(
                    SendMessage(
                        desk.desk_room_id,
                        "video_moderator_link",
                        {
                            "pair_label": pair.label,
                            "link": links.therapist,
                            "room_id": pair.room_id,
                        },
                        txn_id=f"{fired.timer_id}.desk",
                        pair_id=pair.pair_id,
                    )
                )
        # Who wrote anything in the pair room between the session's start and end.
        present = (
            await audit_store.room_writers(tx, pair.pair_id, record.starts_at, record.ends_at)
            if step == "end"
            else None
        )
        effects += core.on_step(
            step, session, pair, self.tz, link=link, patient_link=patient_link, attended=present
        )
        if record.kind == "video" and record.meeting and step in ("start", "end"):
            effects.append(
                Invoke(
                    WIDGET_OPERATION,
                    pair.room_id,
                    {"meeting": record.meeting, "show": step == "start"},
                    pair_id=pair.pair_id,
                )
            )
        if (
            record.kind == "video"
            and record.meeting
            and step == "start"
            and self.service.handles_invoke(PATIENT_LINK_OPERATION)
        ):
            # Her personal link (a token-protected Jitsi) goes by e-mail, not into the room.
            effects.append(
                Invoke(
                    PATIENT_LINK_OPERATION,
                    pair.room_id,
                    {"meeting": record.meeting},
                    pair_id=pair.pair_id,
                )
            )
        log.info("session timer", extra={"pair_id": pair.pair_id, "step": step})
        return effects

    def _links(self, record: SessionRecord, pair: Pair, now: datetime) -> MeetingLinks | None:
        """The links of a video session's meeting, from the video feature's `meetings` port."""
        if record.kind != "video" or not record.meeting or not self.cfg.jitsi.domain:
            return None
        meetings = self.app.ports.meetings
        if meetings is None:
            log.warning(
                "video session without the video feature: no links", extra={"pair_id": pair.pair_id}
            )
            return None
        return meetings(record.meeting, pair, now)

    @hooks.on_invoke(WIDGET_OPERATION)
    async def widget(self, effect: Invoke) -> None:
        """Show Element's Jitsi widget while a video session runs."""
        domain = self.cfg.jitsi.domain
        meeting = str(effect.params["meeting"])
        rest = self.parts.rest
        if effect.params.get("show") and domain is not None:
            name = self.parts.renderer.text("video_widget_name", {})
            widget_id, content = widget_state_content(domain, meeting, name)
            await rest.put_state(effect.room_id, WIDGET_EVENT_TYPE, widget_id, content)
            await rest.put_state(
                effect.room_id, LAYOUT_EVENT_TYPE, "", layout_state_content(widget_id)
            )
        else:
            widget_id, empty = remove_widget_content(meeting)
            await rest.put_state(effect.room_id, WIDGET_EVENT_TYPE, widget_id, empty)
            await rest.put_state(effect.room_id, LAYOUT_EVENT_TYPE, "", {"widgets": {}})

    # ------------------------------------------------------------ sessions from the CLI

    async def arm_new(self) -> int:
        """Arm the timers of sessions the command line added; returns how many sessions."""
        scheduler = self.service.scheduler
        if scheduler is None:
            return 0
        found = await sessions.unarmed(self.parts.db)
        for record in found:
            for step in core.STEPS:
                timer = await timers.get(self.parts.db, core.timer_id(record.session_id, step))
                if timer is not None and timer.fired_at is None:
                    scheduler.arm(timer.timer_id, from_ms(timer.due_at))
            await sessions.mark_armed(self.parts.db, record.session_id)
        if found:
            log.info("sessions armed", extra={"count": len(found)})
        return len(found)

    async def _poll(self) -> None:
        while True:
            try:
                await self.arm_new()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("session arming failed", extra={"error": type(exc).__name__})
            await asyncio.sleep(ARM_POLL_SECONDS)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._poll(), name="sessions-arm")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def install_sessions(app: Host) -> None:
    """Register `!session`/`!sessions`, the `session` timers, and the CLI-session poll."""
    if app.service.handles_timer(core.TIMER_PREFIX):
        return  # installed already
    feature = SessionsFeature(app)
    app.service.install(feature)
    app.on_start(feature.start)
    app.on_stop(feature.stop)
