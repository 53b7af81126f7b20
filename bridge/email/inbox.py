"""The e-mail channel's inbox: what the listener hands over, routing, acceptance, txn ids.

`make_pair_routing` and `make_inbox_accept` build the SMTP adapter's callbacks: a recipient
is routed to an active pair, and `accept` commits the message to the inbox
(`bridge.store.inbox.store_inbound`, sealed) before the listener answers 250. The relay
worker posts each pending message through the outbox with `relay_txn_id(email_id)` as its
txn id and marks it relayed in the same transaction, so a crash anywhere posts the e-mail
exactly once. The inbox rows and their functions live in `bridge.store.inbox`; they are
re-exported here for the e-mail channel.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bridge.email.authcheck import AuthResult
from bridge.store import pairs
from bridge.store.base import ContentSealer, Executor
from bridge.store.inbox import (
    InboundEmail,
    InboxStatus,
    failed,
    get,
    mark_failed,
    mark_relayed,
    open_raw,
    pending,
    relayed_posts_waiting,
    reply_target,
    requeue_failed,
    status_counts,
    store_inbound,
)

__all__ = [
    "ContentSealer",
    "InboundEmail",
    "InboundFacts",
    "InboxStatus",
    "bounce_address",
    "bounce_token",
    "failed",
    "get",
    "inbound_token",
    "make_inbox_accept",
    "make_pair_routing",
    "mark_failed",
    "mark_relayed",
    "open_raw",
    "pending",
    "relay_txn_id",
    "relayed_posts_waiting",
    "reply_target",
    "requeue_failed",
    "status_counts",
    "store_inbound",
    "synthetic_message_id",
]


@dataclass(frozen=True, slots=True)
class InboundFacts:
    """What the listener learnt about an accepted message (kept apart from its content)."""

    from_address: str
    display_name: str
    #: The Message-ID, or a stable one derived from the bytes when it had none.
    message_id: str
    message_id_synthetic: bool
    subject: str
    mail_from: str
    rcpt_to: tuple[str, ...]
    client_ip: str
    helo: str
    tls: bool
    #: True when the client logged in with SMTP AUTH (the trusted upstream MTA).
    authenticated_client: bool
    auth: AuthResult
    size: int
    #: Short digest of the raw bytes, for log lines that must not carry content.
    digest: str


def synthetic_message_id(raw: bytes) -> str:
    """A stable Message-ID for a message that has none, so redeliveries still match."""
    return f"<sha256.{hashlib.sha256(raw).hexdigest()}@confidant.invalid>"


def relay_txn_id(email_id: str) -> str:
    """The outbox txn id of the post relaying this e-mail (stable across crashes)."""
    return f"email.{email_id}"


def inbound_token(address: str, inbound_domain: str) -> str | None:
    """The pair token of `pair-TOKEN@inbound_domain` (any case), or None for other addresses."""
    local, _, domain = address.strip().lower().rpartition("@")
    if domain.rstrip(".") != inbound_domain.lower().rstrip(".") or not local.startswith("pair-"):
        return None
    token = local.removeprefix("pair-")
    return token if token.isalnum() else None


#: The local part of a return path starts with this; the rest is the mail's bounce token.
BOUNCE_PREFIX = "bounce+"
#: Bounce tokens are 32 lower-case hex digits (128 random bits, `secrets.token_hex(16)`).
_BOUNCE_TOKEN = re.compile(r"[0-9a-f]{32}")


def bounce_address(token: str, inbound_domain: str) -> str:
    """The return path (envelope sender) of the outbound mail with this bounce token: where
    delivery reports about it come back, VERP-style (`bounce+TOKEN@` the inbound domain)."""
    return f"{BOUNCE_PREFIX}{token}@{inbound_domain}"


def bounce_token(address: str, inbound_domain: str) -> str | None:
    """The token of `bounce+TOKEN@inbound_domain` (any case), or None for other addresses.

    Only the form is checked here: whether a mail has that token is the store's to say."""
    local, _, domain = address.strip().lower().rpartition("@")
    if domain.rstrip(".") != inbound_domain.lower().rstrip(".") or not local.startswith(
        BOUNCE_PREFIX
    ):
        return None
    token = local.removeprefix(BOUNCE_PREFIX)
    return token if _BOUNCE_TOKEN.fullmatch(token) else None


def make_pair_routing(
    ex: Executor, sealer: ContentSealer, inbound_domain: str
) -> tuple[Callable[[str], Awaitable[str | None]], Callable[[str], Awaitable[list[str]]]]:
    """Build the SMTP adapter's `resolve_recipient` and `allowed_senders` from the pairs table.

    Only active pairs take mail; the allowed sender is the pair's patient e-mail address.
    """

    async def resolve_recipient(address: str) -> str | None:
        token = inbound_token(address, inbound_domain)
        if token is None:
            return None
        pair = await pairs.get_by_email_token(ex, token)
        if pair is None or pair.status is not pairs.PairStatus.ACTIVE:
            return None
        return pair.pair_id

    async def allowed_senders(pair_id: str) -> list[str]:
        pair = await pairs.get(ex, pair_id)
        address = None if pair is None else pairs.open_patient_email(sealer, pair)
        return [address] if address else []

    return resolve_recipient, allowed_senders


def make_inbox_accept(
    ex: Executor,
    sealer: ContentSealer,
    clock: Callable[[], int],
    on_stored: Callable[[str, str, bool], Awaitable[None]] | None = None,
) -> Callable[[str, bytes, InboundFacts], Awaitable[None]]:
    """Build the SMTP adapter's `accept`: store durably, then tell `on_stored`.

    `clock` returns milliseconds since the epoch. `on_stored(pair_id, email_id,
    is_duplicate)` runs after the commit (e.g. to wake the relay worker); if it
    raises, the sender is told to retry, and the retry is recorded once.
    """

    async def accept(pair_id: str, raw: bytes, facts: InboundFacts) -> None:
        email_id, duplicate = await store_inbound(
            ex,
            sealer,
            pair_id,
            facts.from_address,
            facts.message_id,
            raw,
            clock(),
            auth_method=facts.auth.method,
        )
        if on_stored is not None:
            await on_stored(pair_id, email_id, duplicate)

    return accept
