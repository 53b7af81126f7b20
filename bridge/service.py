"""The orchestrator: load state, ask the core, commit state + audit + outbox at once,
then let the adapters act.

The service is the only place where policy (the pure core) meets I/O. Everything that
comes in takes the same way: a Matrix event (`on_event`), a message of another channel
such as e-mail (`on_inbound`), a timer (`fire_timer`). One transaction marks it taken (the
processed event, the inbox row) and writes every durable effect, the pair hooks' included,
so a crash replays either all of it or none of it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from bridge.adapters.matrix.events import HeldEvent, IncomingEvent
from bridge.adapters.matrix.rest import MatrixError, MatrixRest
from bridge.adapters.render import Renderer
from bridge.core.command_set import build_commands
from bridge.core.commands import DESK_ROOM, CommandContext, CommandRegistry
from bridge.core.inbound import InboundMessage, decide_inbound
from bridge.core.intake import command_text, content_digest, kind_of, relates_to, role_of
from bridge.core.model import (
    AppendAudit,
    CancelTimer,
    Effect,
    Invoke,
    KeepMedia,
    Kind,
    Pair,
    PostContent,
    Role,
    RoomAction,
    RoomEvent,
    ScheduleTimer,
    SendEmail,
    SendMessage,
    TimerFired,
)
from bridge.core.pairroom import decide_pair_event
from bridge.core.rooms import decide_desk_membership, invite_refused
from bridge.hooks import Hooks
from bridge.outbox import OutboxWorker, enqueue_content, enqueue_message
from bridge.store import languages, pairs, pending, syncstate, therapists, timers
from bridge.store.base import ContentSealer, Database, Executor, from_ms, to_ms
from bridge.store.pairs import PairRecord, PairStatus

log = logging.getLogger(__name__)

#: Marks a channel's message taken (its inbox row relayed) inside the transaction that
#: writes what it causes; False when it was taken before (another pass or process).
Claim = Callable[[Executor, datetime], Awaitable[bool]]


class AuditWriter(Protocol):
    """What the service needs from the audit log (`bridge.audit.log.AuditLog`)."""

    async def append(self, tx: Executor, effect: AppendAudit, now: datetime) -> Any: ...
    async def store_media(self, tx: Executor, data: bytes, now: datetime | int) -> str: ...


class TimerScheduler(Protocol):
    """What the service needs from the scheduler adapter."""

    def arm(self, timer_id: str, at: datetime) -> None: ...
    def disarm(self, timer_id: str) -> None: ...


class Mailer(Protocol):
    async def send(self, effect: SendEmail) -> None: ...


@dataclass
class Counters:
    events: dict[str, int] = field(default_factory=dict)
    outsiders_removed: int = 0
    invites_refused: int = 0
    decryption_failures: int = 0

    def count(self, kind: str) -> None:
        self.events[kind] = self.events.get(kind, 0) + 1


def receipt_key(pair_id: str) -> str:
    """The kv key holding when the pair's patient last read the room (ms since the epoch)."""
    return f"receipt:{pair_id}"


async def record_patient_read(tx: Executor, pair_id: str, ts: int) -> None:
    """Keep the latest read time of the pair's patient (receipts may arrive out of order)."""
    key = receipt_key(pair_id)
    old = await syncstate.get_kv(tx, key)
    if old is None or int(old) < ts:
        await syncstate.set_kv(tx, key, str(ts))


def to_pair(record: PairRecord) -> Pair:
    assert record.room_id is not None
    return Pair(
        pair_id=record.pair_id,
        patient_id=record.patient_id,
        therapist_id=record.therapist_id,
        room_id=record.room_id,
        policy=record.policy,
        label=record.label,
        status=record.status.value,
    )


