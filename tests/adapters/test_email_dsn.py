"""Delivery status notifications read with the standard library (`bridge.email.dsn`), and
the return paths they come back to (`bridge.email.inbox.bounce_address`): reports as
Postfix and Exim write them, a delay, malformed ones, and mail that is no report at all."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path
from string import Template

import pytest

from bridge.email.dsn import DELAYED, FAILED, MalformedReport, read_report
from bridge.email.inbox import bounce_address, bounce_token, inbound_token

DOMAIN = "in.example.net"
TOKEN = "0f" * 16
RETURN_PATH = f"bounce+{TOKEN}@{DOMAIN}"
PATIENT = "pat@example.org"
MESSAGE_ID = "<out.6b1f0c2d9e8a7b6c5d4e3f2a1b0c9d8e@in.example.net>"
SAMPLES = Path(__file__).parents[1] / "data" / "email" / "dsn"


def sample(name: str, **values: str) -> bytes:
    """A report from tests/data/email/dsn/ about our mail (values may be replaced)."""
    fields = {
        "return_path": RETURN_PATH,
        "recipient": PATIENT,
        "pair_address": f"pair-abc123@{DOMAIN}",
        "subject": "Re: canary-subject Thursday",
        "message_id": MESSAGE_ID,
        "body": "canary-body see you Tuesday",
        **values,
    }
    text = Template((SAMPLES / f"{name}.eml").read_text(encoding="utf-8")).substitute(fields)
    return text.replace("\n", "\r\n").encode("utf-8")


def report_message(status_block: str, *, report_type: str = "delivery-status") -> bytes:
    """A minimal multipart/report whose delivery-status part is `status_block` as given."""
    boundary = "b0undary"
    return (
        "From: MAILER-DAEMON@mx.example.org\r\n"
        f"To: {RETURN_PATH}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type={report_type}; boundary="{boundary}"\r\n'
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/plain\r\n\r\n"
        "Your message could not be delivered.\r\n"
        f"--{boundary}\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        f"{status_block}\r\n"
        f"--{boundary}--\r\n"
    ).encode()


# ------------------------------------------------------------------ reports as MTAs write them


def test_postfix_bounce_is_read_with_its_returned_headers():
    report = read_report(sample("postfix_failed"))
    assert report is not None
    [block] = report.recipients
    assert (block.action, block.status, block.permanent) == (FAILED, "5.1.1", True)
    assert block.final_recipient == PATIENT
    assert "User unknown" in block.diagnostic
    assert report.message_id == MESSAGE_ID
    assert report.worst is block
    # What a log line or a repr shows names no one.
    assert PATIENT not in repr(report)


def test_exim_bounce_takes_the_precise_code_its_diagnostic_quotes():
    report = read_report(sample("exim_failed"))
    assert report is not None
    [block] = report.recipients
    # Exim writes "Status: 5.0.0" for any SMTP refusal; the refusal said 5.2.2.
    assert (block.action, block.status) == (FAILED, "5.2.2")
    assert block.final_recipient == PATIENT
    # The returned message is message/rfc822: its Message-ID, not the report's own.
    assert report.message_id == MESSAGE_ID


def test_postfix_delay_warning_is_a_delay():
    report = read_report(sample("postfix_delayed"))
    assert report is not None
    assert (report.worst.action, report.worst.status, report.worst.permanent) == (
        DELAYED,
        "4.4.1",
        False,
    )
    assert report.message_id == MESSAGE_ID


def test_the_worst_recipient_block_speaks_for_the_report():
    raw = report_message(
        "Reporting-MTA: dns; mx.example.org\r\n\r\n"
        "Final-Recipient: rfc822; a@example.org\r\nAction: delayed\r\nStatus: 4.4.7\r\n\r\n"
        "Final-Recipient: rfc822; b@example.org\r\nAction: failed (gave up)\r\n"
        "Status: 5.4.7 (delivery time expired)\r\n\r\n"
        "Final-Recipient: rfc822; c@example.org\r\nAction: delivered\r\nStatus: 2.0.0"
    )
    report = read_report(raw)
    assert report is not None
    assert [r.action for r in report.recipients] == ["delayed", "failed", "delivered"]
    assert (report.worst.action, report.worst.status) == ("failed", "5.4.7")
    assert report.worst.final_recipient == "b@example.org"
    assert report.message_id is None  # nothing returned


def test_a_report_for_an_smtputf8_address_is_read_too():
    raw = report_message(
        "Reporting-MTA: dns; mx.example.org\r\n\r\n"
        "Final-Recipient: utf-8; jörg@example.org\r\nAction: failed\r\nStatus: 5.1.1"
    ).replace(b"message/delivery-status", b"message/global-delivery-status")
    report = read_report(raw)
    assert report is not None
    assert (report.worst.status, report.worst.final_recipient) == ("5.1.1", "jörg@example.org")


# ------------------------------------------------------------------ malformed and other mail


@pytest.mark.parametrize(
    ("block", "reason"),
    [
        ("Reporting-MTA: dns; mx.example.org", "no_recipient"),
        (
            "Reporting-MTA: dns; mx.example.org\r\n\r\nFinal-Recipient: rfc822; a@b.org\r\n"
            "Action: failed\r\nStatus: bounced",
            "no_status",
        ),
        (
            "Reporting-MTA: dns; mx.example.org\r\n\r\nFinal-Recipient: rfc822; a@b.org\r\n"
            "Action: exploded\r\nStatus: 5.1.1",
            "unknown_action",
        ),
    ],
)
def test_a_report_that_cannot_be_read_is_malformed(block: str, reason: str):
    with pytest.raises(MalformedReport) as info:
        read_report(report_message(block))
    assert info.value.reason == reason


def test_a_delivery_report_without_its_status_part_is_malformed():
    msg = EmailMessage()
    msg["From"] = "MAILER-DAEMON@mx.example.org"
    msg["Subject"] = "Undelivered Mail Returned to Sender"
    msg.set_content("It bounced, trust me.")
    msg.add_attachment("not a status", subtype="plain")
    msg.replace_header("Content-Type", msg["Content-Type"].replace("mixed", "report"))
    msg.set_param("report-type", "delivery-status")
    with pytest.raises(MalformedReport) as info:
        read_report(msg.as_bytes())
    assert info.value.reason == "no_delivery_status"


def test_an_encoded_status_part_is_malformed():
    raw = report_message("UmVwb3J0aW5nLU1UQTogZG5zOyBteC5leGFtcGxlLm9yZw==").replace(
        b"Content-Type: message/delivery-status\r\n",
        b"Content-Type: message/delivery-status\r\nContent-Transfer-Encoding: base64\r\n",
    )
    with pytest.raises(MalformedReport) as info:
        read_report(raw)
    assert info.value.reason == "encoded_delivery_status"


def test_garbage_in_a_report_wrapper_is_malformed_not_a_crash():
    raw = b"Content-Type: multipart/report; report-type=delivery-status\r\n\r\n\x00\xff garbage"
    with pytest.raises(MalformedReport):
        read_report(raw)


def test_mail_that_is_no_delivery_report_is_none():
    reply = EmailMessage()
    reply["From"] = f"Pat <{PATIENT}>"
    reply["Auto-Submitted"] = "auto-replied"
    reply["Subject"] = "Out of office"
    reply.set_content("I am away until Monday.")
    assert read_report(reply.as_bytes()) is None
    # An abuse report (RFC 5965) is a multipart/report too, of another type.
    abuse = report_message("Feedback-Type: abuse", report_type="feedback-report").replace(
        b"message/delivery-status", b"message/feedback-report"
    )
    assert read_report(abuse) is None


# ------------------------------------------------------------------ return paths


def test_return_path_round_trip_and_look_alikes():
    assert bounce_address(TOKEN, DOMAIN) == RETURN_PATH
    assert bounce_token(RETURN_PATH, DOMAIN) == TOKEN
    # Case and a trailing dot are the MTA's choice.
    assert bounce_token(RETURN_PATH.upper(), DOMAIN) == TOKEN
    assert bounce_token(f"bounce+{TOKEN}@{DOMAIN}.", DOMAIN) == TOKEN
    for other in (
        f"bounce+{TOKEN}@other.example",  # another domain
        f"bounce+{TOKEN[:-2]}@{DOMAIN}",  # too short
        f"bounce+{TOKEN}00@{DOMAIN}",  # too long
        f"bounce+{'zz' * 16}@{DOMAIN}",  # not hex
        f"bounce-{TOKEN}@{DOMAIN}",
        f"pair-abc123@{DOMAIN}",
        f"bounce@{DOMAIN}",
    ):
        assert bounce_token(other, DOMAIN) is None, other
    # A return path is no pair's address.
    assert inbound_token(RETURN_PATH, DOMAIN) is None
