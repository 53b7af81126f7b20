"""A bounced answer, end to end: the therapist answers in the E2EE pair room on the real
Synapse, the mail leaves through the practice's relay (an aiosmtpd sink) with its own
return path, the patient's server sends a delay warning and then a bounce (RFC 3464) back
to it over a real SMTP session, and the therapist's client reads one notice in the room:
when the answer was written and the status, never her address or the subject."""

from __future__ import annotations

import asyncio
import json
import logging
import smtplib
from pathlib import Path
from typing import Any

import pytest
from nio import RoomMessageNotice

from bridge.core import email_out
from bridge.email import inbox
from bridge.metrics import gather, render
from tests.adapters.test_email_dsn import sample
from tests.adapters.test_mailer import SinkFactory
from tests.adapters.test_mailer import smtp_sink as smtp_sink  # the fixture
from tests.features.test_email_bridge import DOMAIN, PATIENT, deliver, email_features, post_with
from tests.features.test_email_outbound import config, email_pair, sent_entries
from tests.features.test_pair_rooms import wait_until
from tests.support.bridge_app import notice_containing, start_app

pytestmark = pytest.mark.integration

BOUNCED = "could not be delivered to the patient (status 5.1.1)"


async def test_a_bounced_answer_is_told_to_the_therapist_in_the_room(
    homeserver,
    make_user,
    make_nio_user,
    smtp_sink: SinkFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.INFO, logger="bridge")
    bot = make_user("bot")
    relay = await smtp_sink()
    features, holder = email_features(port=0)
    app = await start_app(config(homeserver, bot, tmp_path, relay.port), features=features)
    try:
        port = holder["email"].listener.port
        patient, therapist, record, address = await email_pair(app, make_nio_user)
        room = record.room_id
        await patient.send_text(room, "!email on")
        await patient.wait_for(room, notice_containing("agreement is recorded"), timeout=20)

        # The answer leaves by e-mail from the pair's address, with its own return path.
        answer_id = await therapist.send_text(room, "canary-answer see you Tuesday")
        (mail,) = await relay.wait(1, timeout=30)
        return_path = relay.envelopes[0].mail_from
        assert inbox.bounce_token(return_path, DOMAIN) is not None
        assert mail["From"].addresses[0].addr_spec == address
        subject = " ".join(str(mail["Subject"]).split())

        def report(name: str, to: str = return_path) -> bytes:
            return sample(
                name,
                return_path=to,
                pair_address=address,
                subject=subject,
                message_id=str(mail["Message-ID"]),
                body="canary-answer see you Tuesday",
            )

        # A forged return path (a token no mail has) is refused; nobody is told.
        forged = inbox.bounce_address("ab" * 16, DOMAIN)
        refused = await asyncio.to_thread(_refused, port, forged, report("postfix_failed", forged))
        assert refused == 550

        # Her server is slow: a delay warning is recorded, and tells nobody.
        await asyncio.to_thread(deliver, port, return_path, report("postfix_delayed"), "")

        async def delayed() -> list[dict[str, Any]]:
            return await sent_entries(app, record.pair_id, email_out.DELAYED_ACTION)

        await wait_until(delayed, what="the delay recorded")

        # Then it gives up: the therapist reads it in the room.
        await asyncio.to_thread(deliver, port, return_path, report("postfix_failed"), "")
        notice = await therapist.wait_for(room, notice_containing(BOUNCED), timeout=30)
        assert isinstance(notice, RoomMessageNotice)
        assert notice.sender == bot.user_id
        assert notice.body.startswith("The e-mail with your answer of ")
        assert "address does not exist" in notice.body
        for secret in (PATIENT, subject, "canary", return_path):
            assert secret not in notice.body

        [bounced] = await sent_entries(app, record.pair_id, email_out.BOUNCED_ACTION)
        assert bounced["event_id"] == answer_id and bounced["outcome"] == "failed"
        assert bounced["details"]["status"] == "5.1.1"
        row = await app.parts.db.fetchrow(
            "SELECT status, delivery, delivery_status FROM outbound_emails WHERE event_id = ?",
            answer_id,
        )
        assert row == {"status": "sent", "delivery": "bounced", "delivery_status": "5.1.1"}

        # One notice, however often her server repeats itself; the delay told nobody.
        await asyncio.to_thread(deliver, port, return_path, report("postfix_failed"), "")
        await therapist.send_text(room, "canary-after-bounce")
        await patient.wait_for(room, post_with("canary-after-bounce"), timeout=20)
        notices = [
            e
            for e in therapist.timeline.get(room, [])
            if isinstance(e, RoomMessageNotice) and "could not be delivered" in e.body
        ]
        assert len(notices) == 1

        # /metrics counts it by its status code only.
        snap = await gather(app, app.service.clock())
        assert (snap.emails_bounced, snap.emails_delayed) == ({"5.1.1": 1}, 1)
        assert b'confidant_emails_bounced_total{status="5.1.1"} 1.0' in render(snap)

        logged = "\n".join(str(r.__dict__) for r in caplog.records)
        assert PATIENT not in logged and "canary" not in logged and subject not in logged
        assert PATIENT not in json.dumps(bounced)
    finally:
        await app.stop()


def _refused(port: int, address: str, raw: bytes) -> int:
    try:
        deliver(port, address, raw, "")
    except smtplib.SMTPRecipientsRefused as refused:
        [(code, _)] = refused.recipients.values()
        return int(code)
    return 250
