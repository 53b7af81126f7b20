"""Delivery reports over real SMTP sessions into the listener, recorded against the mail
whose return path they came back to, on SQLite and PostgreSQL: the bounce marks the mail,
is audited and tells the pair room; a delay is recorded only; a forged return path, a
report about another message and a repeated report change nothing."""

from __future__ import annotations

import asyncio
import json
import logging
import smtplib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest

from bridge.adapters.render import Renderer, default_templates_dir
from bridge.adapters.smtp import InboundHandler, SmtpListener, SmtpSettings
from bridge.audit.log import AuditLog
from bridge.core import email_out
from bridge.email.authcheck import AuthPolicy, StaticResolver
from bridge.email.inbox import bounce_address, make_inbox_accept, make_pair_routing
from bridge.features.email.bounces import BounceDesk
from bridge.sealing import Sealer, generate_key
from bridge.store import Database, outbox, outmail, pairs
from bridge.store.base import to_ms
from bridge.store.outmail import Delivery
from tests.adapters.test_email_dsn import DOMAIN, PATIENT, sample

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 3, 9, 30, tzinfo=UTC)
SENT_AT = datetime(2026, 3, 3, 9, 2, 12, tzinfo=UTC)
TOKEN = "5e" * 16
OK = (250, b"2.0.0 Ok: delivery report recorded")
SUBJECT = "Re: canary-subject Thursday"


@dataclass
class Bench:
    db: Database
    sealer: Sealer
    audit: AuditLog
    port: int
    pair: pairs.PairRecord
    mail: outmail.OutboundEmail
    return_path: str
    rejected: list[tuple[str, str]] = field(default_factory=list)
    kicks: list[int] = field(default_factory=list)

    def dsn(self, name: str = "postfix_failed", **values: str) -> bytes:
        ours = {
            "return_path": self.return_path,
            "pair_address": f"pair-{self.pair.email_token}@{DOMAIN}",
            "subject": SUBJECT,
            "message_id": self.mail.message_id,
        }
        return sample(name, **(ours | values))

    async def entries(self, action: str) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            "SELECT seq, details, event_id, outcome FROM audit_entries "
            "WHERE pair_id = ? AND action = ? ORDER BY seq",
            self.pair.pair_id,
            action,
        )
        return [{**row, "details": json.loads(row["details"])} for row in rows]

    async def row(self) -> outmail.OutboundEmail:
        row = await outmail.get(self.db, self.mail.event_id)
        assert row is not None
        return row

    async def notice(self) -> dict[str, Any] | None:
        item = await outbox.get(self.db, f"email-bounce.{self.mail.event_id}", self.sealer)
        return None if item is None else item.content


@pytest.fixture
async def bench(db: Database) -> AsyncIterator[Bench]:
    sealer = Sealer({"k1": generate_key()}, "k1")
    audit = AuditLog(db, sealer, bytes(range(32, 64)))
    pair = await pairs.create(
        db,
        patient_id="@pat:hs.test",
        therapist_id="@doc:hs.test",
        now=to_ms(SENT_AT),
        patient_email=PATIENT,
        sealer=sealer,
        room_id="!room:hs.test",
    )
    event_id = "$answer-1"
    await outmail.queue(
        db,
        event_id=event_id,
        pair_id=pair.pair_id,
        kind=email_out.REPLY,
        message_id=email_out.message_id_for(event_id, DOMAIN),
        now=to_ms(SENT_AT),
    )
    assert await outmail.bounce_token(db, event_id, TOKEN) == TOKEN
    # A second try (after a crash) keeps the return path the first one used.
    assert await outmail.bounce_token(db, event_id, "ff" * 16) == TOKEN
    assert await outmail.mark_sent(db, event_id, to_ms(SENT_AT))
    mail = await outmail.get(db, event_id)
    assert mail is not None
    resolve, allowed = make_pair_routing(db, sealer, DOMAIN)
    kicks: list[int] = []
    desk = BounceDesk(
        db=db,
        sealer=sealer,
        audit=audit,
        renderer=Renderer(default_templates_dir()),
        clock=lambda: NOW,
        inbound_domain=DOMAIN,
        timezone="Europe/Berlin",
        wake_outbox=lambda: kicks.append(1),
    )
    rejected: list[tuple[str, str]] = []

    async def on_rejected(pair_id: str, reason: str, digest: str) -> None:
        rejected.append((pair_id, reason))

    clock = iter(range(to_ms(NOW), to_ms(NOW) + 1000))
    handler = InboundHandler(
        resolve_recipient=resolve,
        allowed_senders=allowed,
        accept=make_inbox_accept(db, sealer, lambda: next(clock)),
        policy=AuthPolicy(),
        resolver=StaticResolver({("example.org", "TXT"): ["v=spf1 ip4:127.0.0.1 -all"]}),
        on_rejected=on_rejected,
        resolve_bounce=desk.resolve,
        on_report=desk.record,
    )
    listener = SmtpListener(SmtpSettings(host="127.0.0.1", port=0), handler)
    await listener.start()
    try:
        yield Bench(
            db,
            sealer,
            audit,
            listener.port,
            pair,
            mail,
            bounce_address(TOKEN, DOMAIN),
            rejected,
            kicks,
        )
    finally:
        await listener.stop()


