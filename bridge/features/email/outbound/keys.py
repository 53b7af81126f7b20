"""The patient's OpenPGP public key put on file (the command line, the tests): checked,
sealed, audited with its fingerprint; mail to her is encrypted to it from then on."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from bridge.core import email_out
from bridge.core.model import AppendAudit
from bridge.email.openpgp import PublicKey, read_public_key
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
