"""The relay worker: accepted e-mails from the durable inbox into the pair room, exactly once.

For each pending e-mail: convert it, upload its attachments encrypted (audio becomes a
voice message when it converts), and hand the service ONE inbound message
(`bridge.features.email.inbound`). The service takes it the way a pair-room event takes:
in one transaction it marks the e-mail relayed, queues the post and the attachments in the
outbox under txn ids derived from the inbox's `relay_txn_id`, appends the "relay.email"
audit entry (the full original sealed as its content) and runs the pair hooks, which open
the reply clock on the patient's message. A crash before the commit relays it again from
scratch (at worst an orphaned upload); a crash after it finds the e-mail relayed, and the
outbox's txn ids keep the homeserver from posting twice.

Uploads need the homeserver; while it is down the e-mail waits with a growing backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

from bridge.adapters.voice import (
    AudioError,
    VoiceLimits,
    convert_to_voice_async,
    voice_message_content,
)
from bridge.core import inbound as core
from bridge.core.inbound import InboundAttachment, InboundMessage, Media, attachment_txn_id
from bridge.core.model import AppendAudit
from bridge.email import inbox
from bridge.email.autoreply import is_automatic
from bridge.email.convert import (
    ConvertLimits,
    EmailAttachment,
    convert_email,
    email_post_content,
)
from bridge.email.parse import MalformedEmail
from bridge.features.email.inbound import CHANNEL, inbound_message
from bridge.features.email.outbound.consent import answer_by_email
from bridge.outbox import BACKOFF
from bridge.polling import PollingWorker
from bridge.sealing import Sealer, SealError
from bridge.store import languages, pairs
from bridge.store.base import Database, Executor, to_ms
from bridge.store.pairs import PairStatus

__all__ = [
    "ACTOR",
    "BACKOFF",
    "AuditAppend",
    "EmailRelay",
    "InboundPipeline",
    "Uploader",
    "attachment_txn_id",
]

log = logging.getLogger(__name__)

#: Who the e-mail channel's own audit entries are from (refusals, relays given up).
ACTOR = "smtp"


class Uploader(Protocol):
    """Encrypted media upload (`MatrixBot.upload_encrypted`)."""

    async def upload_encrypted(self, data: bytes, mimetype: str, filename: str) -> dict[str, Any]:
        """Upload `data` encrypted; return the event's `file` object (with `url`)."""
        ...


class AuditAppend(Protocol):
    """The audit log (`bridge.audit.log.AuditLog`), for an e-mail that is given up."""

    async def append(self, tx: Executor, effect: AppendAudit, now: datetime) -> Any:
        """Append one entry in the caller's transaction."""
        ...


class InboundPipeline(Protocol):
    """The one pipeline (`bridge.service.Service.on_inbound`)."""

    async def on_inbound(
        self, message: InboundMessage, claim: Callable[[Executor, datetime], Awaitable[bool]]
    ) -> bool:
        """Claim, decide and commit the message in one transaction, then act on it."""
        ...