def _session(
    port: int, raw: bytes, rcpts: list[str], mail_from: str = ""
) -> tuple[int, bytes] | dict[str, tuple[int, bytes]]:
    """One transaction: the reply to DATA, or the recipients refused (MAIL FROM:<> when
    `mail_from` is empty, as every delivery report is sent)."""
    with smtplib.SMTP("127.0.0.1", port, local_hostname="mx.example.org", timeout=30) as client:
        client.ehlo()
        code, text = client.mail(mail_from)
        assert code == 250, (code, text)
        refused = {}
        for address in rcpts:
            code, text = client.rcpt(address)
            if code not in (250, 251):
                refused[address] = (code, text)
        if refused:
            client.rset()
            return refused
        return client.data(raw)


async def deliver(
    port: int, raw: bytes, rcpts: list[str], mail_from: str = ""
) -> tuple[int, bytes] | dict[str, tuple[int, bytes]]:
    return await asyncio.to_thread(_session, port, raw, rcpts, mail_from)


async def test_a_bounce_marks_its_mail_audits_it_and_tells_the_room(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge")
    raw = bench.dsn("postfix_failed")
    assert await deliver(bench.port, raw, [bench.return_path]) == OK

    row = await bench.row()
    assert (row.status, row.delivery, row.delivery_status) == ("sent", Delivery.BOUNCED, "5.1.1")
    assert row.delivery_at == to_ms(NOW)
    [entry] = await bench.entries(email_out.BOUNCED_ACTION)
    assert entry["outcome"] == "failed" and entry["event_id"] == bench.mail.event_id
    assert entry["details"] == {
        "kind": "reply",
        "message_id": bench.mail.message_id,
        "status": "5.1.1",
        "recipient_sha256": email_out.address_digest(PATIENT),
    }
    # The report itself is sealed in the audit, as the mail it answers is.
    kept = json.loads(await bench.audit.load_content(bench.db, entry["seq"]))
    assert kept["msgtype"] == email_out.REPORT_MSGTYPE and "User unknown" in kept["body"]
    stored = await bench.audit.load_media(bench.db, kept["media_ref"])
    assert stored is not None and stored.replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n")

    notice = await bench.notice()
    assert notice is not None and notice["msgtype"] == "m.notice"
    assert notice["body"].startswith(
        "The e-mail with your answer of 2026-03-03 10:02 (Europe/Berlin) could not be "
        "delivered to the patient (status 5.1.1)."
    )
    assert "address does not exist" in notice["body"]
    assert bench.kicks == [1]

    # Nothing names her or the mail in the clear: not the row, the entry, the notice, a log.
    logged = [r for r in caplog.records if r.name.startswith("bridge")]
    assert logged
    shown = json.dumps([entry, notice]) + "\n".join(str(r.__dict__) for r in logged)
    for secret in (PATIENT, "canary", bench.return_path, TOKEN):
        assert secret not in shown, secret

    # The same report again (a server that did not see our 250) changes nothing.
    assert await deliver(bench.port, raw, [bench.return_path]) == OK
    assert len(await bench.entries(email_out.BOUNCED_ACTION)) == 1
    assert bench.kicks == [1]


async def test_exim_bounce_after_a_delay_the_delay_tells_nobody(bench: Bench) -> None:
    assert await deliver(bench.port, bench.dsn("postfix_delayed"), [bench.return_path]) == OK
    row = await bench.row()
    assert (row.delivery, row.delivery_status) == (Delivery.DELAYED, "4.4.1")
    [late] = await bench.entries(email_out.DELAYED_ACTION)
    assert late["outcome"] == "deferred" and late["details"]["status"] == "4.4.1"
    assert await bench.notice() is None and bench.kicks == []
    # The same warning again is not a second entry.
    await deliver(bench.port, bench.dsn("postfix_delayed"), [bench.return_path])
    assert len(await bench.entries(email_out.DELAYED_ACTION)) == 1

    # Then the server gives up: the bounce is recorded and told.
    assert await deliver(bench.port, bench.dsn("exim_failed"), [bench.return_path]) == OK
    row = await bench.row()
    assert (row.delivery, row.delivery_status) == (Delivery.BOUNCED, "5.2.2")
    notice = await bench.notice()
    assert notice is not None and "mailbox is full" in notice["body"]
    # A late delay warning does not undo the bounce.
    await deliver(bench.port, bench.dsn("postfix_delayed"), [bench.return_path])
    assert (await bench.row()).delivery is Delivery.BOUNCED
    assert len(await bench.entries(email_out.DELAYED_ACTION)) == 1


async def test_a_forged_return_path_is_refused_and_changes_nothing(bench: Bench) -> None:
    forged = bounce_address("ab" * 16, DOMAIN)
    raw = bench.dsn("postfix_failed", return_path=forged)
    refused = await deliver(bench.port, raw, [forged])
    assert isinstance(refused, dict)
    [(code, text)] = refused.values()
    assert (code, text[:6]) == (550, b"5.1.1 ")
    # A report that quotes our mail's Message-ID is still not believed without its token.
    assert (await bench.row()).delivery is None
    assert await bench.entries(email_out.BOUNCED_ACTION) == []
    assert await bench.notice() is None and bench.rejected == []


async def test_a_report_of_another_message_is_taken_and_ignored(bench: Bench) -> None:
    raw = bench.dsn("postfix_failed", message_id="<someone-else@example.org>")
    assert await deliver(bench.port, raw, [bench.return_path]) == OK
    assert (await bench.row()).delivery is None
    assert await bench.entries(email_out.BOUNCED_ACTION) == []


async def test_a_malformed_report_is_refused_and_audited_as_refused(bench: Bench) -> None:
    raw = bench.dsn("postfix_failed").replace(b"Action: failed", b"Action: exploded")
    reply = await deliver(bench.port, raw, [bench.return_path])
    assert isinstance(reply, tuple) and (reply[0], reply[1][:6]) == (554, b"5.6.0 ")
    assert bench.rejected == [(bench.pair.pair_id, "malformed:unknown_action")]
    assert (await bench.row()).delivery is None


async def test_a_report_to_the_pair_address_is_still_refused(bench: Bench) -> None:
    # Mail sent before return paths existed bounced to the pair's own address: no token,
    # nothing to tie it to, refused as before.
    address = f"pair-{bench.pair.email_token}@{DOMAIN}"
    reply = await deliver(bench.port, bench.dsn("postfix_failed"), [address])
    assert isinstance(reply, tuple) and (reply[0], reply[1][:6]) == (550, b"5.7.1 ")
    assert bench.rejected == [(bench.pair.pair_id, "sender_not_allowed")]
    assert (await bench.row()).delivery is None


async def test_her_auto_reply_to_the_return_path_goes_to_the_pair(bench: Bench) -> None:
    msg = EmailMessage()
    msg["From"] = f"Pat <{PATIENT}>"
    msg["To"] = bench.return_path
    msg["Subject"] = "Out of office"
    msg["Message-ID"] = "<ooo-1@example.org>"
    msg["Auto-Submitted"] = "auto-replied"
    msg.set_content("I am away until Monday.")
    raw = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    reply = await deliver(bench.port, raw, [bench.return_path], mail_from=PATIENT)
    assert reply == (250, b"2.0.0 Ok: queued")
    [stored] = await bench.db.fetch("SELECT pair_id, message_id FROM inbound_emails")
    assert stored == {"pair_id": bench.pair.pair_id, "message_id": "<ooo-1@example.org>"}
    assert (await bench.row()).delivery is None


async def test_a_return_path_is_alone_in_its_transaction(bench: Bench) -> None:
    address = f"pair-{bench.pair.email_token}@{DOMAIN}"
    refused = await deliver(bench.port, bench.dsn(), [bench.return_path, address])
    assert isinstance(refused, dict) and list(refused) == [address]
    assert refused[address][0] == 452
