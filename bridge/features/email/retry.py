"""`confidant email retry ID`: a failed e-mail queued again, audited, for the relay worker."""

from __future__ import annotations

from datetime import datetime

from bridge.audit.log import AuditLog
from bridge.core.email_queue import email_requeued
from bridge.email import inbox
from bridge.store.base import Database


async def retry_email(db: Database, audit: AuditLog, email_id: str, at: datetime) -> bool:
    """Queue the failed e-mail `email_id` again (the running bridge relays it within a
    minute); False when there is no such e-mail or it has not failed."""
    async with db.transaction() as tx:
        item = await inbox.get(tx, email_id)
        if item is None or not await inbox.requeue_failed(tx, email_id):
            return False
        await audit.append(tx, email_requeued(item.pair_id, email_id, item.last_error), at)
    return True
