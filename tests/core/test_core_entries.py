"""The audit entries (and their companions) the core builds for the features: desk rooms,
refused invitations, sessions, video calls, media, the self-check, the unread notice."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bridge.core import media, selfcheck, sessions, unread, video_commands
from bridge.core.model import (
    AppendAudit,
    CancelTimer,
    KeepMedia,
    Pair,
    PostContent,
    RoomAction,
    SendEmail,
    SendMessage,
)
from bridge.core.rooms import decide_desk_membership, invite_refused

PAIR = Pair("p1", "@pat:practice", "@doc:practice", "!pair:practice", label="7F3A")
DESK = "!desk:practice"
BOT = "@confidant:practice"
START = datetime(2025, 6, 4, 8, 0, tzinfo=UTC)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- rooms


@pytest.mark.parametrize(
    ("target", "membership", "removed"),
    [
        ("@eve:practice", "join", True),
        ("@eve:practice", "invite", True),
        ("@eve:practice", "knock", True),
        ("@eve:practice", "leave", False),
        ("@eve:practice", "ban", False),
        ("@doc:practice", "join", False),  # the owner
        (BOT, "join", False),
    ],
)
def test_desk_room_keeps_to_its_owner(target: str, membership: str, removed: bool) -> None:
    effects = decide_desk_membership(
        DESK,
        "@doc:practice",
        BOT,
        sender="@mallory:practice",
        target=target,
        membership=membership,
        event_id="$m1",
    )
    if not removed:
        assert effects == []
        return
    assert effects == [
        RoomAction(DESK, "kick", target, "private desk room"),
        AppendAudit(
            None,
            "policy.outsider_removed",
            "@mallory:practice",
            {"user": target, "room": "desk"},
            event_id="$m1",
        ),
    ]


@pytest.mark.parametrize(
    ("inviter", "actor"), [("@eve:elsewhere", "@eve:elsewhere"), (None, "unknown")]
)
def test_refused_invitation(inviter: str | None, actor: str) -> None:
    assert invite_refused("!odd:elsewhere", inviter) == AppendAudit(
        None, "policy.invite_refused", actor, {"room_id": "!odd:elsewhere"}
    )


# ---------------------------------------------------------------- sessions


def test_scheduled_session_entry_keeps_stored_times() -> None:
    entry = sessions.scheduled_entry(
        "p1", "ABCDEF", "video", 1_749_024_000_123, 1_749_027_600_456, "@doc:practice", "$s1"
    )
    assert entry == AppendAudit(
        "p1",
        "session.scheduled",
        "@doc:practice",
        {
            "session_id": "ABCDEF",
            "kind": "video",
            "starts_at": 1_749_024_000_123,
            "ends_at": 1_749_027_600_456,
        },
        event_id="$s1",
    )
    assert sessions.scheduled_entry("p1", "ABCDEF", "video", 1, 2, "admin").event_id is None


def test_cancelled_session_drops_its_timers_and_says_so() -> None:
    tz = ZoneInfo("Europe/Berlin")
    view = sessions.SessionView("ABCDEF", "chat", START, START + timedelta(minutes=50))
    effects = sessions.on_cancelled(view, "p1", PAIR.room_id, "@pat:practice", "$c1", tz)
    assert effects[:-2] == sessions.cancel_timers("ABCDEF")
    assert all(isinstance(e, CancelTimer) for e in effects[:-2])
    assert effects[-2] == AppendAudit(
        "p1", "session.cancelled", "@pat:practice", {"session_id": "ABCDEF"}, event_id="$c1"
    )
    assert effects[-1] == SendMessage(
        PAIR.room_id,
        "session_cancelled",
        sessions.describe(view, tz),
        txn_id="session.cancelled.$c1",
        pair_id="p1",
    )


# ---------------------------------------------------------------- video


@pytest.mark.parametrize("personal", [True, False])
def test_call_started_seals_the_meeting_name(personal: bool) -> None:
    entry = video_commands.call_started(
        "p1", "@doc:practice", "therapist", "QuietRiver42", personal_links=personal, event_id="$v1"
    )
    assert (entry.action, entry.actor, entry.event_id) == ("video.started", "@doc:practice", "$v1")
    expected: dict[str, object] = {"role": "therapist", "personal_links": personal}
    if personal:
        expected["patient_link_sent"] = False
    assert entry.details == expected
    assert "QuietRiver42" not in json.dumps(entry.details)
    assert entry.content is not None and json.loads(entry.content) == {"meeting": "QuietRiver42"}


def test_call_ended() -> None:
    assert video_commands.call_ended(PAIR, "@pat:practice", "patient", "$v2") == [
        AppendAudit("p1", "video.ended", "@pat:practice", {"role": "patient"}, event_id="$v2"),
        SendMessage(
            PAIR.room_id,
            "video_ended",
            {"ended_by": "@pat:practice"},
            txn_id="video.end.$v2",
            pair_id="p1",
        ),
    ]


# ---------------------------------------------------------------- media

VOICE_CONTENT: dict[str, Any] = {
    "msgtype": "m.audio",
    "body": "Voice message.ogg",
    "info": {"mimetype": "audio/ogg", "size": 10, "duration": 900, "thumbnail_info": {}},
    "org.matrix.msc3245.voice": {},
    "file": {"url": "mxc://x/y", "key": {"k": "secret"}},
}


def test_a_kept_attachment_is_stored_before_the_entry_that_names_it() -> None:
    data = b"OggS" + bytes(32)
    effects = media.media_stored(
        "p1",
        "@pat:practice",
        "$a1",
        "voice",
        VOICE_CONTENT,
        data,
        duration_ms=1000,
        codec="opus",
    )
    assert effects[0] == KeepMedia(data)
    entry = effects[1]
    assert isinstance(entry, AppendAudit) and len(effects) == 2
    assert (entry.action, entry.actor, entry.event_id, entry.outcome) == (
        "media.stored",
        "@pat:practice",
        "$a1",
        "ok",
    )
    assert entry.details == {
        "kind": "voice",
        "relates_to": "$a1",
        "codec": "opus",
        "media_ref": sha(data),
        "size": len(data),
        "duration_ms": 1000,
    }
    assert entry.content is not None
    assert json.loads(entry.content) == {
        "msgtype": "m.audio",
        "body": "Voice message.ogg",
        "filename": "Voice message.ogg",
        "info": {"mimetype": "audio/ogg", "size": len(data), "duration": 1000},
        "media_ref": sha(data),
        "org.matrix.msc3245.voice": {},
    }


@pytest.mark.parametrize("failure", ["no_attachment", "too_big", "download"])
def test_an_attachment_that_could_not_be_had(failure: str) -> None:
    [entry] = media.media_stored(
        "p1", "@doc:practice", "$a2", "file", {"msgtype": "m.file"}, None, failure=failure
    )
    assert entry == AppendAudit(
        "p1",
        "media.stored",
        "@doc:practice",
        {"kind": "file", "relates_to": "$a2", "reason": failure},
        event_id="$a2",
        outcome="failed",
    )


def test_audio_that_does_not_probe_is_kept_with_the_reason() -> None:
    _keep, entry = media.media_stored(
        "p1", "@pat:practice", "$a3", "audio", {"msgtype": "m.audio"}, b"xx", audio_error="codec"
    )
    assert isinstance(entry, AppendAudit)
    assert entry.outcome == "ok" and entry.details["audio"] == "codec"
    assert "duration_ms" not in entry.details and "codec" not in entry.details


def test_media_record_names_a_file_without_a_filename() -> None:
    record = media.media_record({"msgtype": "m.file"}, "ab", 3, None)
    assert record == {
        "msgtype": "m.file",
        "body": None,
        "filename": "media",
        "info": {"size": 3},
        "media_ref": "ab",
    }


def test_voice_queued_and_relayed() -> None:
    assert media.voice_queued("p1", "admin", "j1", "ref", 10, 900) == AppendAudit(
        "p1",
        "voice.queued",
        "admin",
        {"job_id": "j1", "media_ref": "ref", "size": 10, "duration_ms": 900},
    )
    post = {
        **VOICE_CONTENT,
        "org.matrix.msc1767.file": {"url": "mxc://x/y", "file": {"key": "secret"}},
    }
    effects = media.voice_relayed(
        "p1",
        PAIR.room_id,
        "admin",
        "j1",
        post,
        media_ref="ref",
        size=10,
        duration_ms=900,
        filename="Voice message.ogg",
    )
    assert effects[0] == PostContent(PAIR.room_id, post, "voice.j1", "voice", pair_id="p1")
    entry = effects[1]
    assert isinstance(entry, AppendAudit)
    assert (entry.action, entry.actor, entry.outcome) == ("relay.voice", "admin", "ok")
    assert entry.details == {
        "kind": "voice",
        "job_id": "j1",
        "media_ref": "ref",
        "size": 10,
        "duration_ms": 900,
    }
    assert entry.content is not None
    kept = json.loads(entry.content)
    assert "secret" not in entry.content.decode()  # the upload's keys stay out of the audit
    assert "file" not in kept and kept["org.matrix.msc1767.file"] == {"url": "mxc://x/y"}
    assert (kept["media_ref"], kept["filename"]) == ("ref", "Voice message.ogg")
    assert media.voice_relay_failed("p1", "admin", "j1", "no_room") == AppendAudit(
        "p1", "relay.voice", "admin", {"job_id": "j1", "reason": "no_room"}, outcome="failed"
    )


# ---------------------------------------------------------------- self-check


@pytest.mark.parametrize(("repost", "outcome"), [("t1.repost", "reposted"), (None, "not_repaired")])
def test_unreadable_post(repost: str | None, outcome: str) -> None:
    entry = selfcheck.post_unreadable("p1", PAIR.room_id, "t1", repost_txn_id=repost, event_id="$p")
    details: dict[str, Any] = {"room_id": PAIR.room_id, "txn_id": "t1"}
    if repost is not None:
        details["repost_txn_id"] = repost
    assert entry == AppendAudit(
        "p1", "post.unreadable", selfcheck.ACTOR, details, event_id="$p", outcome=outcome
    )


def test_repaired_post() -> None:
    assert selfcheck.post_repaired("p1", "$orig", "t1.repost", "$again") == AppendAudit(
        "p1",
        "post.repaired",
        selfcheck.ACTOR,
        {"original_event_id": "$orig", "txn_id": "t1.repost"},
        event_id="$again",
    )


# ---------------------------------------------------------------- unread notice


@pytest.mark.parametrize(
    ("reply_ms", "read_ms", "sent"),
    [
        (None, None, False),  # no therapist message to read
        (1000, None, True),  # never read
        (1000, 999, True),  # read before the reply
        (1000, 1000, False),
        (1000, 2000, False),
    ],
)
def test_unread_notice(reply_ms: int | None, read_ms: int | None, sent: bool) -> None:
    effects = unread.unread_notice(
        "p1",
        "pat@example.org",
        reply_ms=reply_ms,
        read_ms=read_ms,
        practice_name="Praxis",
        web_client_url="https://app.element.io",
    )
    if not sent:
        assert effects == []
        return
    assert effects == [
        SendEmail(
            "pat@example.org",
            "new_secure_message",
            {"practice_name": "Praxis", "web_client_url": "https://app.element.io"},
        ),
        AppendAudit("p1", "notify.unread_email", unread.ACTOR, {"template": "new_secure_message"}),
    ]


def test_pair_invitation_and_requeue_entries() -> None:
    from bridge.core import email_queue, invitations, rooms

    assert rooms.desk_created("@t:p") == AppendAudit(
        None, "desk.created", "admin", {"therapist": "@t:p"}
    )
    assert rooms.pair_created(
        "p1", "cli", patient="@a:p", therapist="@t:p", room_id="!r:p", policy="default"
    ) == AppendAudit(
        "p1",
        "pair.created",
        "cli",
        {"patient": "@a:p", "therapist": "@t:p", "room_id": "!r:p", "policy": "default"},
    )
    assert rooms.pair_reassigned("p1", "cli", "@t:p", "@u:p").details == {
        "from": "@t:p",
        "to": "@u:p",
    }
    assert rooms.pair_removed("p1", "cli") == AppendAudit("p1", "pair.removed", "cli", {})
    assert invitations.invitation_created("I1", "cli", "@t:p", 5).details == {
        "invitation_id": "I1",
        "therapist": "@t:p",
        "expires_at": 5,
    }
    assert invitations.invitation_sent("I1", "cli", 2).details == {
        "invitation_id": "I1",
        "count": 2,
    }
    assert invitations.invitation_closed("I1", "cli", "revoked").action == "invitation.revoked"
    used = invitations.invitation_used("I1", "onboarding", "p1", "@a:p")
    assert (used.pair_id, used.details) == ("p1", {"invitation_id": "I1", "patient": "@a:p"})
    requeued = email_queue.email_requeued("p1", "E1", "timeout")
    assert (requeued.action, requeued.actor) == ("email.requeued", "admin")
    assert requeued.details == {"email_id": "E1", "previous_error": "timeout"}
