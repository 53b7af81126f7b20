"""The patient's OpenPGP public key put on file (the command line, or a key file she posts
in the pair room: `RoomKeyImport`): checked, sealed, audited with its fingerprint; mail to
her is encrypted to it from then on. And her PGP/MIME mail opened with the practice's key
before it is converted (`InboundDecryptor`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from bridge.adapters.render import Renderer
from bridge.core import email_out
from bridge.core.model import AppendAudit, SendMessage
from bridge.email.openpgp import (
    KeyProblem,
    PracticeKey,
    PublicKey,
    decrypt_mime,
    is_pgp_mime,
    read_public_key,
)
from bridge.outbox import enqueue_message
from bridge.store import outmail
from bridge.store.base import ContentSealer, Database, Executor, to_ms

__all__ = ["put_patient_key"]


class AuditAppend(Protocol):
    async def append(self, tx: Executor, effect: AppendAudit, now: datetime) -> Any: ...


async def put_patient_key(
    db: Database,
    sealer: ContentSealer,
    audit: AuditAppend,
    pair_id: str,
    data: bytes,
    now: datetime,
    *,
    actor: str = "admin",
) -> PublicKey:
    """Keep `data` as the pair's patient key; raises `KeyProblem` when it cannot be used."""
    key = read_public_key(data)
    async with db.transaction() as tx:
        await outmail.set_key(tx, sealer, pair_id, key.fingerprint, key.armored, to_ms(now))
        await audit.append(tx, email_out.key_added(pair_id, actor, key.fingerprint), now)
    return key


class InboundDecryptor:
    """Opens her PGP/MIME mail with the practice's key, checking its signature against her
    key on file; what it returns is what the relay converts and posts (the audit keeps the
    mail as it came)."""

    def __init__(self, db: Database, sealer: ContentSealer, practice: PracticeKey) -> None:
        self.db = db
        self.sealer = sealer
        self.practice = practice

    async def __call__(self, pair_id: str, raw: bytes) -> tuple[bytes, str | None]:
        """(the message to convert, its OpenPGP status or None when it was not PGP/MIME)."""
        if not is_pgp_mime(raw):
            return raw, None
        kept = await outmail.get_key(self.db, self.sealer, pair_id)
        sender = None if kept is None else PublicKey(kept.fingerprint, kept.cert)
        return decrypt_mime(raw, self.practice, sender)


#: How a key file posted in the room is recognised (before its bytes are fetched).
KEY_MIMETYPES = frozenset({"application/pgp-keys", "application/pgp-key"})
KEY_SUFFIXES = (".asc", ".gpg", ".pgp", ".key")


def looks_like_key(content: dict[str, Any]) -> bool:
    """A posted file that may be an OpenPGP key: its type or its name says so."""
    if content.get("msgtype") != "m.file":
        return False
    info = content.get("info")
    mimetype = str(info.get("mimetype", "")).lower() if isinstance(info, dict) else ""
    name = str(content.get("filename") or content.get("body") or "").lower()
    return mimetype in KEY_MIMETYPES or name.endswith(KEY_SUFFIXES)


class Downloader(Protocol):
    async def download_decrypted(self, file_obj: dict[str, Any]) -> bytes: ...


class RoomKeyImport:
    """Her key posted as a file in the pair room: put on file, and its fingerprint posted
    back into the room for both to compare (or why it was refused)."""

    def __init__(
        self,
        *,
        db: Database,
        sealer: ContentSealer,
        audit: AuditAppend,
        renderer: Renderer,
        downloader: Downloader,
        wake_outbox: Callable[[], None],
        clock: Callable[[], datetime],
    ) -> None:
        self.db = db
        self.sealer = sealer
        self.audit = audit
        self.renderer = renderer
        self.downloader = downloader
        self.wake_outbox = wake_outbox
        self.clock = clock

    async def __call__(
        self, pair_id: str, room_id: str, event_id: str, actor: str, content: dict[str, Any]
    ) -> PublicKey | None:
        file_obj = content.get("file")
        if not looks_like_key(content) or not isinstance(file_obj, dict):
            return None
        key: PublicKey | None = None
        reason = ""
        try:
            key = read_public_key(await self.downloader.download_decrypted(file_obj))
        except KeyProblem as err:
            reason = err.code
        now = self.clock()
        notice = SendMessage(
            room_id=room_id,
            template="email_key_added" if key is not None else "email_key_refused",
            context={"fingerprint": key.spaced} if key is not None else {"reason": reason},
            txn_id=f"email-key.{event_id}",
            pair_id=pair_id,
        )
        async with self.db.transaction() as tx:
            if key is not None:
                await outmail.set_key(
                    tx, self.sealer, pair_id, key.fingerprint, key.armored, to_ms(now)
                )
                await self.audit.append(
                    tx, email_out.key_added(pair_id, actor, key.fingerprint), now
                )
            await enqueue_message(tx, self.renderer, self.sealer, notice, now)
        self.wake_outbox()
        return key
