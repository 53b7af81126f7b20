"""Bounces of the mail sent to patients: delivery reports (RFC 3464) tied to their mail.

Every mail to a patient leaves with its own return path, `bounce+TOKEN@` the inbound domain
(the worker gives the row a random token when it first sends it). A report is believed
only for the mail whose token its return path carries: the listener resolves the address
here (`resolve`), and an address with no such token is refused like any unknown one. What
the report says is then decided by the core (`bridge.core.email_out.delivery_reported`):
a failure marks the mail bounced, is audited with the report sealed, and the pair room is
told; a delay is recorded and audited only. All of it is one transaction, committed before
the reporting server gets `250`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from bridge.adapters.render import Renderer
from bridge.adapters.smtp import BounceRoute
from bridge.core import email_out
from bridge.core.model import AppendAudit, SendMessage
from bridge.email.dsn import DELAYED, FAILED, DeliveryReport
from bridge.email.inbox import bounce_token
from bridge.outbox import enqueue_message
from bridge.store import outmail, pairs
from bridge.store.base import ContentSealer, Database, Executor, from_ms, to_ms
from bridge.store.outmail import Delivery
from bridge.store.pairs import PairStatus

__all__ = ["BounceDesk"]

log = logging.getLogger(__name__)

#: What each recorded report action does to the row.
_DELIVERY = {FAILED: Delivery.BOUNCED, DELAYED: Delivery.DELAYED}


class AuditLog(Protocol):
    async def append(self, tx: Executor, effect: AppendAudit, now: datetime) -> Any: ...

    async def store_media(self, tx: Executor, data: bytes, now: datetime) -> str: ...


class BounceDesk:
    """The listener's `resolve_bounce` and `on_report` for the mail sent to patients."""

    def __init__(
        self,
        *,
        db: Database,
        sealer: ContentSealer,
        audit: AuditLog,
        renderer: Renderer,
        clock: Callable[[], datetime],
        inbound_domain: str,
        timezone: str,
        wake_outbox: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.sealer = sealer
        self.audit = audit
        self.renderer = renderer
        self.clock = clock
        self.domain = inbound_domain
        self.timezone = timezone
        self.wake_outbox = wake_outbox

    async def resolve(self, address: str) -> BounceRoute | None:
        """The mail whose return path `address` is; None for other addresses, and for a
        return path whose token no mail has (the listener then refuses it as unknown)."""
        token = bounce_token(address, self.domain)
        if token is None:
            return None
        row = await outmail.by_bounce_token(self.db, token)
        if row is None:
            log.info("bounce address with an unknown token refused")
            return None
        return BounceRoute(pair_id=row.pair_id, mail_id=row.event_id)

    async def record(
        self, route: BounceRoute, report: DeliveryReport, raw: bytes, digest: str
    ) -> None:
        """Commit what the report says about the route's mail; raises when it cannot."""
        worst = report.worst
        delivery = _DELIVERY.get(worst.action)
        if delivery is None:
            # Delivered, relayed, expanded: good news nobody asked for (no NOTIFY=SUCCESS).
            return
        now = self.clock()
        posted = False
        async with self.db.transaction() as tx:
            row = await outmail.get(tx, route.mail_id)
            if row is None:
                return
            if report.message_id is not None and not _same_id(report.message_id, row.message_id):
                # Its return path is this mail's, but what it returns is another message:
                # not believed (taken, so that the sender does not try again).
                log.info(
                    "delivery report for another message ignored",
                    extra={"pair_id": row.pair_id, "digest": digest},
                )
                return
            if not await outmail.note_delivery(
                tx, row.event_id, delivery, worst.status, to_ms(now)
            ):
                return
            record = await pairs.get(tx, row.pair_id)
            room_id = (
                record.room_id
                if record is not None and record.status is PairStatus.ACTIVE and record.room_id
                else None
            )
            facts = email_out.DeliveryReportFacts(
                pair_id=row.pair_id,
                event_id=row.event_id,
                kind=row.kind,
                message_id=row.message_id,
                action=worst.action,
                status=worst.status,
                sent_at=from_ms(row.sent_at if row.sent_at is not None else row.created_at),
                room_id=room_id,
                timezone=self.timezone,
                media_ref=await self.audit.store_media(tx, raw, now),
                recipient=worst.final_recipient,
                diagnostic=worst.diagnostic,
            )
            for effect in email_out.delivery_reported(facts):
                if isinstance(effect, AppendAudit):
                    await self.audit.append(tx, effect, now)
                elif isinstance(effect, SendMessage):
                    posted = await enqueue_message(tx, self.renderer, self.sealer, effect, now)
        log.info(
            "delivery report recorded",
            extra={
                "pair_id": route.pair_id,
                "kind": row.kind,
                "delivery": delivery.value,
                "status": worst.status,
                "notice": posted,
            },
        )
        if posted and self.wake_outbox is not None:
            self.wake_outbox()


def _same_id(returned: str, ours: str) -> bool:
    def bare(value: str) -> str:
        return value.strip().strip("<>").strip().lower()

    return bare(returned) == bare(ours)
