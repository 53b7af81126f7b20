"""The outbound mail queue, consent and keys on SQLite and PostgreSQL: queued once per event,
held by one worker at a time, threaded both ways, consent kept with its digests, the key
sealed to its pair."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.adapters.render import Renderer
from bridge.audit.log import AuditLog
from bridge.features.email.outbound.worker import OutboundWorker
from bridge.sealing import Sealer, SealError
from bridge.store import outmail, pairs
from bridge.store.base import Database
from bridge.store.outmail import OutmailStatus

SEALER = Sealer({"k1": bytes(range(32))}, "k1")


async def new_pair(db: Database, n: int = 1) -> str:
    record = await pairs.create(
        db, patient_id=f"@pat{n}:hs", therapist_id="@doc:hs", now=1, room_id=f"!r{n}:hs"
    )
    return record.pair_id


async def test_queued_once_and_held_by_one_worker(db: Database) -> None:
    pair_id = await new_pair(db)
    kwargs = {"pair_id": pair_id, "kind": "reply", "message_id": "<out.1@d>", "now": 10}
    assert await outmail.queue(db, event_id="$e1", **kwargs)
    assert not await outmail.queue(db, event_id="$e1", **kwargs)
    [row] = await outmail.pending(db)
    assert row.status is OutmailStatus.PENDING and row.attempts == 0

    assert await outmail.claim(db, "$e1", now=100, lease_ms=50)
    assert not await outmail.claim(db, "$e1", now=120, lease_ms=50)  # held
    assert await outmail.claim(db, "$e1", now=150, lease_ms=50)  # the lease ran out
    await outmail.note_attempt(db, "$e1", "OSError")  # a failed try lets it go at once
    assert await outmail.claim(db, "$e1", now=160, lease_ms=50)

    assert await outmail.mark_sent(db, "$e1", 200)
    assert not await outmail.mark_sent(db, "$e1", 201)
    assert not await outmail.claim(db, "$e1", now=500, lease_ms=50)
    assert await outmail.pending(db) == []
    assert await outmail.sent_message_id(db, "$e1") == "<out.1@d>"
    assert not await outmail.mark_given_up(db, "$e1", OutmailStatus.WITHHELD, "no_consent")


async def test_thread_ids_take_both_ways_in_time_order(db: Database) -> None:
    pair_id = await new_pair(db)
    other = await new_pair(db, 2)
    for n, (mid, at) in enumerate([("<in.1@x>", 10), ("<in.2@x>", 30)]):
        await db.execute(
            "INSERT INTO inbound_emails (id, pair_id, message_id, sender, received_at, raw, "
            "raw_size, auth_method, status) VALUES (?, ?, ?, 'pat@x.org', ?, ?, 1, 'mta', "
            "'relayed')",
            f"i{n}",
            pair_id,
            mid,
            at,
            b"x",
        )
    await outmail.queue(
        db, event_id="$a", pair_id=pair_id, kind="reply", message_id="<out.a@d>", now=15
    )
    await outmail.mark_sent(db, "$a", 20)
    await outmail.queue(
        db, event_id="$b", pair_id=pair_id, kind="reply", message_id="<out.b@d>", now=35
    )  # not sent yet: not in the thread
    await outmail.queue(
        db, event_id="$c", pair_id=other, kind="reply", message_id="<out.c@d>", now=16
    )
    await outmail.mark_sent(db, "$c", 21)
    assert await outmail.thread_ids(db, pair_id) == ["<in.1@x>", "<out.a@d>", "<in.2@x>"]
    assert await outmail.thread_ids(db, pair_id, limit=2) == ["<out.a@d>", "<in.2@x>"]
    last = await outmail.last_inbound(db, pair_id)
    assert last is not None and last.message_id == "<in.2@x>"
    assert await outmail.last_inbound(db, other) is None


async def test_consent_keeps_its_digests_across_changes(db: Database) -> None:
    pair_id = await new_pair(db)
    assert await outmail.get_consent(db, pair_id) is None
    await outmail.set_consent(db, pair_id, "asked", 1, text_sha256="t1", ask_message_id="<a@d>")
    await outmail.set_consent(db, pair_id, "given", 2, address_sha256="a1")
    consent = await outmail.get_consent(db, pair_id)
    assert consent is not None
    assert (consent.state, consent.text_sha256, consent.address_sha256) == ("given", "t1", "a1")
    assert consent.ask_message_id == "<a@d>" and consent.changed_at == 2
    await outmail.set_consent(db, pair_id, "revoked", 3)
    consent = await outmail.get_consent(db, pair_id)
    assert consent is not None and consent.state == "revoked" and consent.text_sha256 == "t1"


async def test_the_key_is_sealed_to_its_pair(db: Database) -> None:
    pair_id = await new_pair(db)
    other = await new_pair(db, 2)
    await outmail.set_key(db, SEALER, pair_id, "ab12", b"-----BEGIN PGP PUBLIC KEY", 5)
    key = await outmail.get_key(db, SEALER, pair_id)
    assert key is not None and key.cert == b"-----BEGIN PGP PUBLIC KEY" and key.added_at == 5
    assert await outmail.key_fingerprint(db, pair_id) == "ab12"
    stored = await db.fetchval("SELECT cert FROM patient_keys WHERE pair_id = ?", pair_id)
    assert isinstance(stored, bytes) and b"PGP" not in stored
    # Moved to another pair's row, it does not open.
    await db.execute(
        "INSERT INTO patient_keys (pair_id, fingerprint, cert, added_at) VALUES (?, 'x', ?, 1)",
        other,
        stored,
    )
    with pytest.raises(SealError):
        await outmail.get_key(db, SEALER, other)


class Relay:
    """Stands in for the mailer: refuses one recipient with an unexpected error."""

    def __init__(self, broken: str) -> None:
        self.broken = broken
        self.sent: list[list[str]] = []

    async def send_raw(self, raw: bytes, *, sender: str, recipients: list[str], kind: str) -> None:
        if recipients == [self.broken]:
            raise RuntimeError("not a MailError")
        self.sent.append(recipients)


async def test_one_mail_that_fails_oddly_holds_up_no_other_pair(db: Database) -> None:
    relay = Relay(broken="a@example.org")
    worker = OutboundWorker(
        db=db,
        sealer=SEALER,
        audit=AuditLog(db, SEALER, bytes(range(32, 64))),
        renderer=Renderer(),
        mailer=relay,  # type: ignore[arg-type]
        downloader=None,  # type: ignore[arg-type]
        clock=lambda: datetime(2026, 3, 2, tzinfo=UTC),
        inbound_domain="in.example.net",
        practice_name="H",
        terms_context=lambda: {"practice_name": "H"},
    )
    for n, address in enumerate(["a@example.org", "b@example.org"], start=1):
        record = await pairs.create(
            db,
            patient_id=f"@p{n}:hs",
            therapist_id="@doc:hs",
            now=n,
            room_id=f"!r{n}:hs",
            patient_email=address,
            sealer=SEALER,
        )
        await outmail.set_consent(db, record.pair_id, "asked", n, ask_message_id=f"<a{n}@d>")
        await outmail.queue(
            db, event_id=f"$ask{n}", pair_id=record.pair_id, kind="consent",
            message_id=f"<a{n}@d>", now=n,
        )  # fmt: skip
    assert await worker.drain() == 1
    assert relay.sent == [["b@example.org"]]
    broken = await outmail.get(db, "$ask1")
    assert broken is not None and broken.status is OutmailStatus.PENDING
    assert broken.attempts == 1 and broken.last_error == "RuntimeError"
    assert await worker.drain() == 0  # waiting out its backoff, not sent twice elsewhere
    assert relay.sent == [["b@example.org"]]