class Service:
    def __init__(
        self,
        *,
        db: Database,
        rest: MatrixRest,
        renderer: Renderer,
        sealer: ContentSealer,
        audit: AuditWriter,
        bot_user_id: str,
        commands: CommandRegistry | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """`commands` is what the rooms' `!commands` are dispatched with (None: every
        command the bridge ships, `build_commands()`)."""
        self.db = db
        self.rest = rest
        self.renderer = renderer
        self.sealer = sealer
        self.audit = audit
        self.bot_user_id = bot_user_id
        self.clock = clock
        self.commands = commands if commands is not None else build_commands()
        self.outbox: OutboxWorker | None = None
        self.scheduler: TimerScheduler | None = None
        self.mailer: Mailer | None = None
        self._hooks = Hooks()
        self.counters = Counters()
        self._pairs_by_room: dict[str, PairRecord] = {}
        self._desks: dict[str, str] = {}  # desk room id -> therapist

    # ------------------------------------------------------------ features

    def install(self, feature: object) -> None:
        """Run the hooks `feature` declares (`bridge.hooks`): pair hooks and facts providers
        after those installed before; timer kinds and operations it claims are its own.

        Raises `bridge.hooks.HookConflict` when the feature is installed twice or claims a
        timer kind or an operation another feature handles.
        """
        self._hooks.install(feature)

    def handles_timer(self, kind: str) -> bool:
        """True when an installed feature handles fired timers of `kind`."""
        return self._hooks.handles_timer(kind)

    def handles_invoke(self, operation: str) -> bool:
        """True when an installed feature performs `operation`."""
        return self._hooks.handles_invoke(operation)

    # ------------------------------------------------------------ room knowledge

    async def refresh_rooms(self) -> None:
        """Reload which rooms are pair rooms and desk rooms (the CLI may have added some)."""
        by_room: dict[str, PairRecord] = {}
        for record in await pairs.list_pairs(self.db):
            if record.room_id and record.status is not PairStatus.PROVISIONING:
                by_room[record.room_id] = record
        self._pairs_by_room = by_room
        self._desks = {
            t.desk_room_id: t.user_id
            for t in await therapists.list_therapists(self.db)
            if t.desk_room_id
        }

    async def _room(self, room_id: str) -> tuple[PairRecord | None, str | None]:
        """The pair (read afresh: a handover in another process changes who is a member)
        or the desk owner of a room; (None, None) for rooms that are not ours."""
        # One indexed look by room, never a reload of every pair: a new pair's room shows
        # its first events before its row names it, and a reload for each of them would
        # cost the whole practice's rows.
        record = await pairs.get_by_room(self.db, room_id)
        if record is not None and (
            room_id in self._pairs_by_room or record.status is not PairStatus.PROVISIONING
        ):
            self._pairs_by_room[room_id] = record
            return record, None
        owner = self._desks.get(room_id)
        if owner is None and room_id not in self._pairs_by_room:
            desk = await therapists.get_by_desk_room(self.db, room_id)
            if desk is not None:
                owner = self._desks[room_id] = desk.user_id
        return self._pairs_by_room.get(room_id), owner

    def desk_of(self, therapist: str) -> str | None:
        for room_id, owner in self._desks.items():
            if owner == therapist:
                return room_id
        return None

    async def desk_room_of(self, therapist: str) -> str | None:
        """The therapist's desk room, looked up in the database when not known yet
        (created by the command line, e.g. with a handover)."""
        known = self.desk_of(therapist)
        if known is not None:
            return known
        record = await therapists.get(self.db, therapist)
        if record is None or not record.desk_room_id:
            return None
        self._desks[record.desk_room_id] = therapist
        return record.desk_room_id

    # ------------------------------------------------------------ SyncHandler

    async def is_processed(self, event_id: str) -> bool:
        return await syncstate.is_processed(self.db, event_id)

    async def load_kv(self, key: str) -> str | None:
        return await syncstate.get_kv(self.db, key)

    async def save_kv(self, key: str, value: str) -> None:
        await syncstate.set_kv(self.db, key, value)

    async def hold_pending(self, event: HeldEvent) -> int:
        return await pending.hold(
            self.db,
            event_id=event.event_id,
            room_id=event.room_id,
            sender=event.sender,
            origin_ts=event.origin_server_ts,
            source=event.source,
            now=event.first_seen_ms,
        )

    async def held_pending(self) -> list[HeldEvent]:
        return [
            HeldEvent(
                room_id=row.room_id,
                event_id=row.event_id,
                sender=row.sender,
                origin_server_ts=row.origin_ts,
                source=row.source,
                first_seen_ms=row.first_seen_at,
            )
            for row in await pending.list_pending(self.db)
        ]

    async def release_pending(self, event_id: str) -> None:
        await pending.release(self.db, event_id)

    async def trusted_users(self, room_id: str) -> set[str] | None:
        """Whose devices get the room keys: the pair's two members, or the desk's owner."""
        record, therapist = await self._room(room_id)
        if record is not None:
            return {record.patient_id, record.therapist_id}
        if therapist is not None:
            return {therapist}
        return None

    async def on_invite(self, room_id: str, inviter: str | None) -> None:
        """The bot creates every room it is in; invitations from anyone are refused."""
        pair, desk = await self._room(room_id)
        if pair is not None or desk is not None:
            await self.rest.join(room_id)
            return
        try:
            await self.rest.leave(room_id)
        except MatrixError as err:
            log.warning("could not refuse invite", extra={"room_id": room_id, "error": err.errcode})
            return
        self.counters.invites_refused += 1
        async with self.db.transaction() as tx:
            await self.audit.append(tx, invite_refused(room_id, inviter), self.clock())
        log.info("invite refused", extra={"room_id": room_id})

    async def on_receipt(self, room_id: str, user_id: str, event_id: str, ts: int) -> None:
        """Remember when the patient of a pair room last read it (`receipt:PAIR`, ms)."""
        pair, _desk = await self._room(room_id)
        if pair is None or user_id != pair.patient_id:
            return
        async with self.db.transaction() as tx:
            await record_patient_read(tx, pair.pair_id, ts)

    async def on_event(self, ev: IncomingEvent) -> None:
        pair, desk_owner = await self._room(ev.room_id)
        if pair is not None:
            await self._pair_event(pair, ev)
        elif desk_owner is not None:
            await self._desk_event(desk_owner, ev)
        else:
            # Not ours (e.g. a room we are leaving): remember we saw it, do nothing else.
            await syncstate.mark_processed(self.db, ev.event_id, ev.room_id, to_ms(self.clock()))

    # ------------------------------------------------------------ pair rooms

    def room_event(self, pair: Pair, ev: IncomingEvent, now: datetime) -> RoomEvent:
        kind = (
            Kind.UNDECRYPTABLE if not ev.decrypted else kind_of(ev.type, ev.content, ev.state_key)
        )
        role = role_of(ev.sender, pair, self.bot_user_id)
        if kind is Kind.MEMBERSHIP and ev.state_key and ev.state_key != ev.sender:
            # An invite or kick: the role that matters for policy is the target's.
            pass
        return RoomEvent(
            pair_id=pair.pair_id,
            room_id=pair.room_id,
            event_id=ev.event_id,
            sender=ev.sender,
            role=role,
            kind=kind,
            origin_ts=datetime.fromtimestamp(ev.origin_server_ts / 1000, UTC),
            seen_at=now,
            content_sha256=content_digest(ev.content),
            command=command_text(kind, ev.content) if role is not Role.BOT else None,
            relates_to=relates_to(ev.content, ev.redacts),
            membership=str(ev.content.get("membership")) if kind is Kind.MEMBERSHIP else None,
            state_key=ev.state_key,
            event_type=ev.type,
        )

    async def _pair_event(self, record: PairRecord, ev: IncomingEvent) -> None:
        now = self.clock()
        pair = to_pair(record)
        rev = self.room_event(pair, ev, now)
        self.counters.count(rev.kind.value)
        if rev.kind is Kind.UNDECRYPTABLE:
            self.counters.decryption_failures += 1
        record_content = (
            json.dumps(ev.content, sort_keys=True, ensure_ascii=False).encode()
            if ev.decrypted
            else None
        )
        desk = await self.desk_room_of(pair.therapist_id)
        async with self.db.transaction() as tx:
            if not await syncstate.mark_processed(tx, ev.event_id, ev.room_id, to_ms(now)):
                return
            facts: tuple[object, ...] = ()
            if rev.command:
                ctx = CommandContext(
                    room_kind="pair",
                    room_id=pair.room_id,
                    sender=rev.sender,
                    role=rev.role,
                    event_id=rev.event_id,
                    now=now,
                    pair=pair,
                )
                facts = await self._gather_facts(tx, ctx)
            effects = decide_pair_event(
                pair,
                rev,
                commands=self.commands,
                desk_room_id=desk,
                content=record_content,
                facts=facts,
            )
            for hook in self._hooks.pair_hooks:
                effects += await hook(tx, pair, rev)
            await self.apply_durable(tx, effects, now)
        log.info(
            "pair event",
            extra={
                "pair_id": pair.pair_id,
                "event_id": ev.event_id,
                "kind": rev.kind.value,
                "role": rev.role.value,
            },
        )
        await self.apply_after(effects)
        await self._release_first_contact(ev)

    async def _gather_facts(self, tx: Executor, ctx: CommandContext) -> tuple[object, ...]:
        """What the installed features know that a command may need (inside the tx)."""
        found: list[object] = []
        for provider in self._hooks.facts_providers:
            facts = await provider(tx, ctx)
            if facts is not None:
                found.append(facts)
        return tuple(found)

    # ------------------------------------------------------------ other channels

    async def on_inbound(self, message: InboundMessage, claim: Claim) -> bool:
        """A message of another channel (e-mail, ...): the way a pair-room event takes.

        In one transaction: `claim` it, load its pair, let the core decide (post, audit,
        the original's media), run the pair hooks on the member's message (the reply
        clock), write it all; then act. False when it was claimed before, or its pair has
        no room (the channel finds out why when it looks at the message again).
        """
        now = self.clock()
        effects: list[Effect] = []
        async with self.db.transaction() as tx:
            record = await pairs.get(tx, message.pair_id)
            if record is None or record.room_id is None:
                return False
            if not await claim(tx, now):
                return False
            pair = to_pair(record)
            decision = decide_inbound(pair, message, now)
            effects = decision.effects
            for hook in self._hooks.pair_hooks:
                effects += await hook(tx, pair, decision.event)
            await self.apply_durable(tx, effects, now)
        log.info(
            "inbound message",
            extra={
                "pair_id": pair.pair_id,
                "channel": message.channel,
                "kind": message.kind.value,
                "role": message.role.value,
                "posts": sum(isinstance(e, PostContent) for e in effects),
            },
        )
        await self.apply_after(effects)
        return True

    # ------------------------------------------------------------ desk rooms

    async def _desk_event(self, therapist: str, ev: IncomingEvent) -> None:
        now = self.clock()
        kind = (
            Kind.UNDECRYPTABLE if not ev.decrypted else kind_of(ev.type, ev.content, ev.state_key)
        )
        effects: list[Effect] = []
        async with self.db.transaction() as tx:
            if not await syncstate.mark_processed(tx, ev.event_id, ev.room_id, to_ms(now)):
                return
            if kind is Kind.MEMBERSHIP:
                effects += decide_desk_membership(
                    ev.room_id,
                    therapist,
                    self.bot_user_id,
                    sender=ev.sender,
                    target=ev.state_key or "",
                    membership=str(ev.content.get("membership", "")),
                    event_id=ev.event_id,
                )
            elif ev.sender == therapist:
                text = command_text(kind, ev.content)
                if text:
                    ctx = CommandContext(
                        room_kind=DESK_ROOM,
                        room_id=ev.room_id,
                        sender=therapist,
                        role=Role.THERAPIST,
                        event_id=ev.event_id,
                        now=now,
                    )
                    ctx = replace(ctx, facts=await self._gather_facts(tx, ctx))
                    effects += self.commands.dispatch(ctx, text)
            await self.apply_durable(tx, effects, now)
        await self.apply_after(effects)
        await self._release_first_contact(ev)

    async def _release_first_contact(self, ev: IncomingEvent) -> None:
        """A member joined: the notices waiting for them (welcome, consent) go out now."""
        if (
            self.outbox is not None
            and ev.type == "m.room.member"
            and ev.state_key
            and ev.content.get("membership") == "join"
        ):
            await self.outbox.member_joined(ev.room_id, ev.state_key)

    # ------------------------------------------------------------ timers

    async def fire_timer(self, timer_id: str) -> None:
        """A timer came due: run its handler once (fired_at guards against doubles)."""
        now = self.clock()
        effects: list[Effect] = []
        async with self.db.transaction() as tx:
            record = await timers.get(tx, timer_id)
            if record is None or not await timers.mark_fired(tx, timer_id, to_ms(now)):
                return
            handler = self._hooks.timer_handler(record.kind)
            if handler is None:
                log.warning("no handler for timer kind", extra={"kind": record.kind})
                return
            fired = TimerFired(timer_id, record.kind, record.pair_id, from_ms(record.due_at))
            effects = await handler(tx, fired, now)
            await self.apply_durable(tx, effects, now)
        await self.apply_after(effects)

    # ------------------------------------------------------------ effects

    async def apply_durable(self, tx: Executor, effects: list[Effect], now: datetime) -> None:
        """Write every effect that must survive a crash, inside the caller's transaction."""
        for effect in effects:
            if isinstance(effect, SendMessage):
                await enqueue_message(tx, self.renderer, self.sealer, effect, now)
            elif isinstance(effect, PostContent):
                await enqueue_content(
                    tx,
                    self.sealer,
                    effect.room_id,
                    effect.event_type,
                    effect.content,
                    effect.txn_id,
                    effect.kind,
                    now,
                    pair_id=effect.pair_id,
                    accepted_at=effect.accepted_at,
                )
            elif isinstance(effect, KeepMedia):
                await self.audit.store_media(tx, effect.data, now)
            elif isinstance(effect, AppendAudit):
                await self.audit.append(tx, effect, now)
            elif isinstance(effect, ScheduleTimer):
                await timers.schedule(
                    tx,
                    timer_id=effect.timer_id,
                    kind=effect.timer_kind,
                    due_at=to_ms(effect.at),
                    pair_id=effect.pair_id,
                )
            elif isinstance(effect, CancelTimer):
                await timers.cancel(tx, effect.timer_id)

    async def apply_after(self, effects: list[Effect]) -> None:
        """Act on the outside world once the transaction has committed."""
        for effect in effects:
            try:
                await self._after(effect)
            except Exception as exc:
                log.warning(
                    "effect failed",
                    extra={"effect": type(effect).__name__, "error": type(exc).__name__},
                )
        if self.outbox is not None and any(
            isinstance(e, SendMessage | PostContent) for e in effects
        ):
            self.outbox.kick()

    async def _after(self, effect: Effect) -> None:
        if isinstance(effect, RoomAction):
            if effect.action == "kick":
                await self.rest.kick(effect.room_id, effect.user_id, effect.reason or None)
                self.counters.outsiders_removed += 1
            elif effect.action == "invite":
                await self.rest.invite(effect.room_id, effect.user_id)
            elif effect.action == "leave":
                await self.rest.leave(effect.room_id)
        elif isinstance(effect, ScheduleTimer) and self.scheduler is not None:
            self.scheduler.arm(effect.timer_id, effect.at)
        elif isinstance(effect, CancelTimer) and self.scheduler is not None:
            self.scheduler.disarm(effect.timer_id)
        elif isinstance(effect, SendEmail) and self.mailer is not None:
            if effect.language is None:
                # Written in the recipient's language: a therapist's or a patient's address.
                found = await languages.of_address(self.db, effect.to)
                effect = dataclasses.replace(effect, language=found)
            await self.mailer.send(effect)
        elif isinstance(effect, Invoke):
            handler = self._hooks.invoke_handler(effect.operation)
            if handler is None:
                raise LookupError(f"no handler for {effect.operation}")
            await handler(effect)
