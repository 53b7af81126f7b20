"""The SLA in the running service: clocks, reminders, commands and restarts.

Two layers. The service with a settable clock on both databases: the pair hook, the
"sla" timers, the commands and away/back, all through the real transactions, outbox
and audit log. Then the real bridge against the real Synapse with windows of seconds:
the therapist's own client decrypts the reminder in the desk room, a reply before due
cancels it, and a restart while a reminder is due sends it exactly once.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from nio import RoomMessageNotice

from bridge.adapters.matrix.events import IncomingEvent
from bridge.adapters.render import Renderer
from bridge.app import App
from bridge.audit.log import AuditLog
from bridge.config import Config, minimal_config
from bridge.core.inbound import InboundMessage
from bridge.core.model import Kind, Role
from bridge.core.sla import ClockState, Step
from bridge.features.sla import SlaRuntime, install_sla
from bridge.sealing import Sealer
from bridge.service import Service
from bridge.store import (
    Database,
    clocks,
    open_database,
    outbox,
    pairs,
    sessions,
    therapists,
    timers,
)
from bridge.store.base import Executor, to_ms
from bridge.store.pairs import PairStatus
from tests.support.bridge_app import bridge_config, notice_containing, text_from

pytestmark = pytest.mark.integration

T = TypeVar("T")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_DAY: dict[str, str | None] = dict.fromkeys(WEEKDAYS, "00:00-24:00")
SECRET = "I could not sleep again, it is about my father"
START = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
PATIENT = "@pat:localhost"
DOC = "@doc:localhost"
COVER = "@cover:localhost"
SUP = "@sup:localhost"
NO_DESK_SUP = "@sup2:localhost"
BOT = "@confidant:localhost"
DESK = {DOC: "!desk-doc:localhost", COVER: "!desk-cover:localhost", SUP: "!desk-sup:localhost"}


# ---------------------------------------------------------------- the service, both databases


@dataclass
class FakeScheduler:
    """Records what the service arms and disarms."""

    armed: dict[str, datetime] = field(default_factory=dict)

    def arm(self, timer_id: str, at: datetime) -> None:
        self.armed[timer_id] = at

    def disarm(self, timer_id: str) -> None:
        self.armed.pop(timer_id, None)


@dataclass
class Rig:
    db: Database
    service: Service
    runtime: SlaRuntime
    scheduler: FakeScheduler
    sealer: Sealer
    pair_id: str
    room_id: str
    label: str
    now: list[datetime]
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def at(self, moment: datetime) -> None:
        self.now[0] = moment

    async def say(
        self,
        sender: str,
        body: str,
        room_id: str | None = None,
        *,
        sent_at: datetime | None = None,
    ) -> str:
        """`sender` says `body`; `sent_at` is its origin time when it is not now (the bridge
        sees it late, after an outage)."""
        event_id = f"$ev{next(self.ids)}"
        await self.service.on_event(
            IncomingEvent(
                room_id=room_id or self.room_id,
                event_id=event_id,
                sender=sender,
                type="m.room.message",
                content={"msgtype": "m.text", "body": body},
                origin_server_ts=to_ms(sent_at or self.now[0]),
                encrypted=True,
            )
        )
        return event_id

    async def fire(self, timer: str, at: datetime) -> None:
        self.at(at)
        await self.service.fire_timer(timer)

    async def sent(self, room_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        """Bodies queued for a room (optionally of one template), oldest first."""
        rows = await self.db.fetch(
            "SELECT txn_id, kind FROM outbox WHERE room_id = ? ORDER BY created_at, txn_id",
            room_id,
        )
        out = []
        for row in rows:
            if kind is not None and row["kind"] != kind:
                continue
            item = await outbox.get(self.db, row["txn_id"], self.sealer)
            assert item is not None and item.content is not None
            out.append({"txn_id": row["txn_id"], "kind": row["kind"], **item.content})
        return out

    async def audit(self, action: str) -> list[dict[str, Any]]:
        return await self.db.fetch(
            "SELECT actor, outcome FROM audit_entries WHERE action = ? ORDER BY seq", action
        )


def service_config(**policies: dict[str, Any]) -> Config:
    return minimal_config(
        practice={"timezone": "UTC", "working_hours": ALL_DAY, "crisis_line": "+44 800 000"},
        policies={
            "default": {
                "window": "4h",
                "window_clock": "calendar",
                "heads_up_before": "1h",
                "escalate_after": "1h",
                "supervisors": [SUP, NO_DESK_SUP],
                "patient_notice": "never",
            },
            **policies,
        },
    )


async def make_rig(
    db: Database, cfg: Config, policy: str = "default", consent: str = "not_required"
) -> Rig:
    sealer = Sealer({"k1": bytes(range(32))}, "k1")
    now = [START]
    service = Service(
        db=db,
        rest=None,  # type: ignore[arg-type]  # nothing here acts on rooms
        renderer=Renderer(),
        sealer=sealer,
        audit=AuditLog(db, sealer, bytes(range(32, 64))),
        bot_user_id=BOT,
        clock=lambda: now[0],
    )
    scheduler = FakeScheduler()
    service.scheduler = scheduler
    runtime = install_sla(service, cfg)
    assert runtime is not None
    assert install_sla(service, cfg) is None  # a second call adds nothing
    for user in (DOC, COVER, SUP):
        await therapists.upsert(db, user, now=to_ms(START), email=None)
        await therapists.set_desk_room(db, user, DESK[user])
    record = await pairs.create(
        db,
        patient_id=PATIENT,
        therapist_id=DOC,
        now=to_ms(START),
        policy=policy,
        room_id="!pair:localhost",
        consent_state=consent,
    )
    await service.refresh_rooms()
    return Rig(
        db,
        service,
        runtime,
        scheduler,
        sealer,
        record.pair_id,
        "!pair:localhost",
        record.label,
        now,
    )


async def test_patient_message_opens_and_reply_closes(db: Database) -> None:
    rig = await make_rig(db, service_config())
    first = await rig.say(PATIENT, SECRET)
    clock = await clocks.get_open(db, rig.pair_id)
    assert clock is not None and clock.first_event_id == first
    assert clock.due_at == START + timedelta(hours=4)
    assert set(rig.scheduler.armed) == {clock.timer_id(step) for step in Step}
    # Later patient messages, the bot's own notices and commands move nothing.
    rig.at(START + timedelta(minutes=5))
    await rig.say(PATIENT, "and another thing")
    await rig.say(BOT, "a notice")
    await rig.say(DOC, "!sla")
    assert await clocks.get_open(db, rig.pair_id) == clock
    (status,) = await rig.sent(rig.room_id, "sla_status")
    assert "due 2026-11-30 13:00 (UTC)" in status["body"]
    # The therapist's reply closes it and cancels every timer.
    rig.at(START + timedelta(hours=1))
    reply = await rig.say(DOC, "I am here")
    assert await clocks.get_open(db, rig.pair_id) is None
    closed = await clocks.get(db, clock.clock_id)
    assert closed is not None and closed.state is ClockState.CLOSED
    assert closed.met and closed.closing_event_id == reply
    assert closed.response_calendar == timedelta(hours=1)
    assert rig.scheduler.armed == {}
    assert [await timers.get(db, clock.timer_id(step)) for step in Step] == [None] * 3
    assert [r["actor"] for r in await rig.audit("sla.opened")] == [PATIENT]
    assert [r["actor"] for r in await rig.audit("sla.closed")] == [DOC]


async def test_timers_remind_escalate_once_and_never_leak_content(db: Database) -> None:
    rig = await make_rig(db, service_config())
    await rig.say(PATIENT, SECRET)
    clock = await clocks.get_open(db, rig.pair_id)
    assert clock is not None
    heads_up, due, escalation = (clock.timer_id(s) for s in Step)
    await rig.fire(heads_up, START + timedelta(hours=3))
    await rig.fire(due, START + timedelta(hours=4))
    await rig.fire(due, START + timedelta(hours=4, seconds=5))  # a second firing does nothing
    await rig.fire(escalation, START + timedelta(hours=5))
    desk = await rig.sent(DESK[DOC])
    assert [m["kind"] for m in desk] == ["sla_heads_up", "sla_reminder"]
    assert all(f"pair {rig.label}" in m["body"] for m in desk)
    assert all(m["body"].endswith(f"https://matrix.to/#/{rig.room_id}") for m in desk)
    (escalated,) = await rig.sent(DESK[SUP])
    assert escalated["kind"] == "sla_escalation" and DOC in escalated["body"]
    everything = await db.fetch("SELECT txn_id FROM outbox")
    for row in everything:
        item = await outbox.get(db, row["txn_id"], rig.sealer)
        assert item is not None and SECRET not in str(item.content)
    # The supervisor with a desk is reached at once; the one without is given a desk room
    # (the rig has nobody to create one, so only the one with a desk is in the entry).
    (entry,) = await db.fetch(
        "SELECT details FROM audit_entries WHERE action = 'sla.escalated' ORDER BY seq"
    )
    assert SUP in entry["details"] and NO_DESK_SUP not in entry["details"]
    assert len(await rig.audit("sla.reminded")) == 2
    saved = await clocks.get_open(db, rig.pair_id)
    assert saved is not None and {"heads_up", "due", "escalation", "breached"} <= saved.steps_done


async def test_escalation_waits_for_a_supervisor_without_a_desk_and_then_reaches_them(
    db: Database,
) -> None:
    # The policy names no supervisor: the therapist's own (`therapist add --supervisor`) is
    # the one to tell, and has no desk room yet.
    cfg = service_config(
        default={
            "window": "4h",
            "window_clock": "calendar",
            "heads_up_before": None,
            "escalate_after": "1h",
            "patient_notice": "never",
        }
    )
    rig = await make_rig(db, cfg)
    await therapists.upsert(db, DOC, now=to_ms(START), supervisor_id=NO_DESK_SUP)
    assert await rig.runtime.check_escalation_reach() == []
    created: list[str] = []

    async def ensure_desk(user_id: str) -> str:
        created.append(user_id)
        await therapists.upsert(db, user_id, now=to_ms(rig.now[0]))
        await therapists.set_desk_room(db, user_id, "!desk-sup2:localhost")
        return "!desk-sup2:localhost"

    await rig.say(PATIENT, SECRET)
    clock = await clocks.get_open(db, rig.pair_id)
    assert clock is not None and clock.escalate_at == START + timedelta(hours=5)
    escalation = clock.timer_id(Step.ESCALATION)
    await rig.fire(escalation, START + timedelta(hours=5))
    # Nobody reachable: nothing lost, the step is open, re-armed, and a desk is asked for.
    assert await rig.audit("sla.escalated") == []
    assert [r["outcome"] for r in await rig.audit("sla.escalation_waiting")] == ["no_recipient"]
    retry = await timers.get(db, escalation)
    assert retry is not None and retry.fired_at is None
    assert retry.due_at == to_ms(START + timedelta(hours=5, minutes=15))
    waiting = await clocks.get_open(db, rig.pair_id)
    assert waiting is not None and "escalation" not in waiting.steps_done
    assert created == []  # the rig's runtime had no way to make desks yet
    rig.runtime.ensure_desk = ensure_desk
    await rig.fire(escalation, START + timedelta(hours=5, minutes=15))
    assert created == [NO_DESK_SUP]
    await rig.fire(escalation, START + timedelta(hours=5, minutes=30))
    (escalated,) = await rig.sent("!desk-sup2:localhost")
    assert escalated["kind"] == "sla_escalation" and SECRET not in escalated["body"]
    assert [r["outcome"] for r in await rig.audit("sla.escalated")] == ["ok"]
    assert len(await rig.audit("sla.escalation_waiting")) == 1
    done = await clocks.get_open(db, rig.pair_id)
    assert done is not None and "escalation" in done.steps_done


async def test_escalating_policy_without_any_supervisor_is_a_start_up_warning(
    db: Database,
) -> None:
    cfg = service_config(
        default={"window": "4h", "escalate_after": "1h", "patient_notice": "never"}
    )
    rig = await make_rig(db, cfg)
    warnings = await rig.runtime.check_escalation_reach()
    assert any(DOC in w and "--supervisor" in w for w in warnings)


async def test_clock_times_are_the_messages_own_times(db: Database) -> None:
    # The bridge was down from START: it sees the patient's message and the reply to it
    # only ten minutes later. The clock runs on the times they were sent.
    rig = await make_rig(db, service_config())
    rig.at(START + timedelta(minutes=10))
    await rig.say(PATIENT, SECRET, sent_at=START)
    clock = await clocks.get_open(db, rig.pair_id)
    assert clock is not None and clock.opened_at == START
    assert clock.due_at == START + timedelta(hours=4)
    await rig.say(DOC, "I am here", sent_at=START + timedelta(seconds=4.8))
    closed = await clocks.get(db, clock.clock_id)
    assert closed is not None and closed.state is ClockState.CLOSED
    assert closed.response_calendar == timedelta(seconds=4.8)
    assert closed.closed_at == START + timedelta(seconds=4.8)


async def test_no_clock_opens_while_consent_is_pending(db: Database) -> None:
    cfg = service_config()
    assert cfg.practice.ask_consent
    rig = await make_rig(db, cfg, consent="pending")
    await rig.say(PATIENT, SECRET)
    assert await clocks.get_open(db, rig.pair_id) is None
    assert rig.scheduler.armed == {}
    assert await rig.audit("sla.opened") == []
    # Once the patient has accepted, their next message opens the clock.
    assert await pairs.set_consent(db, rig.pair_id, "accepted")
    rig.at(START + timedelta(minutes=30))
    later = await rig.say(PATIENT, "are you there?")
    clock = await clocks.get_open(db, rig.pair_id)
    assert clock is not None and clock.first_event_id == later
    assert clock.due_at == START + timedelta(hours=4, minutes=30)


async def test_no_clock_opens_during_a_live_session(db: Database) -> None:
    rig = await make_rig(db, service_config())
    await sessions.add(
        db,
        sessions.SessionRecord(
            session_id="s1",
            pair_id=rig.pair_id,
            kind="text",
            starts_at=to_ms(START - timedelta(minutes=5)),
            ends_at=to_ms(START + timedelta(minutes=50)),
            meeting=None,
            status="scheduled",
            created_by=DOC,
            created_at=to_ms(START - timedelta(days=1)),
            cancelled_at=None,
            armed=True,
        ),
    )
    await rig.say(PATIENT, "talking live now")
    assert await clocks.get_open(db, rig.pair_id) is None
    assert rig.scheduler.armed == {}
    # After the session a message waits for an answer again.
    rig.at(START + timedelta(hours=1))
    after = await rig.say(PATIENT, "one more thing after the session")
    clock = await clocks.get_open(db, rig.pair_id)
    assert clock is not None and clock.first_event_id == after


async def test_reply_request_mode(db: Database) -> None:
    cfg = service_config(
        journal={"window": "2h", "window_clock": "calendar", "open_clock_on": "reply_request"}
    )
    rig = await make_rig(db, cfg, policy="journal")
    await rig.say(PATIENT, "just writing things down")
    await rig.say(PATIENT, "!help")
    assert await clocks.get_open(db, rig.pair_id) is None
    rig.at(START + timedelta(minutes=10))
    request = await rig.say(PATIENT, "!reply")
    clock = await clocks.get_open(db, rig.pair_id)
    assert clock is not None and clock.first_event_id == request
    assert clock.due_at == START + timedelta(hours=2, minutes=10)
    (ack,) = await rig.sent(rig.room_id, "sla_reply_requested")
    assert "by 2026-11-30 11:10 (UTC)" in ack["body"]
    await rig.say(PATIENT, "!reply")
    (pending,) = await rig.sent(rig.room_id, "sla_reply_pending")
    assert "11:10" in pending["body"]


async def test_reply_is_a_notice_when_every_message_counts(db: Database) -> None:
    rig = await make_rig(db, service_config())
    await rig.say(PATIENT, "!reply")
    assert await clocks.get_open(db, rig.pair_id) is None
    assert [m["kind"] for m in await rig.sent(rig.room_id, "sla_reply_not_needed")] == [
        "sla_reply_not_needed"
    ]


async def test_due_away_with_and_without_cover_and_back(db: Database) -> None:
    rig = await make_rig(db, service_config())
    await rig.say(PATIENT, SECRET)
    clock = await clocks.get_open(db, rig.pair_id)
    assert clock is not None
    await rig.say(DOC, "!due", DESK[DOC])
    (listing,) = await rig.sent(DESK[DOC], "sla_due")
    assert rig.label in listing["body"] and "2026-11-30 13:00" in listing["body"]
    assert SECRET not in listing["body"]

    # Away without cover for two hours: the clock pauses and every step moves by two hours.
    rig.at(START + timedelta(hours=1))
    await rig.say(DOC, "!away 2h", DESK[DOC])
    row = await therapists.get(db, DOC)
    assert row is not None and row.away_until == to_ms(START + timedelta(hours=3))
    paused = await clocks.get_open(db, rig.pair_id)
    assert paused is not None and paused.is_paused
    assert paused.due_at == START + timedelta(hours=6)
    assert rig.scheduler.armed[clock.timer_id(Step.DUE)] == paused.due_at
    stored = await timers.get(db, clock.timer_id(Step.DUE))
    assert stored is not None and stored.due_at == to_ms(paused.due_at)

    # Back after one hour: one hour of pause counts, the rest does not.
    rig.at(START + timedelta(hours=2))
    await rig.say(DOC, "!back", DESK[DOC])
    resumed = await clocks.get_open(db, rig.pair_id)
    assert resumed is not None and not resumed.is_paused
    assert resumed.due_at == START + timedelta(hours=5)
    row = await therapists.get(db, DOC)
    assert row is not None and row.away_until is None

    # Away with cover: the due time stays and the cover's desk gets the reminder.
    await rig.say(DOC, f"!away 1d cover {COVER}", DESK[DOC])
    covered = await clocks.get_open(db, rig.pair_id)
    assert covered is not None and covered.due_at == resumed.due_at
    await rig.fire(clock.timer_id(Step.DUE), resumed.due_at)
    (reminder,) = await rig.sent(DESK[COVER], "sla_reminder")
    assert f"You are covering for {DOC}" in reminder["body"]
    assert await rig.sent(DESK[DOC], "sla_reminder") == []
    answers = sorted(m["kind"] for m in await rig.sent(DESK[DOC]))
    assert answers == ["sla_away", "sla_away", "sla_back", "sla_due"]


async def test_patient_email_opens_a_clock(db: Database) -> None:
    rig = await make_rig(db, service_config())
    mail = InboundMessage(
        channel="email",
        pair_id=rig.pair_id,
        role=Role.PATIENT,
        origin_ts=START,
        content_sha256="ab" * 32,
        kind=Kind.EMAIL,
        txn_id="mail:1",
        post={"msgtype": "m.text", "body": "E-mail from the patient"},
    )
    claims: list[str] = []

    async def claim(tx: Executor, now: datetime) -> bool:
        claims.append(now.isoformat())
        return len(claims) == 1

    # The same way as a message in the room: through the service and its pair hooks.
    assert await rig.service.on_inbound(mail, claim)
    clock = await clocks.get_open(db, rig.pair_id)
    assert clock is not None and clock.first_kind == "email" and clock.first_event_id == "mail:1"
    assert await timers.get(db, clock.timer_id(Step.DUE)) is not None
    assert [r["actor"] for r in await rig.audit("sla.opened")] == [PATIENT]
    assert [r["actor"] for r in await rig.audit("relay.email")] == [PATIENT]
    # Claimed before (another pass relayed it): nothing is written twice.
    assert not await rig.service.on_inbound(mail, claim)
    assert len(await rig.audit("relay.email")) == 1


async def test_clock_of_a_closed_pair_is_cancelled_not_reminded(db: Database) -> None:
    rig = await make_rig(db, service_config())
    await rig.say(PATIENT, SECRET)
    clock = await clocks.get_open(db, rig.pair_id)
    assert clock is not None
    await pairs.set_status(db, rig.pair_id, PairStatus.REMOVED, to_ms(START))
    await rig.fire(clock.timer_id(Step.HEADS_UP), START + timedelta(hours=3))
    cancelled = await clocks.get(db, clock.clock_id)
    assert cancelled is not None and cancelled.state is ClockState.CANCELLED
    assert [await timers.get(db, clock.timer_id(s)) for s in Step] == [None] * 3
    assert await rig.sent(DESK[DOC]) == []
    assert len(await rig.audit("sla.cancelled")) == 1


# ---------------------------------------------------------------- the real bridge, real Synapse


async def wait_until(
    check: Callable[[], Awaitable[T]], timeout: float = 30.0, what: str = "condition"
) -> T:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def start_with_sla(cfg: Config) -> App:
    """Start the bridge with the SLA installed before any stored timer can fire."""
    app = App(cfg)
    await app.start()
    # Nothing has yielded to the loop since the scheduler re-armed the stored timers.
    assert app.service is not None
    install_sla(app.service, cfg)
    return app


@dataclass
class Live:
    app: App | None
    cfg: Config
    patient: Any
    therapist: Any
    room_id: str
    desk: str
    pair_id: str
    label: str

    @property
    def db(self) -> Database:
        assert self.app is not None and self.app.parts is not None
        return self.app.parts.db

    async def open_clock(self) -> Any:
        return await wait_until(
            lambda: clocks.get_open(self.db, self.pair_id), what="the clock to open"
        )


@pytest.fixture
async def live_bridge(
    homeserver: Any, make_user: Any, make_nio_user: Any, tmp_path: Path
) -> AsyncIterator[Callable[[str], Awaitable[Live]]]:
    """Factory: the bridge with a calendar-time window of `window`, a pair and its desk."""
    started: list[Live] = []

    async def make(
        window: str, working_hours: dict[str, str | None] = ALL_DAY, **policy: Any
    ) -> Live:
        bot = make_user("bot")
        cfg = bridge_config(
            homeserver,
            bot.user_id,
            bot.password,
            tmp_path / "data",
            practice={"timezone": "UTC", "working_hours": working_hours},
            policies={
                "default": {
                    "window": window,
                    "window_clock": "calendar",
                    "heads_up_before": None,
                    "patient_notice": "never",
                    **policy,
                }
            },
        )
        app = await start_with_sla(cfg)
        patient = await make_nio_user("patient")
        therapist = await make_nio_user("therapist")
        assert app.parts is not None and app.service is not None
        record, _ = await app.parts.pairs.add_pair(
            patient.user_id, therapist.user_id, app.service.clock()
        )
        assert record.room_id is not None
        row = await therapists.get(app.parts.db, therapist.user_id)
        assert row is not None and row.desk_room_id is not None
        live = Live(
            app=app,
            cfg=cfg,
            patient=patient,
            therapist=therapist,
            room_id=record.room_id,
            desk=row.desk_room_id,
            pair_id=record.pair_id,
            label=record.label,
        )
        started.append(live)
        await patient.wait_for(live.room_id, notice_containing("Welcome"), timeout=30)
        await therapist.wait_for(live.desk, notice_containing("New conversation"), timeout=30)
        await therapist.wait_joined(live.room_id, patient.user_id, timeout=30)
        return live

    yield make
    for live in started:
        if live.app is not None:
            await live.app.stop()


def reminder_for(label: str) -> Callable[[Any], bool]:
    return lambda e: isinstance(e, RoomMessageNotice) and f"Reminder: pair {label}" in e.body


async def test_reminder_reaches_the_desk_and_the_therapist_decrypts_it(live_bridge: Any) -> None:
    live = await live_bridge("3s")
    await live.patient.send_text(live.room_id, SECRET)
    reminder = await live.therapist.wait_for(live.desk, reminder_for(live.label), timeout=40)
    assert reminder.decrypted
    assert f"https://matrix.to/#/{live.room_id}" in reminder.body
    assert SECRET not in reminder.body
    rows = await live.db.fetch(
        "SELECT action FROM audit_entries WHERE pair_id = ? AND action LIKE 'sla.%' ORDER BY seq",
        live.pair_id,
    )
    assert [r["action"] for r in rows] == ["sla.opened", "sla.breached", "sla.reminded"]


async def test_reply_before_due_cancels_the_reminder(live_bridge: Any) -> None:
    # Long enough for the reply to land first even on a slow machine.
    live = await live_bridge("30s")
    await live.patient.send_text(live.room_id, SECRET)
    clock = await live.open_clock()
    await live.therapist.wait_for(live.room_id, text_from(live.patient.user_id, SECRET), 30)
    await live.therapist.send_text(live.room_id, "I read it, let us talk tomorrow")

    async def closed() -> Any:
        found = await clocks.get(live.db, clock.clock_id)
        return found if found is not None and not found.is_open else None

    done = await wait_until(closed, what="the reply to close the clock")
    assert done.state is ClockState.CLOSED and done.met
    due_timer = clock.timer_id(Step.DUE)
    assert await timers.get(live.db, due_timer) is None
    assert live.app is not None and live.app.scheduler is not None
    assert live.app.scheduler._aps.get_job(due_timer) is None
    # The desk answers !due with nothing waiting, and no reminder was ever queued.
    await live.therapist.send_text(live.desk, "!due")
    await live.therapist.wait_for(
        live.desk, notice_containing("Nothing is waiting for your reply"), timeout=30
    )
    assert await live.db.fetch("SELECT txn_id FROM outbox WHERE kind = 'sla_reminder'") == []
    assert live.therapist.find(live.desk, reminder_for(live.label)) is None


async def test_restart_while_a_reminder_is_due_sends_it_exactly_once(live_bridge: Any) -> None:
    live = await live_bridge("8s")
    await live.patient.send_text(live.room_id, SECRET)
    clock = await live.open_clock()
    due_timer = clock.timer_id(Step.DUE)
    assert live.app is not None
    await live.app.stop()
    live.app = None

    # While the bridge is down the reminder falls due; it has not been sent.
    db = await open_database(live.cfg.database_url)
    try:
        record = await timers.get(db, due_timer)
        assert record is not None and record.fired_at is None, "fired before the stop"
        assert await db.fetch("SELECT txn_id FROM outbox WHERE kind = 'sla_reminder'") == []
    finally:
        await db.close()
    wait = (clock.due_at - datetime.now(UTC)).total_seconds() + 1
    await asyncio.sleep(max(0.0, wait))

    live.app = await start_with_sla(live.cfg)
    reminder = await live.therapist.wait_for(live.desk, reminder_for(live.label), timeout=40)
    assert SECRET not in reminder.body

    # Once more: a restart after the reminder went out does not send it again.
    await live.app.stop()
    live.app = await start_with_sla(live.cfg)
    await live.therapist.send_text(live.desk, "!due")
    await live.therapist.wait_for(live.desk, notice_containing("(overdue)"), timeout=30)
    reminders = [
        e for e in live.therapist.timeline.get(live.desk, []) if reminder_for(live.label)(e)
    ]
    assert len(reminders) == 1
    rows = await live.db.fetch("SELECT txn_id, status FROM outbox WHERE kind = 'sla_reminder'")
    assert [(r["txn_id"], r["status"]) for r in rows] == [(f"{due_timer}:desk", "sent")]
    actions = await live.db.fetch(
        "SELECT action FROM audit_entries WHERE action = 'sla.reminded' AND pair_id = ?",
        live.pair_id,
    )
    assert len(actions) == 1


async def test_escalation_reaches_the_supervisor(live_bridge: Any, make_nio_user: Any) -> None:
    supervisor = await make_nio_user("supervisor")
    live = await live_bridge("2s", escalate_after="2s", supervisors=[supervisor.user_id])
    assert live.app is not None and live.app.parts is not None and live.app.service is not None
    desk = await live.app.parts.pairs.ensure_therapist(supervisor.user_id, live.app.service.clock())
    await supervisor.wait_for(desk, notice_containing("private desk"), timeout=30)
    await live.patient.send_text(live.room_id, SECRET)
    escalation = await supervisor.wait_for(
        desk, notice_containing(f"Escalation: pair {live.label}"), timeout=40
    )
    assert live.therapist.user_id in escalation.body
    assert f"https://matrix.to/#/{live.room_id}" in escalation.body
    assert SECRET not in escalation.body
    await live.therapist.wait_for(live.desk, reminder_for(live.label), timeout=30)


def closed_today() -> dict[str, str | None]:
    """Opening hours on one day three days from now (UTC) only: the practice is closed now."""
    open_day = WEEKDAYS[(datetime.now(UTC).weekday() + 3) % 7]
    return {day: "09:00-17:00" if day == open_day else None for day in WEEKDAYS}


def expected_reply_text(due_at: datetime) -> str:
    return f"You can expect a reply by {due_at.astimezone(UTC):%Y-%m-%d %H:%M} (UTC)"


async def test_out_of_hours_notice_tells_the_patient_when_and_the_crisis_line(
    live_bridge: Any,
) -> None:
    live = await live_bridge("1h", working_hours=closed_today(), patient_notice="out_of_hours")
    await live.patient.send_text(live.room_id, SECRET)
    clock = await live.open_clock()
    notice = await live.patient.wait_for(
        live.room_id, notice_containing("You can expect a reply by"), timeout=30
    )
    assert notice.decrypted and notice.sender == live.cfg.bot.user_id
    assert expected_reply_text(clock.due_at) in notice.body
    assert "The practice is closed right now." in notice.body
    assert f"call {live.cfg.practice.crisis_line}" in notice.body
    assert SECRET not in notice.body


async def test_patient_gets_the_notice_in_hours_and_is_told_of_the_reminder(
    live_bridge: Any,
) -> None:
    live = await live_bridge("2s", patient_notice="always", tell_patient_on_breach=True)
    await live.patient.send_text(live.room_id, SECRET)
    clock = await live.open_clock()
    notice = await live.patient.wait_for(
        live.room_id, notice_containing("You can expect a reply by"), timeout=30
    )
    assert expected_reply_text(clock.due_at) in notice.body
    assert "closed" not in notice.body and "crisis" not in notice.body
    told = await live.patient.wait_for(
        live.room_id, notice_containing("Your therapist has been reminded"), timeout=40
    )
    assert told.decrypted and told.sender == live.cfg.bot.user_id
    await live.therapist.wait_for(live.desk, reminder_for(live.label), timeout=30)
    # Told once per clock, under a stable transaction id.
    rows = await live.db.fetch(
        "SELECT txn_id FROM outbox WHERE kind = 'sla_breach_patient' AND room_id = ?",
        live.room_id,
    )
    assert [r["txn_id"] for r in rows] == [f"sla:{live.pair_id}:{clock.clock_id}:breach_notice"]


def closed_now() -> dict[str, str | None]:
    """Opening hours that do not include the present hour (UTC): the practice is closed."""
    start = (datetime.now(UTC).hour + 2) % 24
    hours = f"{start:02d}:00-{start + 1:02d}:00" if start < 23 else "23:00-24:00"
    return dict.fromkeys(WEEKDAYS, hours)


async def test_calendar_policy_out_of_hours_reminds_and_escalates_to_a_new_desk(
    live_bridge: Any, make_nio_user: Any
) -> None:
    # Closed practice, round-the-clock window: the reminder and the escalation do not wait
    # for opening time. The supervisor is the therapist's own and has no desk room yet.
    live = await live_bridge("3s", working_hours=closed_now(), escalate_after="2s")
    supervisor = await make_nio_user("supervisor")
    assert live.app is not None
    await live.app.parts.pairs.ensure_therapist(
        live.therapist.user_id, live.app.service.clock(), supervisor=supervisor.user_id
    )
    assert (await therapists.get(live.db, supervisor.user_id)) is None
    await live.patient.send_text(live.room_id, SECRET)
    reminder = await live.therapist.wait_for(live.desk, reminder_for(live.label), timeout=40)
    assert reminder.decrypted and SECRET not in reminder.body

    async def desk_of_supervisor() -> str | None:
        row = await therapists.get(live.db, supervisor.user_id)
        return row.desk_room_id if row is not None else None

    sup_desk = await wait_until(desk_of_supervisor, 40, "the supervisor's desk room")
    escalation = await supervisor.wait_for(
        sup_desk,
        lambda e: isinstance(e, RoomMessageNotice) and f"pair {live.label}" in e.body,
        timeout=60,
    )
    assert escalation.decrypted and SECRET not in escalation.body
    rows = await live.db.fetch(
        "SELECT action, outcome FROM audit_entries WHERE pair_id = ? AND action LIKE 'sla.%' "
        "ORDER BY seq",
        live.pair_id,
    )
    actions = [(r["action"], r["outcome"]) for r in rows]
    assert ("sla.escalation_waiting", "no_recipient") in actions
    assert actions[-1] == ("sla.escalated", "ok")


async def test_reply_sent_while_the_bridge_was_down_gets_its_true_response_time(
    live_bridge: Any,
) -> None:
    live = await live_bridge("5m")
    await live.patient.send_text(live.room_id, SECRET)
    clock = await live.open_clock()
    asked = await live.therapist.wait_for(live.room_id, text_from(live.patient.user_id, SECRET), 30)
    assert live.app is not None
    await live.app.stop()
    live.app = None
    await live.therapist.send_text(live.room_id, "Sorry for the wait, here I am")
    answer = await live.therapist.wait_for(
        live.room_id, text_from(live.therapist.user_id, "Sorry for the wait, here I am"), 30
    )
    await asyncio.sleep(3)  # the bridge stays down a while after the reply
    live.app = await start_with_sla(live.cfg)

    async def closed() -> Any:
        found = await clocks.get(live.db, clock.clock_id)
        return found if found is not None and not found.is_open else None

    done = await wait_until(closed, 40, "the reply to close the clock")
    sent_ms = answer.server_timestamp - asked.server_timestamp
    assert done.opened_at == datetime.fromtimestamp(asked.server_timestamp / 1000, UTC)
    assert done.response_calendar == timedelta(milliseconds=sent_ms)
    assert done.response_calendar < timedelta(seconds=3)


async def test_an_urgent_pairs_welcome_quotes_its_own_window(
    homeserver: Any, make_user: Any, make_nio_user: Any, tmp_path: Path
) -> None:
    bot = make_user("bot")
    cfg = bridge_config(
        homeserver,
        bot.user_id,
        bot.password,
        tmp_path / "data",
        policies={
            "default": {"window": "8h"},
            "urgent": {"window": "3m", "window_clock": "calendar"},
        },
    )
    app = await start_with_sla(cfg)
    try:
        patient = await make_nio_user("patient")
        therapist = await make_nio_user("therapist")
        record, _ = await app.parts.pairs.add_pair(
            patient.user_id, therapist.user_id, app.service.clock(), policy="urgent"
        )
        assert record.room_id is not None
        welcome = await patient.wait_for(record.room_id, notice_containing("Welcome"), 30)
        assert "within 3 minutes." in welcome.body
        assert "8 hours" not in welcome.body and "working time" not in welcome.body
    finally:
        await app.stop()
