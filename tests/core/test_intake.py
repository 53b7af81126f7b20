"""Classifying pair-room events: kind, role, what they point at, commands, content digest."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from bridge.core.intake import command_text, content_digest, kind_of, relates_to, role_of
from bridge.core.model import CONVERSATIONAL_KINDS, Kind, Pair, Role

BOT = "@confidant:practice"
PAIR = Pair("p1", "@pat:practice", "@doc:practice", "!room:practice", label="7F3A")

VOICE = {
    "msgtype": "m.audio",
    "body": "Voice message",
    "org.matrix.msc3245.voice": {},
    "org.matrix.msc1767.audio": {"duration": 3000, "waveform": [0, 512, 1024]},
}
EDIT = {
    "msgtype": "m.text",
    "body": "* fixed",
    "m.new_content": {"msgtype": "m.text", "body": "fixed"},
    "m.relates_to": {"rel_type": "m.replace", "event_id": "$orig"},
}

# (event type, content, state_key, expected kind)
KIND_CASES: list[tuple[str, dict[str, Any], str | None, Kind]] = [
    ("m.room.message", {"msgtype": "m.text", "body": "hello"}, None, Kind.TEXT),
    ("m.room.message", {"msgtype": "m.notice", "body": "note"}, None, Kind.NOTICE),
    ("m.room.message", {"msgtype": "m.emote", "body": "waves"}, None, Kind.EMOTE),
    ("m.room.message", {"msgtype": "m.image", "body": "a.png"}, None, Kind.IMAGE),
    ("m.room.message", {"msgtype": "m.file", "body": "a.pdf"}, None, Kind.FILE),
    ("m.room.message", {"msgtype": "m.audio", "body": "a.mp3"}, None, Kind.AUDIO),
    ("m.room.message", VOICE, None, Kind.VOICE),
    ("m.room.message", {"msgtype": "m.video", "body": "a.mp4"}, None, Kind.VIDEO),
    ("m.room.message", {"msgtype": "m.location", "geo_uri": "geo:1,2"}, None, Kind.LOCATION),
    ("m.room.message", {"msgtype": "org.example.custom", "body": "?"}, None, Kind.OTHER),
    ("m.room.message", {"body": "no msgtype"}, None, Kind.OTHER),
    ("m.room.message", EDIT, None, Kind.EDIT),
    ("m.sticker", {"body": "cat", "url": "mxc://x/y"}, None, Kind.IMAGE),
    (
        "m.reaction",
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$e", "key": "👍"}},
        None,
        Kind.REACTION,
    ),
    ("m.room.redaction", {"reason": "typo"}, None, Kind.REDACTION),
    ("m.room.member", {"membership": "join"}, "@pat:practice", Kind.MEMBERSHIP),
    ("m.room.member", {"membership": "leave"}, "@out:elsewhere", Kind.MEMBERSHIP),
    ("m.room.topic", {"topic": "t"}, "", Kind.STATE),
    ("im.vector.modular.widgets", {"type": "jitsi"}, "widget1", Kind.STATE),
    ("m.room.encrypted", {"algorithm": "m.megolm.v1.aes-sha2"}, None, Kind.UNDECRYPTABLE),
    ("m.call.invite", {"call_id": "c"}, None, Kind.OTHER),
]


@pytest.mark.parametrize(
    ("event_type", "content", "state_key", "expected"),
    KIND_CASES,
    ids=[f"{case[0]}:{case[3].value}" for case in KIND_CASES],
)
def test_kind_of(
    event_type: str, content: dict[str, Any], state_key: str | None, expected: Kind
) -> None:
    assert kind_of(event_type, content, state_key) is expected


def test_every_kind_but_email_comes_from_some_matrix_event() -> None:
    # E-mail arrives over SMTP, not as a room event; every other kind must be reachable.
    produced = {expected for *_, expected in KIND_CASES}
    assert set(Kind) - produced == {Kind.EMAIL}


def test_plain_audio_is_not_a_voice_message_and_both_count_for_the_clock() -> None:
    plain = kind_of("m.room.message", {"msgtype": "m.audio", "body": "x"}, None)
    voice = kind_of("m.room.message", VOICE, None)
    assert (plain, voice) == (Kind.AUDIO, Kind.VOICE)
    assert {plain, voice} <= CONVERSATIONAL_KINDS


def test_a_reply_is_still_its_message_kind() -> None:
    reply = {
        "msgtype": "m.text",
        "body": "> <@doc:practice> hi\n\nhello",
        "m.relates_to": {"m.in_reply_to": {"event_id": "$parent"}},
    }
    assert kind_of("m.room.message", reply, None) is Kind.TEXT


def test_an_edit_does_not_count_as_a_new_message() -> None:
    assert Kind.EDIT not in CONVERSATIONAL_KINDS
    assert Kind.REACTION not in CONVERSATIONAL_KINDS


@pytest.mark.parametrize(
    ("sender", "expected"),
    [
        (BOT, Role.BOT),
        ("@pat:practice", Role.PATIENT),
        ("@doc:practice", Role.THERAPIST),
        ("@other:practice", Role.OUTSIDER),
        ("@pat:elsewhere", Role.OUTSIDER),  # same local part, other server
        ("", Role.OUTSIDER),
    ],
)
def test_role_of(sender: str, expected: Role) -> None:
    assert role_of(sender, PAIR, BOT) is expected


@pytest.mark.parametrize(
    ("content", "redacts", "expected"),
    [
        ({}, "$target", "$target"),
        ({"reason": "oops"}, "$target", "$target"),
        (EDIT, None, "$orig"),
        ({"m.relates_to": {"m.in_reply_to": {"event_id": "$parent"}}}, None, "$parent"),
        (
            {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$liked", "key": "x"}},
            None,
            "$liked",
        ),
        ({"m.relates_to": {"m.in_reply_to": "not a dict"}}, None, None),
        ({"m.relates_to": "garbage"}, None, None),
        ({"msgtype": "m.text", "body": "plain"}, None, None),
        ({}, None, None),
        ({}, "", None),
    ],
    ids=[
        "redaction",
        "redaction-with-reason",
        "edit",
        "reply",
        "reaction",
        "malformed-reply",
        "malformed-relation",
        "plain",
        "empty",
        "empty-redacts",
    ],
)
def test_relates_to(content: dict[str, Any], redacts: str | None, expected: str | None) -> None:
    assert relates_to(content, redacts) == expected


@pytest.mark.parametrize(
    ("kind", "body", "expected"),
    [
        (Kind.TEXT, "!help", "!help"),
        (Kind.TEXT, "  !video now  ", "!video now"),
        (Kind.TEXT, "!export 2024-01-01", "!export 2024-01-01"),
        (Kind.TEXT, "!x", "!x"),
        (Kind.TEXT, "! help", None),
        (Kind.TEXT, "!\thelp", None),
        (Kind.TEXT, "!", None),
        (Kind.TEXT, "", None),
        (Kind.TEXT, "wow!", None),
        (Kind.TEXT, "help!", None),
        (Kind.NOTICE, "!help", None),
        (Kind.EMOTE, "!help", None),
        (Kind.EDIT, "!help", None),
        (Kind.FILE, "!help", None),
    ],
)
def test_command_text(kind: Kind, body: str, expected: str | None) -> None:
    assert command_text(kind, {"msgtype": "m.text", "body": body}) == expected


def test_command_text_without_body() -> None:
    assert command_text(Kind.TEXT, {"msgtype": "m.text"}) is None


def test_content_digest_is_stable_across_key_order_and_known() -> None:
    a = {"msgtype": "m.text", "body": "héllo", "m.relates_to": {"event_id": "$e", "x": 1}}
    b = {"m.relates_to": {"x": 1, "event_id": "$e"}, "body": "héllo", "msgtype": "m.text"}
    assert content_digest(a) == content_digest(b)
    # Canonical JSON (sorted keys, no spaces, UTF-8): a fixed value, so it never drifts
    # between releases and an exported transcript can be checked against the audit chain.
    assert content_digest({}) == (
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    )
    canonical = '{"body":"héllo","msgtype":"m.text"}'.encode()
    assert content_digest({"msgtype": "m.text", "body": "héllo"}) == (
        hashlib.sha256(canonical).hexdigest()
    )
    assert len(content_digest(a)) == 64


def test_content_digest_tells_contents_apart() -> None:
    base = {"msgtype": "m.text", "body": "hello"}
    assert content_digest(base) != content_digest({**base, "body": "hello "})
    assert content_digest(base) != content_digest({**base, "msgtype": "m.notice"})
    assert content_digest({"n": 1}) != content_digest({"n": "1"})
