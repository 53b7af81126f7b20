"""What the bridge decides about a message of another channel (e-mail): posts, audit, the
event the pair hooks see."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest

from bridge.core.inbound import (
    InboundAttachment,
    InboundMessage,
    Media,
    attachment_txn_id,
    decide_inbound,
    inbound_event,
    rejected,
    relay_failed,
    relayed_entry,
    sender_of,
)
from bridge.core.model import (
    MATRIX,
    AppendAudit,
    Effect,
    KeepMedia,
    Kind,
    Pair,
    PostContent,
    Role,
)
from bridge.core.sla import SlaPolicy, on_patient_message
from bridge.core.workhours import WorkingCalendar

PAIR = Pair("p1", "@pat:practice", "@doc:practice", "!pair:practice", label="7F3A")
ACCEPTED = datetime(2025, 6, 4, 8, 0, 0, tzinfo=UTC)
NOW = ACCEPTED + timedelta(minutes=3)
RAW = b"From: Pat <pat@example.org>\r\nSubject: Thursday\r\n\r\ncanary-secret\r\n"
IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
VOICE = b"RIFF-not-really-a-wav"
POST = {"msgtype": "m.text", "body": "E-mail from Pat: canary-secret", "formatted_body": "<p>x</p>"}
TXN = "email.e1"

T = TypeVar("T")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mail(**changes: Any) -> InboundMessage:
    message = InboundMessage(
        channel="email",
        pair_id=PAIR.pair_id,
        role=Role.PATIENT,
        origin_ts=ACCEPTED,
        content_sha256=sha(RAW),
        kind=Kind.EMAIL,
        txn_id=TXN,
        post=POST,
        original=Media("original.eml", "message/rfc822", RAW),
        attachments=(
            InboundAttachment(
                Media("scan.png", "image/png", IMAGE), {"msgtype": "m.image", "body": "scan.png"}
            ),
            InboundAttachment(
                Media("voicemail.wav", "audio/wav", VOICE),
                {"msgtype": "m.audio", "body": "Voice message.ogg"},
                voice=True,
            ),
        ),
        details={"email_id": "e1", "auth": "dkim", "dropped_attachments": 1},
        record={"subject": "Thursday", "message_id": "<m1@x>", "from": "pat@example.org"},
    )
    return replace(message, **changes)


def of_type(effects: list[Effect], kind: type[T]) -> list[T]:
    return [e for e in effects if isinstance(e, kind)]


def test_posts_the_message_then_its_attachments_in_acceptance_order() -> None:
    decision = decide_inbound(PAIR, mail(), NOW)
    posts = of_type(decision.effects, PostContent)
    assert [(p.txn_id, p.kind) for p in posts] == [
        (TXN, "email"),
        (f"{TXN}.a01", "email_attachment"),
        (f"{TXN}.a02", "email_attachment"),
    ]
    assert [p.content["body"] for p in posts] == [POST["body"], "scan.png", "Voice message.ogg"]
    assert {(p.room_id, p.pair_id, p.event_type) for p in posts} == {
        (PAIR.room_id, PAIR.pair_id, "m.room.message")
    }
    # Ordered by when the e-mail was accepted, not when it is relayed.
    assert {p.accepted_at for p in posts} == {ACCEPTED}
    # Attachment ids sort after the post's own, in attachment order.
    assert sorted(p.txn_id for p in posts) == [p.txn_id for p in posts]
    assert attachment_txn_id(TXN, 12) == f"{TXN}.a12"


def test_audit_entry_keeps_the_original_and_names_its_media() -> None:
    decision = decide_inbound(PAIR, mail(), NOW)
    [entry] = of_type(decision.effects, AppendAudit)
    assert entry.action == "relay.email"
    assert entry.actor == PAIR.patient_id
    assert entry.pair_id == PAIR.pair_id and entry.outcome == "ok" and entry.event_id is None
    assert entry.details == {
        "role": "patient",
        "kind": "email",
        "email_id": "e1",
        "txn_id": TXN,
        "auth": "dkim",
        "attachments": 2,
        "dropped_attachments": 1,
    }
    assert entry.content is not None
    kept = json.loads(entry.content)
    assert kept == {
        "msgtype": "email",
        "body": POST["body"],
        "formatted_body": "<p>x</p>",
        "filename": "original.eml",
        "mimetype": "message/rfc822",
        "media_ref": sha(RAW),
        "subject": "Thursday",
        "message_id": "<m1@x>",
        "from": "pat@example.org",
        "attachments": [
            {
                "filename": "scan.png",
                "mimetype": "image/png",
                "size": len(IMAGE),
                "media_ref": sha(IMAGE),
                "voice": False,
            },
            {
                "filename": "voicemail.wav",
                "mimetype": "audio/wav",
                "size": len(VOICE),
                "media_ref": sha(VOICE),
                "voice": True,
            },
        ],
    }
    # Every media_ref the content names is kept, before the entry that names it.
    media = of_type(decision.effects, KeepMedia)
    assert {sha(m.data) for m in media} == {sha(RAW), sha(IMAGE), sha(VOICE)}
    assert decision.effects.index(entry) > max(decision.effects.index(m) for m in media)
    # Nothing of the message leaks into the entry's details or the effects' repr.
    assert "canary" not in json.dumps(entry.details)
    assert "canary" not in repr([e for e in decision.effects if not isinstance(e, AppendAudit)])


def test_a_message_without_original_or_attachments() -> None:
    media, entry = relayed_entry(PAIR, mail(original=None, attachments=(), post={"body": "hi"}))
    assert media == []
    assert entry.content is not None
    assert json.loads(entry.content) == {
        "msgtype": "email",
        "body": "hi",
        "attachments": [],
        "subject": "Thursday",
        "message_id": "<m1@x>",
        "from": "pat@example.org",
    }
    assert entry.details["attachments"] == 0


def test_pair_hooks_see_the_patients_message() -> None:
    event = decide_inbound(PAIR, mail(), NOW).event
    assert event == inbound_event(PAIR, mail(), NOW)
    assert (event.sender, event.role, event.kind) == (PAIR.patient_id, Role.PATIENT, Kind.EMAIL)
    assert (event.pair_id, event.room_id) == (PAIR.pair_id, PAIR.room_id)
    assert event.event_id == TXN  # the reply clock's first event: stable across retries
    assert (event.origin_ts, event.seen_at) == (ACCEPTED, NOW)
    assert event.content_sha256 == sha(RAW)
    assert event.channel == "email" != MATRIX
    assert event.command is None and event.relates_to is None and event.membership is None


def test_the_patients_email_opens_a_reply_clock_like_a_room_message() -> None:
    event = decide_inbound(PAIR, mail(), NOW).event
    policy = SlaPolicy(window=timedelta(hours=4))
    cal = WorkingCalendar(ZoneInfo("UTC"), {d: [(time(0), time(0))] for d in range(7)})
    clock, effects = on_patient_message(
        None, PAIR, policy, cal, event.kind, event.event_id, event.seen_at
    )
    assert clock is not None and clock.first_kind == "email" and clock.first_event_id == TXN
    assert [e.action for e in of_type(effects, AppendAudit)][:1] == ["sla.opened"]


@pytest.mark.parametrize(
    ("role", "sender"),
    [(Role.PATIENT, PAIR.patient_id), (Role.THERAPIST, PAIR.therapist_id)],
)
def test_sender_is_the_member_of_that_role(role: Role, sender: str) -> None:
    assert sender_of(PAIR, role) == sender
    [entry] = of_type(decide_inbound(PAIR, mail(role=role), NOW).effects, AppendAudit)
    assert entry.actor == sender and entry.details["role"] == role.value


@pytest.mark.parametrize("role", [Role.BOT, Role.OUTSIDER])
def test_only_members_send_inbound_messages(role: Role) -> None:
    with pytest.raises(ValueError, match="member"):
        decide_inbound(PAIR, mail(role=role), NOW)


def test_a_message_is_decided_with_its_own_pair() -> None:
    with pytest.raises(ValueError, match="own pair"):
        decide_inbound(replace(PAIR, pair_id="p2"), mail(), NOW)


def test_channel_names_the_entries_and_rows() -> None:
    decision = decide_inbound(PAIR, mail(channel="sms", kind=Kind.TEXT), NOW)
    assert [p.kind for p in of_type(decision.effects, PostContent)] == [
        "sms",
        "sms_attachment",
        "sms_attachment",
    ]
    [entry] = of_type(decision.effects, AppendAudit)
    assert entry.action == "relay.sms" and entry.details["kind"] == "text"
    assert entry.content is not None and json.loads(entry.content)["msgtype"] == "sms"
    assert decision.event.channel == "sms"


def test_a_message_that_can_never_be_relayed() -> None:
    assert relay_failed("email", "p1", "smtp", {"email_id": "e1"}, "malformed:headers") == (
        AppendAudit(
            "p1",
            "email.relay_failed",
            "smtp",
            {"email_id": "e1", "reason": "malformed:headers"},
            outcome="failed",
        )
    )


@pytest.mark.parametrize(("temporary", "outcome"), [(False, "refused"), (True, "deferred")])
def test_a_refused_message(temporary: bool, outcome: str) -> None:
    entry = rejected("email", "p1", "smtp", "sender_not_allowed", "d1g3", temporary=temporary)
    assert entry == AppendAudit(
        "p1",
        "email.rejected",
        "smtp",
        {"reason": "sender_not_allowed", "digest": "d1g3"},
        outcome=outcome,
    )
