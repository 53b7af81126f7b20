"""Jitsi meeting names, links, tokens and Element widget events."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

from bridge.adapters.video import (
    JitsiUser,
    is_room_name,
    jitsi_jwt,
    layout_state_content,
    meeting_link,
    new_room_name,
    remove_widget_content,
    widget_id_for,
    widget_state_content,
)
from bridge.core.video_rooms import CLOCK_SKEW, room_name_from_entropy

SECRET = "s3cret-for-tests-only-0123456789abcdef"
NOW = datetime(2025, 3, 30, 0, 30, tzinfo=UTC)
THERAPIST: JitsiUser = {
    "id": "@okafor:practice.example",
    "name": "Dr Okafor",
    "email": "okafor@practice.example",
    "avatar": "https://practice.example/a.png",
}
PATIENT: JitsiUser = {"id": "@p7f3a:practice.example", "name": "Patient 7F3A"}


def _claims(token: str) -> dict[str, Any]:
    # Shape checks use a fixed past `now`; validity against the clock is tested separately.
    return jwt.decode(
        token,
        SECRET,
        algorithms=["HS256"],
        audience="jitsi",
        options={"verify_exp": False, "verify_nbf": False},
    )


def _token(user: JitsiUser, *, moderator: bool, now: datetime = NOW) -> str:
    return jitsi_jwt(
        "confidant",
        SECRET,
        "jitsi",
        "meet.practice.example",
        "confidant-room",
        user,
        moderator,
        now,
        timedelta(hours=2),
    )


# ------------------------------------------------------------------ names


def test_room_names_are_long_lower_case_base32_and_unique() -> None:
    names = {new_room_name() for _ in range(2000)}
    assert len(names) == 2000
    for name in names:
        assert name.startswith("confidant-")
        suffix = name.removeprefix("confidant-")
        assert len(suffix) == 26  # 128 bits in unpadded base32
        assert set(suffix) <= set(string.ascii_lowercase + "234567")
        assert is_room_name(name)


def test_room_name_is_a_function_of_its_entropy() -> None:
    entropy = bytes(range(16))
    assert room_name_from_entropy(entropy) == room_name_from_entropy(entropy)
    assert room_name_from_entropy(entropy) != room_name_from_entropy(bytes(range(1, 17)))
    with pytest.raises(ValueError):
        room_name_from_entropy(b"\x00" * 8)


@pytest.mark.parametrize("value", ["confidant-abc", "other-" + "a" * 26, "confidant-" + "A" * 26])
def test_is_room_name_refuses_other_names(value: str) -> None:
    assert not is_room_name(value)


# ------------------------------------------------------------------ links


def test_meeting_link_plain_and_with_token() -> None:
    assert meeting_link("meet.example.org", "confidant-x") == "https://meet.example.org/confidant-x"
    token = _token(PATIENT, moderator=False)
    link = meeting_link("meet.example.org", "confidant-x", token)
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "meet.example.org", "/confidant-x")
    assert parse_qs(parts.query) == {"jwt": [token]}


@pytest.mark.parametrize("domain", ["https://meet.example.org", "meet.example.org/x", ""])
def test_meeting_link_refuses_a_url_as_domain(domain: str) -> None:
    with pytest.raises(ValueError):
        meeting_link(domain, "confidant-x")


# ------------------------------------------------------------------ tokens


def test_token_carries_the_claims_jitsi_checks() -> None:
    claims = _claims(_token(THERAPIST, moderator=True))
    assert claims["aud"] == "jitsi"
    assert claims["iss"] == "confidant"
    assert claims["sub"] == "meet.practice.example"
    assert claims["room"] == "confidant-room"
    assert claims["nbf"] == int((NOW - CLOCK_SKEW).timestamp())
    assert claims["exp"] == int((NOW + timedelta(hours=2)).timestamp())
    assert claims["context"] == {
        "user": {
            "id": "@okafor:practice.example",
            "name": "Dr Okafor",
            "email": "okafor@practice.example",
            "avatar": "https://practice.example/a.png",
            "moderator": "true",
            "affiliation": "owner",
        }
    }


def test_patient_token_is_not_moderator_and_has_only_given_fields() -> None:
    user = _claims(_token(PATIENT, moderator=False))["context"]
    assert user == {
        "user": {
            "id": "@p7f3a:practice.example",
            "name": "Patient 7F3A",
            "moderator": "false",
            "affiliation": "member",
        }
    }
    assert all(isinstance(v, str) for v in user["user"].values())


def test_token_header_is_hs256() -> None:
    assert jwt.get_unverified_header(_token(PATIENT, moderator=False))["alg"] == "HS256"


def test_token_verifies_now_and_not_with_another_secret_or_later() -> None:
    now = datetime.now(UTC)
    token = _token(PATIENT, moderator=False, now=now)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="jitsi")
    assert claims["room"] == "confidant-room"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, SECRET + "x", algorithms=["HS256"], audience="jitsi")
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(token, SECRET, algorithms=["HS256"], audience="other")
    stale = _token(PATIENT, moderator=False, now=now - timedelta(hours=3))
    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(stale, SECRET, algorithms=["HS256"], audience="jitsi")


def test_token_refuses_naive_time_empty_secret_and_no_lifetime() -> None:
    args = ("confidant", SECRET, "jitsi", "meet.example.org", "r", PATIENT, False)
    with pytest.raises(ValueError):
        jitsi_jwt(*args, datetime(2025, 1, 1), timedelta(hours=1))
    with pytest.raises(ValueError):
        jitsi_jwt(*args, NOW, timedelta(0))
    with pytest.raises(ValueError):
        jitsi_jwt(
            "confidant", "", "jitsi", "meet.example.org", "r", PATIENT, False, NOW, timedelta(1)
        )


# ------------------------------------------------------------------ widget events


def test_widget_event_has_elements_jitsi_shape() -> None:
    room = new_room_name()
    state_key, content = widget_state_content("meet.practice.example", room, "Video session")
    assert state_key == widget_id_for(room)
    assert set(content) == {"type", "url", "name", "data"}
    assert content["type"] == "jitsi"
    assert content["name"] == "Video session"
    assert content["data"] == {
        "domain": "meet.practice.example",
        "conferenceId": room,
        "roomName": "Video session",
        "isAudioOnly": False,
        "isVideoChannel": False,
    }
    url = urlsplit(content["url"])
    assert (url.scheme, url.netloc, url.path) == ("https", "app.element.io", "/jitsi.html")
    assert parse_qs(url.query) == {"confId": [room]}
    # Element substitutes these variables itself; they must stay literal.
    fragment = dict(part.split("=", 1) for part in url.fragment.split("&"))
    assert fragment["conferenceDomain"] == "$domain"
    assert fragment["conferenceId"] == "$conferenceId"
    assert fragment["isAudioOnly"] == "$isAudioOnly"
    assert fragment["userId"] == "$matrix_user_id"
    assert fragment["displayName"] == "$matrix_display_name"
    assert fragment["roomId"] == "$matrix_room_id"


def test_audio_only_widget() -> None:
    _, content = widget_state_content("meet.example.org", "confidant-r", "Call", audio_only=True)
    assert content["data"]["isAudioOnly"] is True


def test_widget_ids_differ_per_meeting_and_removal_uses_the_same_key() -> None:
    first, second = new_room_name(), new_room_name()
    assert widget_id_for(first) != widget_id_for(second)
    assert remove_widget_content(first) == (widget_state_content("m.org", first, "n")[0], {})


def test_layout_pins_the_widget_on_top() -> None:
    assert layout_state_content("w1") == {
        "widgets": {"w1": {"container": "top", "index": 0, "width": 100, "height": 50}}
    }
    with pytest.raises(ValueError):
        layout_state_content("w1", height=0)
