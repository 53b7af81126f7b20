"""What a delivery report about a mail to the patient does, pure: a bounce is audited and
told in the pair room (time and status only), a delay is audited and tells nobody."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from bridge.adapters.render import Renderer, default_templates_dir
from bridge.core import email_out
from bridge.core.model import AppendAudit, SendMessage

SENT = datetime(2026, 3, 3, 9, 2, 12, tzinfo=UTC)
PATIENT = "pat@example.org"
REPORT = email_out.DeliveryReportFacts(
    pair_id="p1",
    event_id="$answer",
    kind=email_out.REPLY,
    message_id="<out.1@in.example.net>",
    action=email_out.REPORT_FAILED,
    status="5.1.1",
    sent_at=SENT,
    room_id="!room:hs",
    timezone="Europe/Berlin",
    media_ref="ab" * 32,
    recipient=PATIENT,
    diagnostic=f"smtp; 550 5.1.1 <{PATIENT}>: User unknown",
)


def test_a_bounce_is_audited_and_told_in_the_pair_room():
    entry, notice = email_out.delivery_reported(REPORT)
    assert isinstance(entry, AppendAudit) and isinstance(notice, SendMessage)
    assert (entry.action, entry.outcome, entry.event_id) == (
        email_out.BOUNCED_ACTION,
        "failed",
        "$answer",
    )
    assert entry.details == {
        "kind": "reply",
        "message_id": "<out.1@in.example.net>",
        "status": "5.1.1",
        "recipient_sha256": email_out.address_digest(PATIENT),
    }
    assert entry.content is not None
    sealed = json.loads(entry.content)
    assert sealed["media_ref"] == "ab" * 32 and "User unknown" in sealed["body"]
    assert (notice.room_id, notice.template, notice.pair_id) == ("!room:hs", "email_bounced", "p1")
    assert notice.txn_id == "email-bounce.$answer"
    assert notice.context == {
        "kind": "reply",
        "sent_at_local": "2026-03-03T10:02:12+01:00",
        "timezone": "Europe/Berlin",
        "status": "5.1.1",
        "reason": "address",
    }
    # Neither the clear entry nor the notice names her.
    assert PATIENT not in json.dumps([entry.details, notice.context])


def test_a_delay_is_audited_and_tells_nobody():
    [entry] = email_out.delivery_reported(
        replace(REPORT, action=email_out.REPORT_DELAYED, status="4.4.1")
    )
    assert isinstance(entry, AppendAudit)
    assert (entry.action, entry.outcome) == (email_out.DELAYED_ACTION, "deferred")


@pytest.mark.parametrize("action", ["delivered", "relayed", "expanded"])
def test_good_news_does_nothing(action: str):
    assert email_out.delivery_reported(replace(REPORT, action=action, status="2.0.0")) == []


def test_a_pair_without_a_room_gets_the_entry_only():
    [entry] = email_out.delivery_reported(replace(REPORT, room_id=None))
    assert isinstance(entry, AppendAudit) and entry.action == email_out.BOUNCED_ACTION


def test_a_report_without_a_recipient_keeps_no_digest():
    entry, _ = email_out.delivery_reported(replace(REPORT, recipient=""))
    assert isinstance(entry, AppendAudit) and "recipient_sha256" not in entry.details


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("5.1.1", "address"),
        ("5.1.2", "address"),
        ("5.1.10", "address"),
        ("5.2.2", "mailbox_full"),
        ("5.2.1", "mailbox"),
        ("5.7.1", "refused"),
        ("4.4.1", "expired"),
        ("4.7.0", "expired"),
        ("5.0.0", "other"),
        ("5.4.4", "other"),
    ],
)
def test_bounce_reason(status: str, reason: str):
    assert email_out.bounce_reason(status) == reason


@pytest.mark.parametrize("language", ["en", "de", "es"])
def test_the_notice_reads_with_the_time_and_status_only(language: str):
    _, notice = email_out.delivery_reported(REPORT)
    assert isinstance(notice, SendMessage)
    text = Renderer(default_templates_dir()).text(notice.template, notice.context, language)
    assert "5.1.1" in text and "10:02" in text and "Europe/Berlin" in text
    assert PATIENT not in text
    if language == "en":
        assert text.startswith(
            "The e-mail with your answer of 2026-03-03 10:02 (Europe/Berlin) could not be "
            "delivered to the patient (status 5.1.1)."
        )