class _Permanent(Exception):
    """This e-mail can never be relayed; `reason` is a code safe to log and store."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EmailRelay(PollingWorker):
    """Moves accepted e-mails into their pair rooms; `start()`, `kick()`, `stop()`."""

    name = "email relay"

    def __init__(
        self,
        *,
        db: Database,
        sealer: Sealer,
        audit: AuditAppend,
        template_env: Any,
        uploader: Uploader,
        pipeline: InboundPipeline,
        environment_for: Callable[[str | None], Any] | None = None,
        clock: Callable[[], datetime],
        inbound_domain: str,
        voice_limits: VoiceLimits,
        convert_limits: ConvertLimits | None = None,
        poll_seconds: float = 30.0,
    ) -> None:
        self.db = db
        self.sealer = sealer
        self.audit = audit
        self.template_env = template_env
        #: The templates in a reader's language (None: the practice's); without it every
        #: post is written with `template_env`.
        self.environment_for = environment_for
        self.uploader = uploader
        self.pipeline = pipeline
        self.clock = clock
        self.inbound_domain = inbound_domain
        self.voice_limits = voice_limits
        self.convert_limits = convert_limits or ConvertLimits()
        super().__init__(poll_seconds)
        #: Opens PGP/MIME mail before it is converted (answers by e-mail with a practice
        #: key set it); returns what to convert and the OpenPGP status, None if not PGP.
        self.decrypt: Callable[[str, bytes], Awaitable[tuple[bytes, str | None]]] | None = None
        self.relayed = 0
        self.failed = 0
        self.retries = 0
        self._attempts: dict[str, int] = {}

    # ------------------------------------------------------------ one pass

    async def drain(self, limit: int = 50) -> int:
        """Relay every pending e-mail that is not waiting out a backoff; returns how many."""
        loop = asyncio.get_running_loop()
        done = 0
        for item in await inbox.pending(self.db, limit):
            if self._not_before.get(item.id, 0.0) > loop.time():
                continue
            try:
                if await self.relay(item):
                    done += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempts = self._attempts.get(item.id, 0)
                delay = BACKOFF[min(attempts, len(BACKOFF) - 1)]
                self._attempts[item.id] = attempts + 1
                self._not_before[item.id] = loop.time() + delay
                self.retries += 1
                log.info(
                    "email relay deferred",
                    extra={"email_id": item.id, "error": type(exc).__name__, "in_s": delay},
                )
        return done

    async def relay(self, item: inbox.InboundEmail) -> bool:
        """Relay one e-mail; True when it was queued now. Raises to be retried later."""
        try:
            record = await pairs.get(self.db, item.pair_id)
            if record is None or record.room_id is None or record.status is not PairStatus.ACTIVE:
                raise _Permanent("pair_inactive")
            try:
                raw = inbox.open_raw(self.sealer, item)
            except SealError as exc:
                raise _Permanent("unsealable") from exc
            readable, openpgp = raw, None
            if self.decrypt is not None:
                readable, openpgp = await self.decrypt(item.pair_id, raw)
            try:
                converted = await asyncio.to_thread(convert_email, readable, self.convert_limits)
            except MalformedEmail as exc:
                raise _Permanent(f"malformed:{exc.reason}") from exc
        except _Permanent as failure:
            await self._give_up(item, failure.reason)
            return False
        automatic = is_automatic(raw)
        address = f"pair-{record.email_token}@{self.inbound_domain}"
        attachments = [await self._upload(att) for att in converted.attachments]
        # The post answers the relayed e-mail this one replies to, once that one is posted.
        target = await inbox.reply_target(
            self.db, item.pair_id, converted.in_reply_to, converted.references
        )
        env = self.template_env
        if self.environment_for is not None:
            # The post is for the patient's eyes in her room: written in her language.
            env = self.environment_for(await languages.of_room(self.db, record.room_id))
        post = email_post_content(converted, env, reply_to_event_id=target)
        message = inbound_message(
            item, address, raw, converted, post, attachments, automatic=automatic, openpgp=openpgp
        )

        async def claim(tx: Executor, now: datetime) -> bool:
            if not await inbox.mark_relayed(tx, item.id, message.txn_id, to_ms(now)):
                return False
            # YES to the consent e-mail, or STOP: the e-mail channel's consent, with the
            # relay, in one transaction (the mail itself is posted as any other). An
            # auto-reply says nothing for her.
            if automatic:
                return True
            await answer_by_email(
                tx,
                self.sealer,
                self.audit,
                record,
                converted.text_body,
                in_reply_to=converted.in_reply_to,
                references=converted.references,
                now=now,
            )
            return True

        queued = await self.pipeline.on_inbound(message, claim)
        self._attempts.pop(item.id, None)
        self._not_before.pop(item.id, None)
        if queued:
            self.relayed += 1
            log.info(
                "e-mail relayed",
                extra={
                    "pair_id": item.pair_id,
                    "email_id": item.id,
                    "attachments": len(attachments),
                    "voice": sum(a.voice for a in attachments),
                    "reply": target is not None,
                    "automatic": automatic,
                },
            )
        return queued

    async def _upload(self, attachment: EmailAttachment) -> InboundAttachment:
        """Upload one attachment encrypted; audio goes up as a voice message if it converts.

        The audit keeps the attachment as it came, whatever it is posted as."""
        kept = Media(attachment.filename, attachment.mimetype, attachment.data)
        if attachment.is_voice_candidate:
            try:
                clip = await convert_to_voice_async(
                    attachment.data, filename_hint=attachment.filename, limits=self.voice_limits
                )
            except AudioError as exc:
                log.info("e-mail audio posted as a file", extra={"reason": exc.reason})
            else:
                file_obj = await self.uploader.upload_encrypted(
                    clip.ogg, "audio/ogg", "Voice message.ogg"
                )
                content = voice_message_content(clip, file_info=file_obj, url=file_obj["url"])
                return InboundAttachment(kept, content, voice=True)
        file_obj = await self.uploader.upload_encrypted(
            attachment.data, attachment.mimetype, attachment.filename
        )
        msgtype = "m.image" if attachment.kind == "image" else "m.file"
        content = {
            "msgtype": msgtype,
            "body": attachment.filename,
            "filename": attachment.filename,
            "info": {"mimetype": attachment.mimetype, "size": len(attachment.data)},
            "file": file_obj,
        }
        return InboundAttachment(kept, content)

    async def _give_up(self, item: inbox.InboundEmail, reason: str) -> None:
        now = self.clock()
        async with self.db.transaction() as tx:
            if not await inbox.mark_failed(tx, item.id, reason):
                return
            entry = core.relay_failed(CHANNEL, item.pair_id, ACTOR, {"email_id": item.id}, reason)
            await self.audit.append(tx, entry, now)
        self.failed += 1
        log.warning("e-mail not relayed", extra={"email_id": item.id, "reason": reason})
