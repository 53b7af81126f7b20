"""The relay worker: accepted e-mails from the durable inbox into the pair room, exactly once.

For each pending e-mail: convert it, upload its attachments encrypted (audio becomes a
voice message when it converts), then in ONE transaction queue the post and the
attachments in the outbox under txn ids derived from the inbox's `relay_txn_id`, mark
the e-mail relayed, append the "relay.email" audit entry (the full original sealed as
its content) and let the SLA clock see a patient message. A crash before the commit
relays it again from scratch (at worst an orphaned upload); a crash after it finds the
e-mail relayed, and the outbox's txn ids keep the homeserver from posting twice.

Uploads need the homeserver; while it is down the e-mail waits with a growing backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from bridge.adapters.voice import (
    AudioError,
    VoiceLimits,
    convert_to_voice_async,
    voice_message_content,
)
from bridge.core.audit import message_content
from bridge.core.model import AppendAudit, Effect, Pair
from bridge.email import inbox
from bridge.email.convert import (
    ConvertedEmail,
    ConvertLimits,
    EmailAttachment,
    convert_email,
    email_post_content,
)
from bridge.email.parse import MalformedEmail
from bridge.outbox import BACKOFF, enqueue_content
from bridge.sealing import Sealer, SealError
from bridge.service import to_pair
from bridge.store import pairs
from bridge.store.base import Database, Executor, from_ms, to_ms
from bridge.store.pairs import PairStatus

__all__ = [
    "BACKOFF",
    "EffectSink",
    "EmailRelay",
    "MediaAudit",
    "PatientEmailHook",
    "Uploader",
    "attachment_txn_id",
]

log = logging.getLogger(__name__)

#: Seconds between attempts of an e-mail whose uploads failed; the last value repeats.
#: Audit action of a relayed e-mail and of one that can never be relayed.
RELAYED_ACTION = "relay.email"
FAILED_ACTION = "email.relay_failed"


class Uploader(Protocol):
    """Encrypted media upload (`MatrixBot.upload_encrypted`)."""

    async def upload_encrypted(self, data: bytes, mimetype: str, filename: str) -> dict[str, Any]:
        """Upload `data` encrypted; return the event's `file` object (with `url`)."""
        ...


class MediaAudit(Protocol):
    """The audit log (`bridge.audit.log.AuditLog`): entries plus sealed media."""

    async def append(self, tx: Executor, effect: AppendAudit, now: datetime) -> Any:
        """Append one entry in the caller's transaction."""
        ...

    async def store_media(self, tx: Executor, data: bytes, now: datetime | int) -> str:
        """Keep bytes sealed; return their hex SHA-256."""
        ...


class EffectSink(Protocol):
    """Writes effects in a transaction and acts on them after it (the `Service`)."""

    async def apply_durable(self, tx: Executor, effects: list[Effect], now: datetime) -> None:
        """Write durable effects inside `tx`."""
        ...

    async def apply_after(self, effects: list[Effect]) -> None:
        """Act on effects once committed."""
        ...


#: The SLA clock's view of a relayed patient e-mail (`bridge.ports.ReplyClock.on_patient_email`).
PatientEmailHook = Callable[[Executor, Pair, str, datetime], Awaitable[list[Effect]]]


def attachment_txn_id(relay_txn: str, index: int) -> str:
    """The outbox txn id of the `index`-th attachment; sorts after the post's own."""
    return f"{relay_txn}.a{index:02d}"


@dataclass(frozen=True, slots=True)
class _Upload:
    """One attachment as it will be posted, and what the audit keeps of it."""

    content: dict[str, Any]
    attachment: EmailAttachment
    voice: bool


