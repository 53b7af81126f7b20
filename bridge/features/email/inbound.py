"""The e-mail channel's converter: an accepted e-mail, converted and its attachments
uploaded, as the core's inbound message (`bridge.core.inbound`).

The mail library (`bridge.email`) parses, authenticates, converts and sanitises; this
module only says what of it the pair room, the audit and the reply clock get.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.core.audit import sha256_hex
from bridge.core.inbound import InboundAttachment, InboundMessage, Media
from bridge.core.model import Kind, Role
from bridge.email import inbox
from bridge.email.convert import ConvertedEmail
from bridge.store.base import from_ms

#: The channel's name: the audit's "relay.email", the outbox rows' kinds.
CHANNEL = "email"
#: How the audit names the sealed original.
ORIGINAL_FILENAME = "original.eml"
ORIGINAL_MIMETYPE = "message/rfc822"


def inbound_message(
    item: inbox.InboundEmail,
    address: str,
    raw: bytes,
    converted: ConvertedEmail,
    post: dict[str, Any],
    attachments: Sequence[InboundAttachment],
    *,
    automatic: bool = False,
    openpgp: str | None = None,
) -> InboundMessage:
    """The e-mail `item` to the pair's `address` as one inbound message of its patient.

    Only the pair's patient address gets through the listener, so the sender is the
    patient; the message's time is its acceptance, its txn id the inbox's `relay_txn_id`.
    An `automatic` mail (an auto-reply from her address) is posted too, but as something
    other than her writing: it opens no reply clock. `openpgp` says what became of a PGP/MIME
    mail (`bridge.email.openpgp`: signed, unsigned, undecryptable); `raw` is kept as it came.
    """
    return InboundMessage(
        channel=CHANNEL,
        pair_id=item.pair_id,
        role=Role.PATIENT,
        origin_ts=from_ms(item.received_at),
        content_sha256=sha256_hex(raw),
        kind=Kind.OTHER if automatic else Kind.EMAIL,
        txn_id=inbox.relay_txn_id(item.id),
        post=post,
        original=Media(ORIGINAL_FILENAME, ORIGINAL_MIMETYPE, raw),
        attachments=tuple(attachments),
        details={
            "email_id": item.id,
            "auth": item.auth_method,
            "dropped_attachments": converted.dropped_attachments,
            "automatic": automatic,
            **({} if openpgp is None else {"openpgp": openpgp}),
        },
        record={
            "subject": converted.subject,
            "message_id": item.message_id,
            "from": converted.from_address,
            "to": address,
        },
    )
