"""The durable inbox on SQLite and PostgreSQL, alone and behind a real SMTP session.

The rows are `bridge.store.inbox`; routing and acceptance are `bridge.email.inbox`.
"""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator
from email.message import EmailMessage

import pytest

from bridge.adapters.smtp import InboundHandler, SmtpListener, SmtpSettings
from bridge.email.authcheck import AuthPolicy, StaticResolver
from bridge.email.inbox import inbound_token, make_inbox_accept, make_pair_routing, relay_txn_id
from bridge.sealing import Sealer, SealError, generate_key
from bridge.store import Database, inbox, outbox, pairs

pytestmark = pytest.mark.integration

PATIENT = "pat@example.org"
NOW = 1_750_000_000_000


@pytest.fixture
def sealer() -> Sealer:
    return Sealer({"k1": generate_key()}, "k1")


async def _pair(db: Database, sealer: Sealer) -> pairs.PairRecord:
    return await pairs.create(
        db,
        patient_id="@pat:hs.test",
        therapist_id="@doc:hs.test",
        now=NOW,
        patient_email=PATIENT,
        sealer=sealer,
    )


async def test_store_is_sealed_and_redelivery_is_recorded_once(
    db: Database, sealer: Sealer
) -> None:
    pair = await _pair(db, sealer)
    raw = b"From: pat@example.org\r\nMessage-ID: <a@x>\r\n\r\nprivate words\r\n"
    first, dup = await inbox.store_inbound(
        db, sealer, pair.pair_id, PATIENT, "<a@x>", raw, NOW, auth_method="dkim"
    )
    assert not dup
    again, dup = await inbox.store_inbound(
        db, sealer, pair.pair_id, PATIENT, "<a@x>", raw, NOW + 5, auth_method="dkim"
    )
    assert (again, dup) == (first, True)
    stored = await db.fetchval("SELECT raw FROM inbound_emails WHERE id = ?", first)
    assert b"private words" not in bytes(stored)
    [item] = await inbox.pending(db)
    assert (item.id, item.status, item.sender, item.raw_size) == (
        first,
        inbox.InboxStatus.ACCEPTED,
        PATIENT,
        len(raw),
    )
    assert inbox.open_raw(sealer, item) == raw


async def test_sealed_raw_is_bound_to_its_row(db: Database, sealer: Sealer) -> None:
    pair = await _pair(db, sealer)
    a, _ = await inbox.store_inbound(db, sealer, pair.pair_id, PATIENT, "<a@x>", b"A", NOW)
    b, _ = await inbox.store_inbound(db, sealer, pair.pair_id, PATIENT, "<b@x>", b"B", NOW)
    blob = await db.fetchval("SELECT raw FROM inbound_emails WHERE id = ?", a)
    await db.execute("UPDATE inbound_emails SET raw = ? WHERE id = ?", bytes(blob), b)
    moved = await inbox.get(db, b)
    assert moved is not None
    with pytest.raises(SealError):
        inbox.open_raw(sealer, moved)


async def test_relayed_and_failed_leave_the_queue(db: Database, sealer: Sealer) -> None:
    pair = await _pair(db, sealer)
    a, _ = await inbox.store_inbound(db, sealer, pair.pair_id, PATIENT, "<a@x>", b"A", NOW)
    b, _ = await inbox.store_inbound(db, sealer, pair.pair_id, PATIENT, "<b@x>", b"B", NOW + 1)
    async with db.transaction() as tx:
        assert await inbox.mark_relayed(tx, a, relay_txn_id(a), NOW + 10)
    assert not await inbox.mark_relayed(db, a, "other", NOW + 11)
    assert await inbox.mark_failed(db, b, "MalformedEmail:too_deep")
    assert await inbox.pending(db) == []
    relayed = await inbox.get(db, a)
    assert relayed is not None
    assert (relayed.status, relayed.relay_txn_id, relayed.relayed_at) == (
        inbox.InboxStatus.RELAYED,
        relay_txn_id(a),
        NOW + 10,
    )


async def test_relayed_mail_whose_post_waits_is_counted(db: Database, sealer: Sealer) -> None:
    pair = await _pair(db, sealer)
    await pairs.set_room(db, pair.pair_id, "!room:hs.test")
    ids = [
        (await inbox.store_inbound(db, sealer, pair.pair_id, PATIENT, f"<{n}@x>", b"A", NOW))[0]
        for n in range(3)
    ]
    for email_id in ids:
        txn = relay_txn_id(email_id)
        async with db.transaction() as tx:
            assert await inbox.mark_relayed(tx, email_id, txn, NOW + 10)
            await outbox.enqueue(
                tx,
                txn_id=txn,
                room_id="!room:hs.test",
                event_type="m.room.message",
                content={"body": "post"},
                kind="email",
                now=NOW + 10,
                sealer=sealer,
                pair_id=pair.pair_id,
            )
    # The homeserver is away: relayed, but every post still sits in the outbox.
    assert await inbox.relayed_posts_waiting(db) == 3
    assert await outbox.mark_sent(db, relay_txn_id(ids[0]), "$e:hs.test", NOW + 20)
    assert await inbox.relayed_posts_waiting(db) == 2


