"""E-mail the patient "you have a new secure message" when a therapist's reply stays unread.

Off by default (`outbound_email.notify_unread_after`). Each therapist message re-arms one
timer per pair; when it fires and the patient has not read the room since that message
(read receipts, or a message of their own), one e-mail goes out with the practice name
and the web client link only: never the message, never the therapist's name.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bridge import hooks
from bridge.core import email_out
from bridge.core import unread as core
from bridge.core.model import (
    CONVERSATIONAL_KINDS,
    MATRIX,
    Effect,
    Pair,
    Role,
    RoomEvent,
    ScheduleTimer,
    TimerFired,
)
from bridge.service import receipt_key, record_patient_read
from bridge.store import outmail, pairs, syncstate
from bridge.store.base import ContentSealer, Executor, to_ms
from bridge.store.pairs import PairStatus

if TYPE_CHECKING:
    from bridge.config import Config
    from bridge.host import Host

log = logging.getLogger(__name__)

TIMER_KIND = "unread"


def timer_id(pair_id: str) -> str:
    return f"{TIMER_KIND}:{pair_id}"


def reply_key(pair_id: str) -> str:
    """The kv key holding the origin time (ms) of the therapist's latest message."""
    return f"unread_reply:{pair_id}"


class UnreadNotice:
    """The pair hook and timer handler of the feature."""

    def __init__(self, cfg: Config, sealer: ContentSealer) -> None:
        self.sealer = sealer
        self.after: timedelta | None = cfg.outbound_email.notify_unread_after
        self.enabled = cfg.outbound_email.enabled and self.after is not None
        self.practice_name = cfg.practice.name
        self.web_client_url = cfg.practice.web_client_url

    @hooks.pair_hook
    async def on_pair_event(self, tx: Executor, pair: Pair, ev: RoomEvent) -> list[Effect]:
        if not self.enabled or ev.kind not in CONVERSATIONAL_KINDS:
            return []
        if ev.channel != MATRIX:
            # Only what happens in the room tells whether it was read: a patient's e-mail
            # says nothing about the therapist's reply waiting there.
            return []
        if ev.role is Role.PATIENT:
            # Writing in the room means the patient has seen it.
            await record_patient_read(tx, pair.pair_id, to_ms(ev.origin_ts))
            return []
        if ev.role is not Role.THERAPIST or pair.status != PairStatus.ACTIVE.value:
            return []
        record = await pairs.get(tx, pair.pair_id)
        if record is None or not pairs.open_patient_email(self.sealer, record):
            return []
        assert self.after is not None
        await syncstate.set_kv(tx, reply_key(pair.pair_id), str(to_ms(ev.origin_ts)))
        return [
            ScheduleTimer(
                timer_id=timer_id(pair.pair_id),
                timer_kind=TIMER_KIND,
                at=ev.seen_at + self.after,
                pair_id=pair.pair_id,
            )
        ]

    @hooks.on_timer(TIMER_KIND)
    async def on_timer(self, tx: Executor, fired: TimerFired, now: datetime) -> list[Effect]:
        if not self.enabled or fired.pair_id is None:
            return []
        record = await pairs.get(tx, fired.pair_id)
        if record is None or record.status is not PairStatus.ACTIVE:
            return []
        patient_email = pairs.open_patient_email(self.sealer, record)
        if not patient_email:
            return []
        consent = await outmail.get_consent(tx, fired.pair_id)
        if consent is not None and consent.state == email_out.GIVEN:
            # She gets the therapist's answers by e-mail: a "new message" note would only
            # repeat what is already in her mailbox.
            log.info("answers go by e-mail, no notice", extra={"pair_id": fired.pair_id})
            return []
        reply = await syncstate.get_kv(tx, reply_key(fired.pair_id))
        read = await syncstate.get_kv(tx, receipt_key(fired.pair_id))
        effects = core.unread_notice(
            fired.pair_id,
            patient_email,
            reply_ms=None if reply is None else int(reply),
            read_ms=None if read is None else int(read),
            practice_name=self.practice_name,
            web_client_url=self.web_client_url,
        )
        if effects:
            log.info("unread notice", extra={"pair_id": fired.pair_id})
        else:
            log.info("reply read, no notice", extra={"pair_id": fired.pair_id})
        return effects


async def install_unread_notice(app: Host) -> None:
    """Install the unread-notice hook and timer handler (idle unless configured)."""
    if app.service.handles_timer(TIMER_KIND):
        return
    feature = UnreadNotice(app.cfg, app.parts.sealer)
    # Installed when off too, so timers armed before a config change expire quietly; the
    # pair hook then does nothing.
    app.service.install(feature)
    if feature.enabled and feature.after is not None:
        log.info("unread notice on", extra={"after_s": int(feature.after.total_seconds())})
