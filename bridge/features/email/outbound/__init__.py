"""Answers by e-mail: the therapist's messages in the pair room sent on to the patient's
address, once she has agreed to the channel (`smtp.replies.enabled`).

The pair hook queues one `outbound_emails` row per therapist message (an edit becomes a
correction) in the event's own transaction, keyed by the event id, and asks for the worker
after the commit; the worker builds the mail from the content the audit sealed, threads it
to her latest mail, signs it and sends it from the pair's address through the practice's
relay. `!email on|off|ask` and her YES or STOP by e-mail move the consent
(`bridge.core.email_commands`, `consent.py`); without consent nothing is queued, and a
mail queued before she withdrew it is withheld.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from bridge import hooks
from bridge.adapters.mailer import build_mailer
from bridge.adapters.render import Renderer
from bridge.core import email_commands, email_out
from bridge.core.commands import PAIR_ROOM, CommandContext
from bridge.core.consent import text_digest
from bridge.core.model import MATRIX, Effect, Invoke, Kind, Pair, Role, RoomEvent
from bridge.email.openpgp import KeyProblem, PracticeKey, read_practice_key
from bridge.features.email.outbound.consent import answer_by_email, apply_transition
from bridge.features.email.outbound.keys import InboundDecryptor, RoomKeyImport
from bridge.features.email.outbound.worker import Dkim, OutboundWorker
from bridge.store import outmail, pairs
from bridge.store.base import ContentSealer, Executor
from bridge.store.pairs import PairStatus

if TYPE_CHECKING:
    from bridge.config import Config
    from bridge.host import Host

__all__ = ["KICK_OPERATION", "OutboundMail", "answer_by_email", "install_outbound"]

log = logging.getLogger(__name__)

#: The operation that wakes the worker once a queued mail is committed.
KICK_OPERATION = "email.outbound"
#: The operation that looks at a file the patient posted: her OpenPGP key?
KEY_OPERATION = "email.key_import"


class OutboundMail:
    """The pair hook, the `!email` facts and the worker's wake-up."""

    def __init__(
        self,
        *,
        renderer: Renderer,
        sealer: ContentSealer,
        worker: OutboundWorker,
        domain: str,
        practice_name: str,
        decryptor: InboundDecryptor | None = None,
        key_import: RoomKeyImport | None = None,
    ) -> None:
        self.renderer = renderer
        #: Opens the patient's address (the store keeps it sealed).
        self.sealer = sealer
        self.worker = worker
        #: Opens her PGP/MIME mail (with `smtp.replies.openpgp_key`), for the relay.
        self.decryptor = decryptor
        self.key_import = key_import
        self.domain = domain
        self.practice_name = practice_name

    def terms_context(self) -> dict[str, Any]:
        return email_commands.terms_context(self.practice_name)

    def terms_digest(self) -> str:
        """The SHA-256 of the practice's text on e-mail, exactly as it is shown."""
        text = self.renderer.text(email_commands.TERMS_TEMPLATE, self.terms_context())
        return text_digest(text)

    async def channel_facts(self, tx: Executor, pair_id: str) -> email_commands.EmailChannelFacts:
        record = await pairs.get(tx, pair_id)
        consent = await outmail.get_consent(tx, pair_id)
        return email_commands.EmailChannelFacts(
            state=consent.state if consent is not None else None,
            address=None if record is None else pairs.open_patient_email(self.sealer, record),
            text_sha256=self.terms_digest(),
            domain=self.domain,
            context=self.terms_context(),
            key_fingerprint=await outmail.key_fingerprint(tx, pair_id),
        )

    @hooks.facts
    async def facts(
        self, tx: Executor, ctx: CommandContext
    ) -> email_commands.EmailChannelFacts | None:
        if ctx.room_kind != PAIR_ROOM or ctx.pair is None:
            return None
        return await self.channel_facts(tx, ctx.pair.pair_id)

    @hooks.pair_hook
    async def on_pair_event(self, tx: Executor, pair: Pair, ev: RoomEvent) -> list[Effect]:
        if pair.status != PairStatus.ACTIVE.value:
            return []
        if ev.command:
            return await self._command(tx, pair, ev)
        if ev.role is Role.PATIENT and ev.kind is Kind.FILE and ev.channel == MATRIX:
            # Perhaps her OpenPGP key: looked at after the commit (it must be fetched).
            params = {"event_id": ev.event_id, "sender": ev.sender}
            return [Invoke(KEY_OPERATION, pair.room_id, params, pair_id=pair.pair_id)]
        kind = email_out.outbound_kind(ev)
        if kind is None:
            return []
        record = await pairs.get(tx, pair.pair_id)
        consent = await outmail.get_consent(tx, pair.pair_id)
        if record is None or consent is None:
            return []
        address = pairs.open_patient_email(self.sealer, record)
        if not email_out.may_send(consent.state, consent.address_sha256, address):
            return []
        if kind == email_out.CORRECTION and (
            ev.relates_to is None or await outmail.get(tx, ev.relates_to) is None
        ):
            # A correction of a message that never went by e-mail has nothing to correct.
            return []
        queued = await outmail.queue(
            tx,
            event_id=ev.event_id,
            pair_id=pair.pair_id,
            kind=kind,
            message_id=email_out.message_id_for(ev.event_id, self.domain),
            now=int(ev.seen_at.timestamp() * 1000),
        )
        return [self._kick(pair)] if queued else []

    async def _command(self, tx: Executor, pair: Pair, ev: RoomEvent) -> list[Effect]:
        """Store what `!email on|off|ask` decides (the command replies and audits it)."""
        assert ev.command is not None
        words = ev.command[1:].split()
        if not words or words[0].lower() != email_commands.NAME:
            return []
        facts = await self.channel_facts(tx, pair.pair_id)
        new = email_commands.transition(ev.role, email_commands.action_of(words[1:]), facts)
        if new is None:
            return []
        queued = await apply_transition(
            tx, pair.pair_id, new, facts, event_id=ev.event_id, now=ev.seen_at
        )
        return [self._kick(pair)] if queued else []

    def _kick(self, pair: Pair) -> Invoke:
        return Invoke(KICK_OPERATION, pair.room_id, {}, pair_id=pair.pair_id)

    @hooks.on_invoke(KICK_OPERATION)
    async def on_kick(self, invoke: Invoke) -> None:
        self.worker.kick()

    @hooks.on_invoke(KEY_OPERATION)
    async def on_posted_file(self, invoke: Invoke) -> None:
        if self.key_import is None or invoke.pair_id is None:
            return
        event_id = str(invoke.params["event_id"])
        content = await self.worker.event_content(event_id)
        if content is None:
            return
        key = await self.key_import(
            invoke.pair_id, invoke.room_id, event_id, str(invoke.params["sender"]), content
        )
        if key is not None:
            log.info("patient key put on file from the room", extra={"pair_id": invoke.pair_id})


