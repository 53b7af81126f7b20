"""Pairs and desk rooms: creating, handing over and closing the rooms of a practice.

Only plain client-server calls are made here (createRoom, invite, kick, state), so the
CLI can provision while the bridge process owns the E2EE device; encrypted notices go
through the outbox and the running bridge sends them. Each operation that queued notices
wakes the outbox worker itself (`PairManager.wake_outbox`), so callers never have to.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from bridge.adapters.matrix.rest import MatrixError, MatrixRest, q
from bridge.adapters.render import Renderer
from bridge.core import email_commands, email_out
from bridge.core.consent import text_digest
from bridge.core.model import AppendAudit, SendMessage
from bridge.core.rooms import desk_created, pair_created, pair_reassigned, pair_removed
from bridge.outbox import enqueue_message
from bridge.store import outmail, pairs, therapists
from bridge.store.base import ContentSealer, Database, Executor, IntegrityError, to_ms
from bridge.store.pairs import PairRecord, PairStatus

log = logging.getLogger(__name__)

PAIR_STATE_TYPE = "org.confidant.pair"
DESK_STATE_TYPE = "org.confidant.desk"
WIDGET_EVENT = "im.vector.modular.widgets"


class AuditSink(Protocol):
    async def append(self, tx: Executor, effect: AppendAudit, now: datetime) -> Any: ...


@dataclass(frozen=True)
class ReplyWindow:
    """How a policy's reply time reads in the texts: "8 hours", in working time or not."""

    text: str | None
    working_time: bool = True
    #: The same span in seconds, which each language's texts write their own way.
    seconds: float | None = None


@dataclass(frozen=True)
class PracticeFacts:
    """What provisioning needs to know about the practice (taken from the config)."""

    bot_user_id: str
    practice_name: str
    crisis_line: str | None
    federate: bool
    inbound_domain: str | None
    reply_window: str | None = None
    working_time: bool = True
    ask_consent: bool = True
    video_enabled: bool = False
    #: Each policy's reply window by name, so a pair's texts quote its own policy.
    reply_windows: Mapping[str, ReplyWindow] = field(default_factory=dict)
    #: The room version new rooms get (`pairs.room_version`); None: the homeserver's default.
    room_version: str | None = None
    #: Answers by e-mail are on (`smtp.replies`): an e-mail pair's welcome can go out.
    email_replies: bool = False

    def window_of(self, policy: str) -> ReplyWindow:
        """The reply window the texts of a pair on `policy` quote (the default's if unknown)."""
        found = self.reply_windows.get(policy)
        return found if found is not None else ReplyWindow(self.reply_window, self.working_time)


def private_e2ee_state() -> list[dict[str, Any]]:
    """Encryption from the first event; no history before one's invite; no guests."""

    def state(event_type: str, content: dict[str, Any]) -> dict[str, Any]:
        return {"type": event_type, "state_key": "", "content": content}

    return [
        state("m.room.encryption", {"algorithm": "m.megolm.v1.aes-sha2"}),
        state("m.room.history_visibility", {"history_visibility": "invited"}),
        state("m.room.guest_access", {"guest_access": "forbidden"}),
    ]


def pair_room_body(
    *,
    bot_is_creator: bool = False,
    bot: str,
    patient: str,
    therapist: str,
    name: str,
    pair_id: str,
    federate: bool,
    room_version: str | None = None,
) -> dict[str, Any]:
    """createRoom for a pair: E2EE from the first event, invite-only, the bot holds power."""
    return {
        **({"room_version": room_version} if room_version else {}),
        "preset": "private_chat",
        "visibility": "private",
        "name": name,
        # The patient of an e-mail pair has no account: only the therapist is invited.
        "invite": [user for user in (patient, therapist) if user.startswith("@")],
        "is_direct": False,
        "creation_content": {"m.federate": federate},
        "initial_state": [
            *private_e2ee_state(),
            {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "invite"}},
            {"type": PAIR_STATE_TYPE, "state_key": "", "content": {"pair_id": pair_id}},
        ],
        "power_level_content_override": power_levels(bot, therapist, bot_is_creator=bot_is_creator),
    }


