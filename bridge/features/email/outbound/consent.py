"""The patient's consent to the e-mail channel, applied to the store (inside a transaction).

The decisions are the core's (`bridge.core.email_out`, `bridge.core.email_commands`); here
they are written: the consent row, the consent e-mail's queue row, and for an answer by
e-mail (YES to the consent e-mail, STOP to any) or the admin API the audit entry, since
those come through the relay or the API rather than through a command.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from bridge.core import email_out
from bridge.core.email_commands import EmailChannelFacts
from bridge.core.model import AppendAudit
from bridge.store import outmail, pairs
from bridge.store.base import ContentSealer, Database, Executor, to_ms
from bridge.store.pairs import PairRecord

log = logging.getLogger(__name__)


class AuditAppend(Protocol):
    async def append(self, tx: Executor, effect: AppendAudit, now: datetime) -> Any: ...


async def apply_transition(
    tx: Executor,
    pair_id: str,
    new_state: str,
    facts: EmailChannelFacts,
    *,
    event_id: str,
    now: datetime,
) -> bool:
    """Write what `!email on|off|ask` decided; True when a mail was queued (the ask)."""
    at = to_ms(now)
    if new_state == email_out.GIVEN:
        assert facts.address is not None
        await outmail.set_consent(
            tx,
            pair_id,
            email_out.GIVEN,
            at,
            address_sha256=email_out.address_digest(facts.address),
            text_sha256=facts.text_sha256,
        )
    elif new_state == email_out.REVOKED:
        await outmail.set_consent(tx, pair_id, email_out.REVOKED, at)
    elif new_state == email_out.ASKED:
        message_id = email_out.message_id_for(event_id, facts.domain)
        await outmail.set_consent(
            tx,
            pair_id,
            email_out.ASKED,
            at,
            text_sha256=facts.text_sha256,
            ask_message_id=message_id,
        )
        return await outmail.queue(
            tx,
            event_id=event_id,
            pair_id=pair_id,
            kind=email_out.CONSENT,
            message_id=message_id,
            now=at,
        )
    log.info("e-mail consent changed", extra={"pair_id": pair_id, "state": new_state})
    return False


async def answer_by_email(
    tx: Executor,
    sealer: ContentSealer,
    audit: AuditAppend,
    record: PairRecord,
    text: str,
    *,
    in_reply_to: str | None,
    references: Sequence[str],
    now: datetime,
) -> str | None:
    """Her e-mail answers the channel's consent: YES to the consent e-mail gives it (for the
    text that e-mail carried), STOP in any reply takes it back. Returns the new state."""
    word = email_out.reply_word(email_out.first_line(text))
    if word is None:
        return None
    address = pairs.open_patient_email(sealer, record)
    if not address:
        return None
    consent = await outmail.get_consent(tx, record.pair_id)
    if consent is None:
        return None
    at = to_ms(now)
    if word == email_out.REVOKED and consent.state in (email_out.GIVEN, email_out.ASKED):
        await outmail.set_consent(tx, record.pair_id, email_out.REVOKED, at)
        entry = email_out.consent_revoked(
            record.pair_id, record.patient_id, via="email", event_id=None
        )
    elif (
        word == email_out.GIVEN
        and consent.state == email_out.ASKED
        and consent.ask_message_id is not None
        and consent.ask_message_id in (in_reply_to, *references)
        and consent.text_sha256 is not None
    ):
        await outmail.set_consent(
            tx,
            record.pair_id,
            email_out.GIVEN,
            at,
            address_sha256=email_out.address_digest(address),
        )
        entry = email_out.consent_given(
            record.pair_id,
            record.patient_id,
            via="email",
            text_sha256=consent.text_sha256,
            address=address,
            event_id=None,
        )
    else:
        return None
    await audit.append(tx, entry, now)
    log.info("e-mail consent answered by e-mail", extra={"pair_id": record.pair_id, "state": word})
    return word


async def revoke(db: Database, audit: AuditAppend, pair_id: str, actor: str, now: datetime) -> bool:
    """Take the patient's consent to e-mail back (the admin API); False when none was
    given or asked. Mail queued before is withheld when its turn comes."""
    async with db.transaction() as tx:
        consent = await outmail.get_consent(tx, pair_id)
        if consent is None or consent.state not in (email_out.GIVEN, email_out.ASKED):
            return False
        await outmail.set_consent(tx, pair_id, email_out.REVOKED, to_ms(now))
        entry = email_out.consent_revoked(pair_id, actor, via="api", event_id=None)
        await audit.append(tx, entry, now)
    log.info("e-mail consent revoked", extra={"pair_id": pair_id, "via": "api"})
    return True