class _Permanent(Exception):
    """This e-mail can never be relayed; `reason` is a code safe to log and store."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EmailRelay:
    """Moves accepted e-mails into their pair rooms; `start()`, `kick()`, `stop()`."""

    def __init__(
        self,
        *,
        db: Database,
        sealer: Sealer,
        audit: MediaAudit,
        template_env: Any,
        uploader: Uploader,
        clock: Callable[[], datetime],
        inbound_domain: str,
        voice_limits: VoiceLimits,
        convert_limits: ConvertLimits | None = None,
        effects: EffectSink | None = None,
        patient_email: PatientEmailHook | None = None,
        on_queued: Callable[[], None] | None = None,
        poll_seconds: float = 30.0,
    ) -> None:
        self.db = db
        self.sealer = sealer
        self.audit = audit
        self.template_env = template_env
        self.uploader = uploader
        self.clock = clock
        self.inbound_domain = inbound_domain
        self.voice_limits = voice_limits
        self.convert_limits = convert_limits or ConvertLimits()
        self.effects = effects
        self.patient_email = patient_email
        self.on_queued = on_queued
        self.poll_seconds = poll_seconds
        self.relayed = 0
        self.failed = 0
        self.retries = 0
        self._attempts: dict[str, int] = {}
        self._not_before: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Run the worker on the current loop (relays whatever is pending at once)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="email-relay")

    async def stop(self) -> None:
        """Stop the worker; an e-mail in flight stays pending and is relayed next time."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def kick(self) -> None:
        """Look at the inbox now (a message was just accepted)."""
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self.drain()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("email relay pass failed", extra={"error": type(exc).__name__})
            wait = self.poll_seconds
            if self._not_before:
                wait = min(wait, max(0.05, min(self._not_before.values()) - loop.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            self._wake.clear()

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
            try:
                converted = await asyncio.to_thread(convert_email, raw, self.convert_limits)
            except MalformedEmail as exc:
                raise _Permanent(f"malformed:{exc.reason}") from exc
        except _Permanent as failure:
            await self._give_up(item, failure.reason)
            return False
        pair = to_pair(record)
        address = f"pair-{record.email_token}@{self.inbound_domain}"
        uploads = [await self._upload(att) for att in converted.attachments]
        queued = await self._commit(item, pair, address, raw, converted, uploads)
        self._attempts.pop(item.id, None)
        self._not_before.pop(item.id, None)
        return queued

    async def _upload(self, attachment: EmailAttachment) -> _Upload:
        """Upload one attachment encrypted; audio goes up as a voice message if it converts."""
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
                return _Upload(content, attachment, voice=True)
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
        return _Upload(content, attachment, voice=False)

    async def _commit(
        self,
        item: inbox.InboundEmail,
        pair: Pair,
        address: str,
        raw: bytes,
        converted: ConvertedEmail,
        uploads: Sequence[_Upload],
    ) -> bool:
        now = self.clock()
        txn = inbox.relay_txn_id(item.id)
        effects: list[Effect] = []
        async with self.db.transaction() as tx:
            if not await inbox.mark_relayed(tx, item.id, txn, to_ms(now)):
                return False  # relayed by another pass or process meanwhile
            target = await inbox.reply_target(
                tx, pair.pair_id, converted.in_reply_to, converted.references
            )
            post = email_post_content(converted, self.template_env, reply_to_event_id=target)
            # The room's posts leave in the order the e-mails were accepted, whatever
            # order retries and restarts relay them in.
            accepted = from_ms(item.received_at)
            await enqueue_content(
                tx, self.sealer, pair.room_id, "m.room.message", post, txn, "email", now,
                pair_id=pair.pair_id, accepted_at=accepted,
            )  # fmt: skip
            for index, upload in enumerate(uploads, start=1):
                await enqueue_content(
                    tx, self.sealer, pair.room_id, "m.room.message", upload.content,
                    attachment_txn_id(txn, index), "email_attachment", now, pair_id=pair.pair_id,
                    accepted_at=accepted,
                )  # fmt: skip
            await self.audit.append(
                tx,
                await self._audit_entry(
                    tx, item, pair, address, raw, converted, post, uploads, now
                ),
                now,
            )
            if self.patient_email is not None and self.effects is not None:
                effects = await self.patient_email(tx, pair, txn, now)
                await self.effects.apply_durable(tx, effects, now)
        self.relayed += 1
        log.info(
            "e-mail relayed",
            extra={
                "pair_id": pair.pair_id,
                "email_id": item.id,
                "attachments": len(uploads),
                "voice": sum(u.voice for u in uploads),
                "reply": target is not None,
            },
        )
        if self.effects is not None and effects:
            await self.effects.apply_after(effects)
        if self.on_queued is not None:
            self.on_queued()
        return True

    async def _audit_entry(
        self,
        tx: Executor,
        item: inbox.InboundEmail,
        pair: Pair,
        address: str,
        raw: bytes,
        converted: ConvertedEmail,
        post: dict[str, Any],
        uploads: Sequence[_Upload],
        now: datetime,
    ) -> AppendAudit:
        """The "relay.email" entry; its sealed content keeps the complete original."""
        attachments: list[dict[str, Any]] = []
        for upload in uploads:
            att = upload.attachment
            attachments.append(
                {
                    "filename": att.filename,
                    "mimetype": att.mimetype,
                    "size": len(att.data),
                    "media_ref": await self.audit.store_media(tx, att.data, now),
                    "voice": upload.voice,
                }
            )
        content = message_content(
            "email",
            str(post.get("body", "")),
            formatted_body=post.get("formatted_body"),
            filename="original.eml",
            mimetype="message/rfc822",
            media_ref=await self.audit.store_media(tx, raw, now),
            subject=converted.subject,
            attachments=attachments,
            message_id=item.message_id,
            **{"from": converted.from_address, "to": address},
        )
        return AppendAudit(
            pair_id=pair.pair_id,
            action=RELAYED_ACTION,
            actor=pair.patient_id,
            details={
                "role": "patient",
                "kind": "email",
                "email_id": item.id,
                "txn_id": inbox.relay_txn_id(item.id),
                "auth": item.auth_method,
                "attachments": len(uploads),
                "dropped_attachments": converted.dropped_attachments,
            },
            content=content,
        )

    async def _give_up(self, item: inbox.InboundEmail, reason: str) -> None:
        now = self.clock()
        async with self.db.transaction() as tx:
            if not await inbox.mark_failed(tx, item.id, reason):
                return
            await self.audit.append(
                tx,
                AppendAudit(
                    pair_id=item.pair_id,
                    action=FAILED_ACTION,
                    actor="smtp",
                    details={"email_id": item.id, "reason": reason},
                    outcome="failed",
                ),
                now,
            )
        self.failed += 1
        log.warning("e-mail not relayed", extra={"email_id": item.id, "reason": reason})
