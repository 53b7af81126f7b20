"""The worker that sends queued mail to patients through the practice's relay.

For each pending row: look again at the pair and the consent (a mail whose consent was
withdrawn after it was queued is withheld, audited, never sent), build it from the
event's content sealed in the audit, sign it, hand it to the relay, then in one
transaction mark it sent and audit it (the mail as sent sealed in the media store). Each
mail's envelope sender is its own return path, `bounce+TOKEN@` the inbound domain, with a
random token kept on its row: what bounces comes back tied to that mail (`bounces.py`). A
relay that does not answer, or answers 4xx, is tried again with a growing backoff; a 5xx
answer gives the mail up, audited.

A crash after the relay took the mail and before the commit sends it again at start,
with the same Message-ID, which the patient's client shows as one message: the relay's
250 and our commit cannot be one step, and a lost mail would be worse than a repeat.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from bridge.adapters.mailer import Mailer, MailError
from bridge.adapters.render import Renderer
from bridge.audit.log import AuditLog
from bridge.core import email_out
from bridge.email import inbox
from bridge.email.compose import (
    MailAttachment,
    OutgoingMail,
    compose,
    dkim_sign,
    footer_html,
    mail_bytes,
    matrix_text,
)
from bridge.email.convert import plain_to_html
from bridge.email.openpgp import PracticeKey, PublicKey, encrypt_mime
from bridge.email.parse import MalformedEmail, parse_message
from bridge.outbox import BACKOFF
from bridge.polling import PollingWorker
from bridge.sealing import Sealer, SealError
from bridge.store import audit as audit_store
from bridge.store import outmail, pairs
from bridge.store.base import Database, to_ms
from bridge.store.outmail import OutboundEmail, OutmailStatus
from bridge.store.pairs import PairRecord, PairStatus

log = logging.getLogger(__name__)

#: How long a worker holds a mail while the relay takes it (the relay's timeout is 30 s);
#: after a crash in the middle of a send, the mail is sent again once this has passed.
LEASE_MS = 60_000
#: What the practice's public key is called when it goes with a consent e-mail.
PRACTICE_KEY_FILENAME = "practice-openpgp-key.asc"


class Downloader(Protocol):
    """Encrypted media download (`MatrixBot.download_decrypted`)."""

    async def download_decrypted(self, file_obj: dict[str, Any]) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Dkim:
    selector: str
    domain: str
    private_key: bytes


class _GiveUp(Exception):
    def __init__(self, status: OutmailStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class OutboundWorker(PollingWorker):
    """Sends pending outbound mail; `start()`, `kick()`, `stop()`, or `drain()` once."""

    name = "outbound e-mail"

    def __init__(
        self,
        *,
        db: Database,
        sealer: Sealer,
        audit: AuditLog,
        renderer: Renderer,
        mailer: Mailer,
        downloader: Downloader,
        clock: Callable[[], datetime],
        inbound_domain: str,
        practice_name: str,
        terms_context: Callable[[], dict[str, Any]],
        crisis_line: str | None = None,
        dkim: Dkim | None = None,
        require_encryption: bool = False,
        practice_key: PracticeKey | None = None,
        poll_seconds: float = 30.0,
    ) -> None:
        self.db = db
        self.sealer = sealer
        self.audit = audit
        self.renderer = renderer
        self.mailer = mailer
        self.downloader = downloader
        self.clock = clock
        self.domain = inbound_domain
        self.practice_name = practice_name
        self.terms_context = terms_context
        self.crisis_line = crisis_line
        self.dkim = dkim
        self.require_encryption = require_encryption
        self.practice_key = practice_key
        super().__init__(poll_seconds)
        self.sent = 0
        self.retries = 0
        self._attempts: dict[str, int] = {}
        # One pass at a time in this process; the rows' leases keep other processes out.
        self._pass = asyncio.Lock()

    # ------------------------------------------------------------ one pass

    async def drain(self, limit: int = 50) -> int:
        """Send every pending mail not waiting out a backoff; returns how many were sent.

        A pair's mails leave in their order: once one waits, the pair's later ones wait too.
        """
        async with self._pass:
            return await self._drain(limit)

    async def _drain(self, limit: int) -> int:
        loop = asyncio.get_running_loop()
        done = 0
        held: set[str] = set()
        for row in await outmail.pending(self.db, limit):
            if row.pair_id in held or self._not_before.get(row.event_id, 0.0) > loop.time():
                held.add(row.pair_id)
                continue
            try:
                if await self.send(row):
                    done += 1
            except asyncio.CancelledError:
                raise
            except MailError as exc:
                if exc.permanent:
                    await self._give_up(row, OutmailStatus.FAILED, "relay_refused")
                else:
                    held.add(row.pair_id)
                    await self._defer(row, type(exc.__cause__ or exc).__name__)
            except Exception as exc:
                # One mail that cannot be built or sealed must not hold up the other pairs'.
                held.add(row.pair_id)
                await self._defer(row, type(exc).__name__)
        return done

    async def _defer(self, row: OutboundEmail, error: str) -> None:
        loop = asyncio.get_running_loop()
        attempts = self._attempts.get(row.event_id, 0)
        delay = BACKOFF[min(attempts, len(BACKOFF) - 1)]
        self._attempts[row.event_id] = attempts + 1
        self._not_before[row.event_id] = loop.time() + delay
        self.retries += 1
        await outmail.note_attempt(self.db, row.event_id, error)
        log.info(
            "outbound e-mail deferred",
            extra={"pair_id": row.pair_id, "kind": row.kind, "error": error, "in_s": delay},
        )

    async def send(self, row: OutboundEmail) -> bool:
        """Send one queued mail; True when it went now. Raises MailError to be retried."""
        try:
            record = await pairs.get(self.db, row.pair_id)
            if record is None or record.status is not PairStatus.ACTIVE:
                raise _GiveUp(OutmailStatus.WITHHELD, "pair_inactive")
            to = pairs.open_patient_email(self.sealer, record)
            if not to:
                raise _GiveUp(OutmailStatus.WITHHELD, "no_address")
            consent = await outmail.get_consent(self.db, row.pair_id)
            if row.kind in email_out.ASKING_KINDS:
                if consent is None or consent.state != email_out.ASKED:
                    raise _GiveUp(OutmailStatus.WITHHELD, "not_asked")
            elif consent is None or not email_out.may_send(
                consent.state, consent.address_sha256, to
            ):
                raise _GiveUp(OutmailStatus.WITHHELD, "no_consent")
            mail, body = await self._build(row, record, to)
        except _GiveUp as stop:
            await self._give_up(row, stop.status, stop.reason)
            return False
        if not await outmail.claim(self.db, row.event_id, to_ms(self.clock()), LEASE_MS):
            return False
        # Its own return path: a delivery report can only be about the mail it names.
        token = await outmail.bounce_token(self.db, row.event_id, secrets.token_hex(16))
        if token is None:
            return False
        return_path = inbox.bounce_address(token, self.domain)
        key = await outmail.get_key(self.db, self.sealer, row.pair_id)
        if key is None and self.require_encryption:
            await self._give_up(row, OutmailStatus.WITHHELD, "no_key")
            return False
        if key is not None:
            # Her key is on file: the body leaves encrypted to it, whatever kind of mail.
            raw = encrypt_mime(
                compose(mail), PublicKey(key.fingerprint, key.cert), signer=self.practice_key
            )
        else:
            raw = mail_bytes(compose(mail))
        if self.dkim is not None:
            raw = dkim_sign(
                raw,
                selector=self.dkim.selector,
                domain=self.dkim.domain,
                private_key=self.dkim.private_key,
            )
        await self.mailer.send_raw(
            raw, sender=return_path, recipients=[mail.to], kind=f"email_{row.kind}"
        )
        now = self.clock()
        async with self.db.transaction() as tx:
            if not await outmail.mark_sent(tx, row.event_id, to_ms(now)):
                return False
            media_ref = await self.audit.store_media(tx, raw, now)
            entry = email_out.sent(
                row.pair_id,
                row.event_id,
                kind=row.kind,
                recipient=mail.to,
                message_id=mail.message_id,
                in_reply_to=mail.in_reply_to,
                size=len(raw),
                text_bytes=len(body.encode("utf-8")),
                body=body,
                subject=mail.subject,
                media_ref=media_ref,
                key_fingerprint=None if key is None else key.fingerprint,
            )
            await self.audit.append(tx, entry, now)
        self._attempts.pop(row.event_id, None)
        self._not_before.pop(row.event_id, None)
        self.sent += 1
        log.info(
            "outbound e-mail sent",
            extra={
                "pair_id": row.pair_id,
                "kind": row.kind,
                "bytes": len(raw),
                "encrypted": key is not None,
            },
        )
        return True

    async def _give_up(self, row: OutboundEmail, status: OutmailStatus, reason: str) -> None:
        now = self.clock()
        async with self.db.transaction() as tx:
            if not await outmail.mark_given_up(tx, row.event_id, status, reason):
                return
            if status is OutmailStatus.WITHHELD:
                entry = email_out.withheld(row.pair_id, row.event_id, row.kind, reason)
            else:
                entry = email_out.failed(row.pair_id, row.event_id, row.kind, reason)
            await self.audit.append(tx, entry, now)
        self._attempts.pop(row.event_id, None)
        self._not_before.pop(row.event_id, None)
        log.info(
            "outbound e-mail not sent",
            extra={"pair_id": row.pair_id, "kind": row.kind, "reason": reason},
        )

    # ------------------------------------------------------------ building

    async def _build(
        self, row: OutboundEmail, record: PairRecord, to: str
    ) -> tuple[OutgoingMail, str]:
        """The mail for `row` to the patient's address `to`, and its text as the audit keeps it."""
        base: dict[str, Any] = {"practice_name": self.practice_name}
        address = f"pair-{record.email_token}@{self.domain}"
        if row.kind in email_out.ASKING_KINDS:
            # The welcome of an e-mail pair asks as the consent e-mail does, and says more.
            name = "email_welcome" if row.kind == email_out.WELCOME else "email_consent"
            context = {**base, **self.terms_context(), "crisis_line": self.crisis_line}
            text = self.renderer.page(f"email/{name}.txt.j2", context).strip()
            subject = self.renderer.page(f"email/{name}.subject.txt.j2", context).strip()
            mail = OutgoingMail(
                from_name=self.practice_name,
                from_address=address,
                to=to,
                subject=subject,
                message_id=row.message_id,
                text=text,
                auto_submitted=True,
                attachments=self._practice_key_attachment(),
            )
            return mail, text
        content = await self.event_content(row.event_id)
        if content is None:
            raise _GiveUp(OutmailStatus.FAILED, "content_gone")
        said = matrix_text(content)
        footer = self.renderer.page("email/reply_footer.txt.j2", base).strip()
        last = await outmail.last_inbound(self.db, record.pair_id)
        in_reply_to = last.message_id if last is not None else None
        text, html = said.text, said.html
        attachments: tuple[MailAttachment, ...] = ()
        if row.kind == email_out.ATTACHMENT:
            attached = await self._attachment(content)
            attachments = (attached,)
            context = {**base, "filename": attached.filename, "voice": _is_voice(content)}
            text = self.renderer.page("email/attachment.txt.j2", context).strip()
            html = None
        if row.kind == email_out.CORRECTION:
            intro = self.renderer.page("email/correction.txt.j2", base).strip()
            original = _edited_event(content)
            earlier = None if original is None else await outmail.sent_message_id(self.db, original)
            in_reply_to = earlier or in_reply_to
            text = f"{intro}\n\n{text}"
            if html is not None:
                html = f"<p><em>{intro}</em></p>\n{html}"
        subject = await self._subject(last, base)
        references = await outmail.thread_ids(self.db, record.pair_id)
        # Her client shows the HTML part: the sender's formatting, sanitised, or else the
        # escaped text; the footer set apart under it either way.
        body_html = html if html is not None else plain_to_html(text)
        mail = OutgoingMail(
            from_name=self.practice_name,
            from_address=address,
            to=to,
            subject=subject,
            message_id=row.message_id,
            text=f"{text}\n\n-- \n{footer}",
            html=f"{body_html}\n{footer_html(footer)}",
            in_reply_to=in_reply_to,
            references=references,
            attachments=attachments,
        )
        return mail, text

    def _practice_key_attachment(self) -> tuple[MailAttachment, ...]:
        """The practice's public key, with the mails that ask for consent: her client can
        encrypt her mail to it (RFC 3156 section 7's application/pgp-keys)."""
        if self.practice_key is None:
            return ()
        public = self.practice_key.public
        return (MailAttachment(PRACTICE_KEY_FILENAME, "application/pgp-keys", public.armored),)

    async def _attachment(self, content: dict[str, Any]) -> MailAttachment:
        """The room message's file, decrypted, as it was posted."""
        file_obj = content.get("file")
        if not isinstance(file_obj, dict) or not isinstance(file_obj.get("url"), str):
            # Pair rooms are encrypted: a file that is not is not one a member posted there.
            raise _GiveUp(OutmailStatus.FAILED, "no_encrypted_file")
        info = content.get("info")
        info = info if isinstance(info, dict) else {}
        size = info.get("size")
        if isinstance(size, int) and size > email_out.MAX_ATTACHMENT_BYTES:
            raise _GiveUp(OutmailStatus.WITHHELD, "too_large")
        try:
            data = await self.downloader.download_decrypted(file_obj)
        except (KeyError, TypeError, ValueError) as exc:
            raise _GiveUp(OutmailStatus.FAILED, "undecryptable_file") from exc
        except Exception as exc:
            # The homeserver is out of reach: try again later, as for the relay.
            raise MailError(f"the attachment could not be fetched: {type(exc).__name__}") from exc
        if len(data) > email_out.MAX_ATTACHMENT_BYTES:
            raise _GiveUp(OutmailStatus.WITHHELD, "too_large")
        mimetype = str(info.get("mimetype") or file_obj.get("mimetype") or "")
        filename = str(content.get("filename") or content.get("body") or "attachment")
        return MailAttachment(filename[:200], mimetype or "application/octet-stream", data)

    async def _subject(self, last: outmail.LastInbound | None, base: dict[str, Any]) -> str:
        """Her latest subject after "Re: ", so her client threads it; else the template's."""
        if last is not None:
            item = await inbox.get(self.db, last.email_id)
            if item is not None:
                try:
                    subject = parse_message(inbox.open_raw(self.sealer, item)).subject
                except (SealError, MalformedEmail):
                    subject = ""
                if subject:
                    return subject if subject.lower().startswith("re:") else f"Re: {subject}"
        return self.renderer.page("email/reply.subject.txt.j2", base).strip()

    async def event_content(self, event_id: str) -> dict[str, Any] | None:
        """The decrypted content of the room event, from its sealed audit entry."""
        seq = await audit_store.first_room_entry(self.db, event_id)
        if seq is None:
            return None
        raw = await self.audit.load_content(self.db, seq)
        if raw is None:
            return None
        value = json.loads(raw)
        return value if isinstance(value, dict) else None


def _is_voice(content: dict[str, Any]) -> bool:
    return "org.matrix.msc3245.voice" in content


def _edited_event(content: dict[str, Any]) -> str | None:
    relates = content.get("m.relates_to")
    if isinstance(relates, dict) and relates.get("rel_type") == "m.replace":
        target = relates.get("event_id")
        return target if isinstance(target, str) else None
    return None
