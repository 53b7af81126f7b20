"""The patient's OpenPGP public key put on file (the command line, the tests): checked,
sealed, audited with its fingerprint; mail to her is encrypted to it from then on. And her
PGP/MIME mail opened with the practice's key before it is converted (`InboundDecryptor`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from bridge.core import email_out
from bridge.core.model import AppendAudit
from bridge.email.openpgp import (
    PracticeKey,
    PublicKey,
    decrypt_mime,
    is_pgp_mime,
    read_public_key,
)
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