def power_levels(
    bot: str, therapist: str, *, read_only: bool = False, bot_is_creator: bool = False
) -> dict[str, Any]:
    """Only the bot invites, kicks, bans, redacts others and changes state; the therapist
    may add widgets (video calls).

    From room version 12 on, the creator has unlimited power and must not be listed in
    `users` (the homeserver refuses it), so the bot is left out there.
    """
    users = {therapist: 50} if bot_is_creator else {bot: 100, therapist: 50}
    return {
        "users": users,
        "users_default": 0,
        "events_default": 100 if read_only else 0,
        "state_default": 100,
        "invite": 100,
        "kick": 100,
        "ban": 100,
        "redact": 100,
        "events": {
            WIDGET_EVENT: 100 if read_only else 50,
            "io.element.widgets.layout": 100 if read_only else 50,
            "m.room.name": 100,
            "m.room.topic": 100,
            "m.room.avatar": 100,
            "m.room.power_levels": 100,
            "m.room.encryption": 100,
            "m.room.history_visibility": 100,
            "m.room.server_acl": 100,
            "m.room.tombstone": 100,
        },
        "notifications": {"room": 100},
    }


def desk_room_body(
    *,
    bot: str,
    therapist: str,
    name: str,
    federate: bool,
    bot_is_creator: bool = False,
    room_version: str | None = None,
) -> dict[str, Any]:
    return {
        **({"room_version": room_version} if room_version else {}),
        "preset": "private_chat",
        "visibility": "private",
        "name": name,
        "invite": [therapist],
        "is_direct": False,
        "creation_content": {"m.federate": federate},
        "initial_state": [
            *private_e2ee_state(),
            {"type": DESK_STATE_TYPE, "state_key": "", "content": {"therapist": therapist}},
        ],
        "power_level_content_override": {
            "users": {} if bot_is_creator else {bot: 100},
            "users_default": 0,
            "events_default": 0,
            "state_default": 100,
            "invite": 100,
            "kick": 100,
            "ban": 100,
            "redact": 100,
        },
    }


def display_name(user_id: str) -> str:
    """A user's local part, tidied, for room names (no lookup, no personal data)."""
    return user_id[1:].split(":", 1)[0]


class PairError(Exception):
    """A pair operation that cannot be done (unknown pair, conflicting state)."""


async def has_account(
    rest: MatrixRest, user_id: str, *, admin_token: str | None = None
) -> bool | None:
    """Whether `user_id` has a usable account on the homeserver: True, False, or None when
    the homeserver will not say (another server's user, profile lookups restricted).

    With a Synapse admin token the admin API answers for certain (a deactivated account
    counts as none); without one the profile does: Synapse answers 404 for an account that
    does not exist (a deactivated one may keep its profile and pass).
    """
    if admin_token is not None:
        try:
            account = await rest.request(
                "GET", f"/_synapse/admin/v2/users/{q(user_id)}", token=admin_token, retries=0
            )
        except MatrixError as err:
            if err.status == 404:
                return False
        else:
            return not account.get("deactivated", False)
    try:
        await rest.request("GET", f"/_matrix/client/v3/profile/{q(user_id)}", retries=0)
    except MatrixError as err:
        return False if err.status == 404 else None
    return True