@pytest.fixture
async def smtp_inbox(db: Database, sealer: Sealer) -> AsyncIterator[tuple[SmtpListener, str]]:
    pair = await _pair(db, sealer)
    await pairs.set_room(db, pair.pair_id, "!room:hs.test")
    address = f"Pair-{pair.email_token.upper()}@In.Example.Net"
    resolve, allowed = make_pair_routing(db, sealer, "in.example.net")
    clock = iter(range(NOW, NOW + 1000))
    handler = InboundHandler(
        resolve_recipient=resolve,
        allowed_senders=allowed,
        accept=make_inbox_accept(db, sealer, lambda: next(clock)),
        policy=AuthPolicy(),
        resolver=StaticResolver({("example.org", "TXT"): ["v=spf1 ip4:127.0.0.1 -all"]}),
    )
    listener = SmtpListener(SmtpSettings(host="127.0.0.1", port=0), handler)
    await listener.start()
    try:
        yield listener, address
    finally:
        await listener.stop()


def _deliver(port: int, address: str, message_id: str | None) -> tuple[int, bytes]:
    msg = EmailMessage()
    msg["From"] = f"Pat <{PATIENT}>"
    msg["To"] = address
    msg["Subject"] = "again"
    if message_id:
        msg["Message-ID"] = message_id
    msg.set_content("Same message, delivered twice.")
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail(PATIENT, [address], msg.as_bytes(policy=msg.policy.clone(linesep="\r\n")))
        return client.noop()


@pytest.mark.parametrize("message_id", ["<twice@example.org>", None])
async def test_redelivered_message_is_accepted_and_stored_once(
    db: Database, smtp_inbox: tuple[SmtpListener, str], message_id: str | None
) -> None:
    listener, address = smtp_inbox
    for _ in range(2):
        await asyncio.to_thread(_deliver, listener.port, address, message_id)
    rows = await db.fetch("SELECT message_id, status, auth_method FROM inbound_emails")
    assert len(rows) == 1
    assert rows[0]["status"] == "accepted"
    assert rows[0]["auth_method"] == "spf"
    if message_id:
        assert rows[0]["message_id"] == message_id
    else:
        assert rows[0]["message_id"].startswith("<sha256.")


async def test_unknown_pair_address_is_refused(
    db: Database, smtp_inbox: tuple[SmtpListener, str]
) -> None:
    listener, _ = smtp_inbox
    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        await asyncio.to_thread(_deliver, listener.port, "pair-unknown@in.example.net", "<x@y>")
    [(code, text)] = info.value.recipients.values()
    assert (code, text[:6]) == (550, b"5.1.1 ")
    assert await db.fetchval("SELECT COUNT(*) FROM inbound_emails") == 0


async def test_a_store_that_cannot_commit_gets_451(
    db: Database, smtp_inbox: tuple[SmtpListener, str]
) -> None:
    listener, address = smtp_inbox
    await db.execute("DROP TABLE inbound_emails")
    with pytest.raises(smtplib.SMTPDataError) as info:
        await asyncio.to_thread(_deliver, listener.port, address, "<lost@example.org>")
    assert (info.value.smtp_code, info.value.smtp_error[:6]) == (451, b"4.3.0 ")


async def test_reply_target_finds_the_posted_email_of_the_same_pair(
    db: Database, sealer: Sealer
) -> None:
    pair = await _pair(db, sealer)
    other = await pairs.create(db, patient_id="@o:hs.test", therapist_id="@doc:hs.test", now=NOW)
    first, _ = await inbox.store_inbound(db, sealer, pair.pair_id, PATIENT, "<1@x>", b"1", NOW)
    txn = relay_txn_id(first)
    await outbox.enqueue(
        db,
        txn_id=txn,
        room_id="!room:hs.test",
        event_type="m.room.message",
        content={"msgtype": "m.text", "body": "x"},
        kind="email",
        now=NOW,
        sealer=sealer,
        pair_id=pair.pair_id,
    )
    await inbox.mark_relayed(db, first, txn, NOW)
    assert await inbox.reply_target(db, pair.pair_id, "<1@x>", []) is None  # not sent yet
    await outbox.mark_sent(db, txn, "$posted", NOW + 1)
    assert await inbox.reply_target(db, pair.pair_id, "<1@x>", []) == "$posted"
    assert await inbox.reply_target(db, pair.pair_id, "<nope@x>", ["<1@x>", "<2@x>"]) == "$posted"
    assert await inbox.reply_target(db, other.pair_id, "<1@x>", []) is None
    assert await inbox.reply_target(db, pair.pair_id, None, []) is None


def test_inbound_token() -> None:
    assert inbound_token("Pair-AbC2@In.Example.Net", "in.example.net") == "abc2"
    assert inbound_token("pair-abc@other.example", "in.example.net") is None
    assert inbound_token("someone@in.example.net", "in.example.net") is None
    assert inbound_token("pair-a+b@in.example.net", "in.example.net") is None


async def test_routing_takes_only_active_pairs(db: Database, sealer: Sealer) -> None:
    resolve, allowed = make_pair_routing(db, sealer, "in.example.net")
    pair = await _pair(db, sealer)
    address = f"pair-{pair.email_token}@in.example.net"
    assert await resolve(address) is None  # still provisioning: no room yet
    await pairs.set_room(db, pair.pair_id, "!room:hs.test")
    assert await resolve(address) == pair.pair_id
    assert await allowed(pair.pair_id) == [PATIENT]
    assert await resolve("pair-unknown@in.example.net") is None
