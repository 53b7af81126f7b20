"""Outbound e-mail to patients: the durable queue of mails to send, and the patient's consent.

`queue` writes a row in the caller's transaction (the one that marks the room event
processed), keyed by the event id, so an event is sent on at most once however often it is
seen; the worker reads `pending`, sends, and `mark_sent`s. Rows carry ids, kinds and
states only; what a mail says is sealed in the audit.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from bridge.store.base import ContentSealer, Executor, Row, SqlParam
from bridge.store.rows import blob, integer, integer_or_none, text, text_or_none, to_int_or_none

#: Longest last_error kept; enough for an error class or a reason code.
MAX_ERROR_LENGTH = 200


class OutmailStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    #: Not sent, and never will be (consent withdrawn, the address changed, the pair ended).
    WITHHELD = "withheld"


class Delivery(enum.StrEnum):
    """What delivery status notifications said of a sent mail (`outbound_emails.delivery`)."""

    #: A server on the way is still trying.
    DELAYED = "delayed"
    #: It gave up: the mail did not reach her (final).
    BOUNCED = "bounced"


@dataclass(frozen=True, slots=True)
class OutboundEmail:
    event_id: str
    pair_id: str
    kind: str
    message_id: str
    status: OutmailStatus
    attempts: int
    created_at: int
    sent_at: int | None
    last_error: str | None
    #: What the reports said (None: none came), its RFC 3463 status code and when.
    delivery: Delivery | None = None
    delivery_status: str | None = None
    delivery_at: int | None = None


_COLUMNS = "event_id, pair_id, kind, message_id, status, attempts, created_at, sent_at, last_error"
_READ_COLUMNS = f"{_COLUMNS}, delivery, delivery_status, delivery_at"


def _item(row: Row) -> OutboundEmail:
    return OutboundEmail(
        event_id=text(row, "event_id"),
        pair_id=text(row, "pair_id"),
        kind=text(row, "kind"),
        message_id=text(row, "message_id"),
        status=OutmailStatus(text(row, "status")),
        attempts=integer(row, "attempts"),
        created_at=integer(row, "created_at"),
        sent_at=integer_or_none(row, "sent_at"),
        last_error=text_or_none(row, "last_error"),
        delivery=_delivery(text_or_none(row, "delivery")),
        delivery_status=text_or_none(row, "delivery_status"),
        delivery_at=integer_or_none(row, "delivery_at"),
    )


def _delivery(value: str | None) -> Delivery | None:
    return None if value is None else Delivery(value)


async def queue(
    ex: Executor, *, event_id: str, pair_id: str, kind: str, message_id: str, now: int
) -> bool:
    """Queue the mail for `event_id`; False when that event was queued before."""
    inserted = await ex.execute(
        f"INSERT INTO outbound_emails ({_COLUMNS}) "
        "VALUES (?, ?, ?, ?, 'pending', 0, ?, NULL, NULL) ON CONFLICT (event_id) DO NOTHING",
        event_id,
        pair_id,
        kind,
        message_id,
        now,
    )
    return inserted > 0


async def get(ex: Executor, event_id: str) -> OutboundEmail | None:
    row = await ex.fetchrow(
        f"SELECT {_READ_COLUMNS} FROM outbound_emails WHERE event_id = ?", event_id
    )
    return None if row is None else _item(row)


async def pending(ex: Executor, limit: int = 50) -> list[OutboundEmail]:
    """Mails waiting to be sent, oldest first (a pair's mails leave in their order)."""
    rows = await ex.fetch(
        f"SELECT {_READ_COLUMNS} FROM outbound_emails WHERE status = 'pending' "
        "ORDER BY created_at, event_id LIMIT ?",
        limit,
    )
    return [_item(row) for row in rows]


async def claim(ex: Executor, event_id: str, now: int, lease_ms: int) -> bool:
    """Hold a pending row for `lease_ms` while its mail is sent; False when it is sent,
    given up, or held by another worker whose lease has not run out."""
    changed = await ex.execute(
        "UPDATE outbound_emails SET claimed_until = ? WHERE event_id = ? AND status = 'pending' "
        "AND (claimed_until IS NULL OR claimed_until <= ?)",
        now + lease_ms,
        event_id,
        now,
    )
    return changed > 0


async def mark_sent(ex: Executor, event_id: str, now: int) -> bool:
    """The relay took the mail. False unless it was pending (another process sent it)."""
    changed = await ex.execute(
        "UPDATE outbound_emails SET status = 'sent', sent_at = ?, last_error = NULL, "
        "attempts = attempts + 1 WHERE event_id = ? AND status = 'pending'",
        now,
        event_id,
    )
    return changed > 0


async def mark_given_up(ex: Executor, event_id: str, status: OutmailStatus, reason: str) -> bool:
    """Stop trying (`failed` or `withheld`); False unless it was pending."""
    changed = await ex.execute(
        "UPDATE outbound_emails SET status = ?, last_error = ? "
        "WHERE event_id = ? AND status = 'pending'",
        OutmailStatus(status).value,
        reason[:MAX_ERROR_LENGTH],
        event_id,
    )
    return changed > 0


async def note_attempt(ex: Executor, event_id: str, error: str) -> None:
    """One more failed attempt (the row stays pending)."""
    await ex.execute(
        "UPDATE outbound_emails SET attempts = attempts + 1, last_error = ?, "
        "claimed_until = NULL WHERE event_id = ?",
        error[:MAX_ERROR_LENGTH],
        event_id,
    )


async def bounce_token(ex: Executor, event_id: str, fresh: str) -> str | None:
    """The token of the row's return path: `fresh` when it has none yet, else the one it
    was given before (a mail sent again after a crash keeps its return path). None when
    there is no such row."""
    await ex.execute(
        "UPDATE outbound_emails SET bounce_token = ? WHERE event_id = ? AND bounce_token IS NULL",
        fresh,
        event_id,
    )
    value = await ex.fetchval(
        "SELECT bounce_token FROM outbound_emails WHERE event_id = ?", event_id
    )
    return None if value is None else str(value)


async def by_bounce_token(ex: Executor, token: str) -> OutboundEmail | None:
    """The mail whose return path carries `token`, if any."""
    row = await ex.fetchrow(
        f"SELECT {_READ_COLUMNS} FROM outbound_emails WHERE bounce_token = ?", token
    )
    return None if row is None else _item(row)


async def note_delivery(
    ex: Executor, event_id: str, delivery: Delivery, status: str, now: int
) -> bool:
    """Record what a delivery report said; False when it changes nothing: the mail is
    bounced already (the same report again, or a delay reported after the failure), or
    the same delay is reported again."""
    if Delivery(delivery) is Delivery.BOUNCED:
        unchanged_unless = "(delivery IS NULL OR delivery <> 'bounced')"
        args: tuple[SqlParam, ...] = ()
    else:
        unchanged_unless = (
            "(delivery IS NULL OR (delivery = 'delayed' AND COALESCE(delivery_status, '') <> ?))"
        )
        args = (status[:MAX_ERROR_LENGTH],)
    changed = await ex.execute(
        "UPDATE outbound_emails SET delivery = ?, delivery_status = ?, delivery_at = ? "
        f"WHERE event_id = ? AND {unchanged_unless}",
        Delivery(delivery).value,
        status[:MAX_ERROR_LENGTH],
        now,
        event_id,
        *args,
    )
    return changed > 0


async def sent_message_id(ex: Executor, event_id: str) -> str | None:
    """The Message-ID of the mail that carried `event_id`, once it was sent."""
    value = await ex.fetchval(
        "SELECT message_id FROM outbound_emails WHERE event_id = ? AND status = 'sent'", event_id
    )
    return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class LastInbound:
    """The patient's latest e-mail to the pair: what a reply answers."""

    email_id: str
    message_id: str


async def last_inbound(ex: Executor, pair_id: str) -> LastInbound | None:
    """The pair's latest inbound e-mail that was taken (relayed or waiting to be)."""
    row = await ex.fetchrow(
        "SELECT id, message_id FROM inbound_emails WHERE pair_id = ? AND status <> 'failed' "
        "ORDER BY received_at DESC, id DESC LIMIT 1",
        pair_id,
    )
    return None if row is None else LastInbound(text(row, "id"), text(row, "message_id"))


async def thread_ids(ex: Executor, pair_id: str, limit: int = 10) -> list[str]:
    """The Message-IDs of the pair's conversation by e-mail, both ways, oldest first (the
    newest `limit`): what a new mail's References list."""
    rows = await ex.fetch(
        "SELECT message_id, at FROM ("
        " SELECT message_id, received_at AS at FROM inbound_emails"
        " WHERE pair_id = ? AND status <> 'failed'"
        " UNION ALL"
        " SELECT message_id, sent_at AS at FROM outbound_emails"
        " WHERE pair_id = ? AND status = 'sent'"
        ") AS t ORDER BY at DESC LIMIT ?",
        pair_id,
        pair_id,
        limit,
    )
    return [text(row, "message_id") for row in reversed(rows)]


async def status_counts(ex: Executor) -> dict[OutmailStatus, int]:
    rows = await ex.fetch("SELECT status, COUNT(*) AS n FROM outbound_emails GROUP BY status")
    counts = dict.fromkeys(OutmailStatus, 0)
    for row in rows:
        counts[OutmailStatus(text(row, "status"))] = integer(row, "n")
    return counts


# ---------------------------------------------------------------- consent


@dataclass(frozen=True, slots=True)
class EmailConsent:
    pair_id: str
    state: str
    address_sha256: str | None
    text_sha256: str | None
    ask_message_id: str | None
    changed_at: int


async def get_consent(ex: Executor, pair_id: str) -> EmailConsent | None:
    row = await ex.fetchrow(
        "SELECT pair_id, state, address_sha256, text_sha256, ask_message_id, changed_at "
        "FROM email_consent WHERE pair_id = ?",
        pair_id,
    )
    if row is None:
        return None
    return EmailConsent(
        pair_id=text(row, "pair_id"),
        state=text(row, "state"),
        address_sha256=text_or_none(row, "address_sha256"),
        text_sha256=text_or_none(row, "text_sha256"),
        ask_message_id=text_or_none(row, "ask_message_id"),
        changed_at=integer(row, "changed_at"),
    )


async def set_consent(
    ex: Executor,
    pair_id: str,
    state: str,
    now: int,
    *,
    address_sha256: str | None = None,
    text_sha256: str | None = None,
    ask_message_id: str | None = None,
) -> None:
    """Record the consent state; the digests and the ask's Message-ID are kept unless given."""
    await ex.execute(
        "INSERT INTO email_consent "
        "(pair_id, state, address_sha256, text_sha256, ask_message_id, changed_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (pair_id) DO UPDATE SET "
        "state = excluded.state, "
        "address_sha256 = COALESCE(excluded.address_sha256, email_consent.address_sha256), "
        "text_sha256 = COALESCE(excluded.text_sha256, email_consent.text_sha256), "
        "ask_message_id = COALESCE(excluded.ask_message_id, email_consent.ask_message_id), "
        "changed_at = excluded.changed_at",
        pair_id,
        state,
        address_sha256,
        text_sha256,
        ask_message_id,
        now,
    )


async def pending_count(ex: Executor) -> int:
    value = await ex.fetchval("SELECT COUNT(*) FROM outbound_emails WHERE status = 'pending'")
    return to_int_or_none(value) or 0


# ---------------------------------------------------------------- OpenPGP keys


def _key_aad(pair_id: str) -> bytes:
    # Bound to the pair: a sealed key moved to another pair's row does not open.
    return b"confidant/patient_key/" + pair_id.encode("utf-8")


@dataclass(frozen=True, slots=True)
class PatientKey:
    fingerprint: str
    cert: bytes = field(repr=False)
    added_at: int = 0


async def set_key(
    ex: Executor, sealer: ContentSealer, pair_id: str, fingerprint: str, cert: bytes, now: int
) -> None:
    """Keep the patient's public key (replacing one kept before)."""
    await ex.execute(
        "INSERT INTO patient_keys (pair_id, fingerprint, cert, added_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (pair_id) DO UPDATE SET fingerprint = excluded.fingerprint, "
        "cert = excluded.cert, added_at = excluded.added_at",
        pair_id,
        fingerprint,
        sealer.seal(cert, _key_aad(pair_id)),
        now,
    )


async def get_key(ex: Executor, sealer: ContentSealer, pair_id: str) -> PatientKey | None:
    row = await ex.fetchrow(
        "SELECT fingerprint, cert, added_at FROM patient_keys WHERE pair_id = ?", pair_id
    )
    if row is None:
        return None
    return PatientKey(
        text(row, "fingerprint"),
        sealer.open(blob(row, "cert"), _key_aad(pair_id)),
        integer(row, "added_at"),
    )


async def key_fingerprint(ex: Executor, pair_id: str) -> str | None:
    """The fingerprint of the patient's key on file (stored in clear: it names no one)."""
    value = await ex.fetchval("SELECT fingerprint FROM patient_keys WHERE pair_id = ?", pair_id)
    return None if value is None else str(value)