class PairManager:
    def __init__(
        self,
        db: Database,
        rest: MatrixRest,
        renderer: Renderer,
        sealer: ContentSealer,
        audit: AuditSink,
        facts: PracticeFacts,
    ) -> None:
        self.db = db
        self.rest = rest
        self.renderer = renderer
        self.sealer = sealer
        self.audit = audit
        self.facts = facts
        self._creator_power: bool | None = None
        #: Whether each room's version gives its creator unlimited power. A room's version
        #: never changes (`m.room.create` is immutable): kept, so that the power-levels check
        #: after each of a new room's initial state events does not fetch it every time.
        self._room_creator_power: dict[str, bool] = {}
        #: Called once an operation's notices are committed to the outbox. The running
        #: bridge points it at its outbox worker; without one (the command line) the
        #: bridge finds the rows when it next looks.
        self.wake_outbox: Callable[[], None] = lambda: None

    async def _queue(self, tx: Executor, msg: SendMessage, now: datetime) -> None:
        """Render a notice into the outbox; the running bridge sends it encrypted."""
        await enqueue_message(tx, self.renderer, self.sealer, msg, now)

    async def creator_has_power(self) -> bool:
        """Whether new rooms get a version (12+) where the creator has unlimited power."""
        if self._creator_power is None:
            version = self.facts.room_version
            if version is None:
                caps = await self.rest.request("GET", "/_matrix/client/v3/capabilities")
                version = str(
                    caps.get("capabilities", {}).get("m.room_versions", {}).get("default", "1")
                )
            self._creator_power = version.isdigit() and int(version) >= 12
        return self._creator_power

    async def room_power_levels(self, record: PairRecord) -> dict[str, Any]:
        """The power levels `record`'s room must have now (read-only once the pair is closed).

        The room's own version decides whether the creator (the bot) is listed: rooms made
        before the homeserver's default changed keep theirs.
        """
        assert record.room_id is not None
        creator_power = self._room_creator_power.get(record.room_id)
        if creator_power is None:
            create = await self.rest.get_state(record.room_id, "m.room.create")
            version = str(create.get("room_version", "1"))
            creator_power = version.isdigit() and int(version) >= 12
            self._room_creator_power[record.room_id] = creator_power
        return power_levels(
            self.facts.bot_user_id,
            record.therapist_id,
            read_only=record.status is PairStatus.REMOVED,
            bot_is_creator=creator_power,
        )

    # ------------------------------------------------------------ therapists, desk rooms

    async def ensure_therapist(
        self,
        therapist: str,
        now: datetime,
        *,
        email: str | None = None,
        supervisor: str | None = None,
    ) -> str:
        """The therapist's row and desk room (created on first use). Returns the desk room id."""
        record = await therapists.get(self.db, therapist)
        if record is None or email is not None or supervisor is not None:
            await therapists.upsert(
                self.db,
                therapist,
                now=to_ms(now),
                email=email if email is not None else (record.email if record else None),
                supervisor_id=supervisor
                if supervisor is not None
                else (record.supervisor_id if record else None),
            )
            record = await therapists.get(self.db, therapist)
        assert record is not None
        if record.desk_room_id:
            return record.desk_room_id
        name = self.renderer.text("desk_room_name", {"practice_name": self.facts.practice_name})
        room_id = await self.rest.create_room(
            desk_room_body(
                bot_is_creator=await self.creator_has_power(),
                bot=self.facts.bot_user_id,
                therapist=therapist,
                name=name,
                federate=self.facts.federate,
                room_version=self.facts.room_version,
            )
        )
        async with self.db.transaction() as tx:
            await therapists.set_desk_room(tx, therapist, room_id)
            await self._queue(
                tx,
                SendMessage(
                    room_id=room_id,
                    template="desk_welcome",
                    context={"practice_name": self.facts.practice_name},
                    txn_id=f"desk-welcome.{room_id}",
                    await_member=therapist,
                ),
                now,
            )
            await self.audit.append(
                tx,
                desk_created(therapist),
                now,
            )
        self.wake_outbox()
        log.info("desk room created", extra={"room_id": room_id})
        return room_id

    async def remove_therapist(self, therapist: str) -> bool:
        """Remove the therapist's row once no pair of theirs is live (closed pairs, and the
        audit, stay). Returns whether there was a row.

        Raises PairError naming the live pairs (provisioning or active), which must be
        reassigned or removed first. The desk room is left as it is.
        """
        async with self.db.transaction() as tx:
            live = [
                p
                for p in await pairs.list_pairs(tx, therapist_id=therapist)
                if p.status is not PairStatus.REMOVED
            ]
            if live:
                labels = ", ".join(p.label for p in live)
                raise PairError(
                    f"{therapist} still has pairs: {labels}; reassign or remove them first"
                )
            return await therapists.remove(tx, therapist)

    # ------------------------------------------------------------ pairs

    async def add_pair(
        self,
        patient: str | None,
        therapist: str,
        now: datetime,
        *,
        policy: str = "default",
        patient_email: str | None = None,
        actor: str = "admin",
    ) -> tuple[PairRecord, bool]:
        """Create the pair and its room; idempotent. Returns (pair, created_now).

        Without `patient`, an e-mail pair: the patient is reached at `patient_email` only
        (the room holds the therapist and the bot), and her welcome goes by e-mail.
        """
        if patient is None:
            if not patient_email or not self.facts.inbound_domain or not self.facts.email_replies:
                raise PairError(
                    "a pair without --patient needs --patient-email and answers by e-mail "
                    "(smtp.enabled, smtp.replies.enabled and outbound_email.enabled)"
                )
            patient = email_out.email_patient_id(patient_email)
        email_only = email_out.is_email_patient(patient)
        if patient == therapist:
            raise PairError("patient and therapist must be different users")
        existing = await pairs.get_by_users(self.db, patient, therapist)
        if existing is not None and existing.status is PairStatus.ACTIVE:
            return existing, False
        desk = await self.ensure_therapist(therapist, now)
        # Only a pair row left by an earlier, interrupted attempt can have a room already.
        resumed = existing is not None
        if existing is None:
            try:
                existing = await pairs.create(
                    self.db,
                    patient_id=patient,
                    therapist_id=therapist,
                    now=to_ms(now),
                    policy=policy,
                    patient_email=patient_email,
                    sealer=self.sealer,
                    # First-contact consent is asked on joining the room, which the patient
                    # of an e-mail pair never does: her consent is to the e-mail channel.
                    consent_state=(
                        "pending" if self.facts.ask_consent and not email_only else "not_required"
                    ),
                )
            except IntegrityError:
                existing = await pairs.get_by_users(self.db, patient, therapist)
                if existing is None:
                    raise
        record = existing
        room_id = await self._find_orphan_room(record.pair_id) if resumed else None
        if room_id is None:
            name = self.renderer.text(
                "room_name", {"therapist_name": display_name(therapist), "pair_label": record.label}
            )
            room_id = await self.rest.create_room(
                pair_room_body(
                    bot_is_creator=await self.creator_has_power(),
                    bot=self.facts.bot_user_id,
                    patient=patient,
                    therapist=therapist,
                    name=name,
                    pair_id=record.pair_id,
                    federate=self.facts.federate,
                    room_version=self.facts.room_version,
                )
            )
        async with self.db.transaction() as tx:
            # Stored right after createRoom: the pair row is the source of truth.
            await pairs.set_room(tx, record.pair_id, room_id)
            if email_only:
                await self._welcome_by_email(tx, record, now)
            else:
                await self._queue(tx, self._welcome(record, room_id), now)
            await self._queue(
                tx,
                SendMessage(
                    room_id=desk,
                    template="pair_added",
                    context={"pair_label": record.label, "patient_id": patient, "room_id": room_id},
                    txn_id=f"pair-added.{record.pair_id}",
                    pair_id=record.pair_id,
                    await_member=therapist,
                ),
                now,
            )
            await self.audit.append(
                tx,
                pair_created(
                    record.pair_id,
                    actor,
                    patient=patient,
                    therapist=therapist,
                    room_id=room_id,
                    policy=policy,
                ),
                now,
            )
        self.wake_outbox()
        created = await pairs.get(self.db, record.pair_id)
        assert created is not None
        log.info("pair created", extra={"pair_id": record.pair_id, "room_id": room_id})
        return created, True

    async def _welcome_by_email(self, tx: Executor, record: PairRecord, now: datetime) -> None:
        """Queue the e-mail pair's welcome (the answers-by-e-mail worker sends it): it asks
        for consent to the channel with the practice's text, answered with YES."""
        assert self.facts.inbound_domain is not None
        key = email_out.welcome_key(record.pair_id)
        message_id = email_out.message_id_for(key, self.facts.inbound_domain)
        terms = self.renderer.text(
            email_commands.TERMS_TEMPLATE, email_commands.terms_context(self.facts.practice_name)
        )
        await outmail.set_consent(
            tx,
            record.pair_id,
            email_out.ASKED,
            to_ms(now),
            text_sha256=text_digest(terms),
            ask_message_id=message_id,
        )
        await outmail.queue(
            tx,
            event_id=key,
            pair_id=record.pair_id,
            kind=email_out.WELCOME,
            message_id=message_id,
            now=to_ms(now),
        )

    def _welcome(self, record: PairRecord, room_id: str) -> SendMessage:
        patient_email = pairs.open_patient_email(self.sealer, record)
        email_address = (
            f"pair-{record.email_token}@{self.facts.inbound_domain}"
            if self.facts.inbound_domain and patient_email
            else None
        )
        window = self.facts.window_of(record.policy)
        return SendMessage(
            room_id=room_id,
            template="welcome",
            context={
                "therapist_name": display_name(record.therapist_id),
                "practice_name": self.facts.practice_name,
                "reply_window": window.text,
                "reply_window_seconds": window.seconds,
                "working_time": window.working_time,
                "crisis_line": self.facts.crisis_line,
                "email_address": email_address,
                "patient_email": patient_email,
                "video_enabled": self.facts.video_enabled,
            },
            txn_id=f"welcome.{record.pair_id}",
            pair_id=record.pair_id,
            await_member=record.patient_id,
        )

    async def _find_orphan_room(self, pair_id: str) -> str | None:
        """A room created for this pair by an earlier attempt that crashed before storing it."""
        try:
            data = await self.rest.request("GET", "/_matrix/client/v3/joined_rooms")
        except MatrixError:
            return None
        for room_id in data.get("joined_rooms", []):
            try:
                state = await self.rest.get_state(room_id, PAIR_STATE_TYPE)
            except MatrixError:
                continue
            if state.get("pair_id") == pair_id:
                return str(room_id)
        return None

    async def resolve(self, ref: str) -> PairRecord:
        """A pair by id, label or room id."""
        for getter in (pairs.get, pairs.get_by_label, pairs.get_by_room):
            record = await getter(self.db, ref)
            if record is not None:
                return record
        raise PairError(f"no pair {ref!r} (give a pair id, label or room id)")

    async def remove_pair(self, ref: str, now: datetime, *, actor: str = "admin") -> PairRecord:
        """Close the pair: closing notice, room made read-only, audit kept."""
        record = await self.resolve(ref)
        if record.status is PairStatus.REMOVED:
            return record
        if record.room_id:
            await self.rest.put_state(
                record.room_id,
                "m.room.power_levels",
                "",
                power_levels(
                    self.facts.bot_user_id,
                    record.therapist_id,
                    read_only=True,
                    bot_is_creator=await self.creator_has_power(),
                ),
            )
        async with self.db.transaction() as tx:
            await pairs.set_status(tx, record.pair_id, PairStatus.REMOVED, to_ms(now))
            if record.room_id:
                await self._queue(
                    tx,
                    SendMessage(
                        room_id=record.room_id,
                        template="pair_closed",
                        context={
                            "practice_name": self.facts.practice_name,
                            "crisis_line": self.facts.crisis_line,
                        },
                        txn_id=f"closed.{record.pair_id}",
                        pair_id=record.pair_id,
                    ),
                    now,
                )
            await self.audit.append(tx, pair_removed(record.pair_id, actor), now)
        self.wake_outbox()
        updated = await pairs.get(self.db, record.pair_id)
        assert updated is not None
        return updated

    async def reassign(
        self, ref: str, new_therapist: str, now: datetime, *, actor: str = "admin"
    ) -> PairRecord:
        """Hand the pair over: invite the new therapist, remove the old one, tell the room."""
        record = await self.resolve(ref)
        if record.status is not PairStatus.ACTIVE or not record.room_id:
            raise PairError(f"pair {record.label} is not active")
        if new_therapist == record.therapist_id:
            return record
        if new_therapist == record.patient_id:
            raise PairError("the new therapist cannot be the patient")
        old = record.therapist_id
        await self.ensure_therapist(new_therapist, now)
        # Database first: the bridge's membership policy must already see the newcomer
        # as a member when the invite arrives, or it would treat them as an outsider.
        async with self.db.transaction() as tx:
            await pairs.reassign_therapist(tx, record.pair_id, new_therapist)
            await self.audit.append(
                tx,
                pair_reassigned(record.pair_id, actor, old, new_therapist),
                now,
            )
        await self.rest.put_state(
            record.room_id,
            "m.room.power_levels",
            "",
            power_levels(
                self.facts.bot_user_id,
                new_therapist,
                bot_is_creator=await self.creator_has_power(),
            ),
        )
        await self.rest.invite(record.room_id, new_therapist)
        try:
            await self.rest.kick(record.room_id, old, "conversation handed over")
        except MatrixError as err:
            if err.errcode != "M_FORBIDDEN":
                raise
        async with self.db.transaction() as tx:
            await self._queue(
                tx,
                SendMessage(
                    room_id=record.room_id,
                    template="therapist_changed",
                    context={"therapist_name": display_name(new_therapist)},
                    txn_id=f"reassigned.{record.pair_id}.{to_ms(now)}",
                    pair_id=record.pair_id,
                ),
                now,
            )
        self.wake_outbox()
        updated = await pairs.get(self.db, record.pair_id)
        assert updated is not None
        return updated