def _practice_key(cfg: Config) -> PracticeKey | None:
    path = cfg.smtp.replies.openpgp_key
    if path is None:
        return None
    try:
        return read_practice_key(path.read_bytes())
    except KeyProblem as err:
        raise ValueError(f"smtp.replies.openpgp_key: {err}") from err


def _dkim(cfg: Config, domain: str) -> Dkim | None:
    replies = cfg.smtp.replies
    if replies.dkim_selector is None or replies.dkim_key is None:
        return None
    return Dkim(replies.dkim_selector, domain, replies.dkim_key.read_bytes())


async def install_outbound(app: Host) -> OutboundMail | None:
    """Answers by e-mail when `smtp.replies.enabled` (and inbound e-mail is on)."""
    cfg = app.cfg
    domain = cfg.smtp.inbound_domain
    if not cfg.smtp.enabled or not cfg.smtp.replies.enabled or domain is None:
        return None
    mailer = build_mailer(cfg, app.parts.renderer)
    if mailer is None:
        raise ValueError("smtp.replies needs outbound_email.enabled: true (the practice's relay)")
    practice_key = _practice_key(cfg)
    worker = OutboundWorker(
        db=app.parts.db,
        sealer=app.parts.sealer,
        audit=app.parts.audit,
        renderer=app.parts.renderer,
        mailer=mailer,
        downloader=app.bot,
        clock=app.service.clock,
        inbound_domain=domain,
        practice_name=cfg.practice.name,
        terms_context=lambda: email_commands.terms_context(cfg.practice.name),
        crisis_line=cfg.practice.crisis_line,
        dkim=_dkim(cfg, domain),
        require_encryption=cfg.smtp.replies.require_encryption,
        practice_key=practice_key,
    )
    feature = OutboundMail(
        renderer=app.parts.renderer,
        sealer=app.parts.sealer,
        worker=worker,
        domain=domain,
        practice_name=cfg.practice.name,
        decryptor=(
            None
            if practice_key is None
            else InboundDecryptor(app.parts.db, app.parts.sealer, practice_key)
        ),
        key_import=RoomKeyImport(
            db=app.parts.db,
            sealer=app.parts.sealer,
            audit=app.parts.audit,
            renderer=app.parts.renderer,
            downloader=app.bot,
            wake_outbox=app.outbox.kick,
            clock=app.service.clock,
        ),
    )
    app.service.install(feature)

    async def start() -> None:
        worker.start()

    app.on_start(start)
    app.on_stop(worker.stop)
    log.info("answers by e-mail on", extra={"dkim": worker.dkim is not None})
    return feature
