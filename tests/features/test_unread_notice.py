"""The unread-message e-mail against the real Synapse and a real SMTP server: a therapist's
reply left unread brings one content-free e-mail; a reply the patient has read brings none."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.app import App, default_features
from bridge.config import minimal_config
from bridge.core import email_out
from bridge.features.unread import install_unread_notice, timer_id
from bridge.store import outmail
from tests.adapters.test_mailer import SinkFactory, body_of, outbound
from tests.adapters.test_mailer import smtp_sink as smtp_sink  # the fixture
from tests.features.test_pair_rooms import wait_until
from tests.support.bridge_app import bridge_config_dict, notice_containing, text_from

pytestmark = pytest.mark.integration

WEB_CLIENT = "https://chat.harbour.example.org"
PATIENT_EMAIL = "alice@example.org"


async def notices_sent(app: App, pair_id: str) -> int:
    rows = await app.parts.db.fetch(
        "SELECT action FROM audit_entries WHERE pair_id = ? AND action = ?",
        pair_id,
        "notify.unread_email",
    )
    return len(rows)


async def test_unread_reply_mails_patient_without_content_and_read_reply_does_not(
    homeserver, make_user, make_nio_user, smtp_sink: SinkFactory, tmp_path: Path
) -> None:
    assert install_unread_notice in default_features()
    bot = make_user("bot")
    sink = await smtp_sink()
    overrides = bridge_config_dict(
        homeserver,
        bot.user_id,
        bot.password,
        tmp_path / "data",
        practice={"web_client_url": WEB_CLIENT},
        outbound_email=outbound(sink.port, notify_unread_after="2s"),
    )
    app = App(minimal_config(**overrides), features=default_features())
    await app.start()
    try:
        patient = await make_nio_user("patient")
        therapist = await make_nio_user("therapist")
        record, _ = await app.parts.pairs.add_pair(
            patient.user_id, therapist.user_id, app.service.clock(), patient_email=PATIENT_EMAIL
        )
        room = record.room_id
        await patient.wait_for(room, notice_containing("Welcome"), timeout=30)
        await therapist.wait_joined(room, patient.user_id, timeout=20)

        # 1. The reply stays unread: one e-mail, with the link and without the message.
        secret = "Your test results say something private"
        await therapist.send_text(room, secret)
        (msg,) = await sink.wait(1, timeout=20)
        assert sink.envelopes[0].rcpt_tos == [PATIENT_EMAIL]
        body = body_of(msg)
        assert WEB_CLIENT in body and "Harbour Therapy" in body
        assert secret not in body and secret not in str(msg["Subject"])
        assert secret not in msg.as_string()
        assert therapist.user_id not in msg.as_string()
        assert await notices_sent(app, record.pair_id) == 1

        # 2. The patient reads the next reply: its timer fires and sends nothing.
        first = await app.parts.db.fetchrow(
            "SELECT due_at FROM timers WHERE timer_id = ?", timer_id(record.pair_id)
        )
        assert first is not None
        event_id = await therapist.send_text(room, "See you on Tuesday")
        # Read at once: the receipt must reach the bridge well within the window.
        await patient.client.room_read_markers(room, fully_read_event=event_id, read_event=event_id)
        await patient.wait_for(room, text_from(therapist.user_id, "See you on Tuesday"), 20)

        async def second_timer_fired() -> bool:
            row = await app.parts.db.fetchrow(
                "SELECT due_at, fired_at FROM timers WHERE timer_id = ?",
                timer_id(record.pair_id),
            )
            return (
                row is not None and row["due_at"] > first["due_at"] and row["fired_at"] is not None
            )

        # Twice the window at most; the audit is written in the timer's own transaction.
        await wait_until(second_timer_fired, timeout=4 + 4, what="second timer fired")
        assert await notices_sent(app, record.pair_id) == 1
        assert len(sink.messages) == 1

        # 3. She has chosen answers by e-mail: an unread reply brings no "new message" note.
        await outmail.set_consent(app.parts.db, record.pair_id, email_out.GIVEN, 0)
        second = await app.parts.db.fetchrow(
            "SELECT due_at FROM timers WHERE timer_id = ?", timer_id(record.pair_id)
        )
        assert second is not None
        first = second
        await therapist.send_text(room, "One more thing about Tuesday")
        await wait_until(second_timer_fired, timeout=4 + 4, what="third timer fired")
        assert await notices_sent(app, record.pair_id) == 1
        assert len(sink.messages) == 1
    finally:
        await app.stop()
