"""Jitsi meetings for a pair room: meeting names, links, token claims and Element widget events.

Everything here is pure: randomness and time come in as arguments, so the core can build
the state events and texts of `!video` and scheduled sessions, and tests can pin them.
Signing the token and drawing the randomness happen in `bridge.adapters.video`.
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import Any, NotRequired, TypedDict
from urllib.parse import quote, urlencode

#: State event type Element reads room widgets from (the legacy name; Element still sends it).
WIDGET_EVENT_TYPE = "im.vector.modular.widgets"
#: State event type (state key "") of Element's widget layout.
LAYOUT_EVENT_TYPE = "io.element.widgets.layout"
#: Widget type Element recognises as Jitsi (the legacy name it sends itself).
JITSI_WIDGET_TYPE = "jitsi"
#: Element's Jitsi wrapper page. Element renders Jitsi widgets from `data` with its own
#: local wrapper; the URL matters only to clients that do not, so Element's public one is used.
ELEMENT_JITSI_WRAPPER = "https://app.element.io/jitsi.html"
#: Prefix of every meeting name, so a Jitsi operator can tell Confidant's meetings apart.
ROOM_PREFIX = "confidant-"
#: Bytes of randomness in a meeting name (128 bits: not guessable, not enumerable).
ROOM_ENTROPY_BYTES = 16
#: Tokens are valid from a little before `now`: the Jitsi server's clock may run behind ours.
CLOCK_SKEW = timedelta(seconds=60)

# The variables Element substitutes in a Jitsi widget URL (WidgetUtils.getLocalJitsiWrapperUrl).
# They stay literal: `$` must not be percent-encoded or Element will not replace them.
_WRAPPER_FRAGMENT = "&".join(
    [
        "conferenceDomain=$domain",
        "conferenceId=$conferenceId",
        "isAudioOnly=$isAudioOnly",
        "startWithAudioMuted=$startWithAudioMuted",
        "startWithVideoMuted=$startWithVideoMuted",
        "isVideoChannel=$isVideoChannel",
        "displayName=$matrix_display_name",
        "avatarUrl=$matrix_avatar_url",
        "userId=$matrix_user_id",
        "roomId=$matrix_room_id",
        "theme=$theme",
        "roomName=$roomName",
        "supportsScreensharing=true",
        "language=$org.matrix.msc2873.client_language",
    ]
)


class JitsiUser(TypedDict):
    """Who a meeting token is for, as Jitsi shows them (`context.user`)."""

    id: str
    name: str
    email: NotRequired[str]
    avatar: NotRequired[str]


def room_name_from_entropy(entropy: bytes) -> str:
    """Build a meeting name from random bytes: `confidant-` and lower-case unpadded base32.

    Jitsi folds room names to lower case, so the name is lower case from the start.
    """
    if len(entropy) < ROOM_ENTROPY_BYTES:
        raise ValueError(f"a meeting name needs at least {ROOM_ENTROPY_BYTES} random bytes")
    encoded = base64.b32encode(entropy).decode("ascii").rstrip("=").lower()
    return ROOM_PREFIX + encoded


def is_room_name(value: str) -> bool:
    """Tell whether `value` looks like a meeting name made by `room_name_from_entropy`."""
    if not value.startswith(ROOM_PREFIX):
        return False
    rest = value[len(ROOM_PREFIX) :]
    return len(rest) >= 26 and all(c in "abcdefghijklmnopqrstuvwxyz234567" for c in rest)


def _check_domain(domain: str) -> None:
    if not domain or "/" in domain or "?" in domain or "#" in domain or "@" in domain:
        raise ValueError("the Jitsi domain is a host name like meet.example.org, without https://")


def meeting_link(domain: str, room: str, jwt: str | None = None) -> str:
    """Give the plain meeting link, with `?jwt=` for a token-authenticated Jitsi."""
    _check_domain(domain)
    link = f"https://{domain}/{quote(room, safe='')}"
    if jwt is not None:
        link += "?" + urlencode({"jwt": jwt})
    return link


def jitsi_claims(
    *,
    app_id: str,
    audience: str,
    domain: str,
    room: str,
    user: JitsiUser,
    moderator: bool,
    now: datetime,
    lifetime: timedelta,
) -> dict[str, Any]:
    """Build the claims of a Jitsi token (prosody `token_verification`) for one user and room.

    `context.user` values are all strings, as Jitsi expects (`moderator` is "true"/"false");
    `affiliation` carries the same fact for servers using prosody's token affiliation module.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if lifetime <= timedelta(0):
        raise ValueError("a token lifetime must be positive")
    _check_domain(domain)
    context_user: dict[str, str] = {"id": user["id"], "name": user["name"]}
    if "email" in user:
        context_user["email"] = user["email"]
    if "avatar" in user:
        context_user["avatar"] = user["avatar"]
    context_user["moderator"] = "true" if moderator else "false"
    context_user["affiliation"] = "owner" if moderator else "member"
    return {
        "aud": audience,
        "iss": app_id,
        "sub": domain,
        "room": room,
        "nbf": int((now - CLOCK_SKEW).timestamp()),
        "exp": int((now + lifetime).timestamp()),
        "context": {"user": context_user},
    }


def widget_id_for(room: str) -> str:
    """Give the widget id (the state key) of the widget for meeting `room`.

    Derived from the meeting name, so `!video end` finds it again from what is stored.
    """
    return "confidant_" + room.replace("-", "_")


def widget_url(room: str, *, wrapper: str = ELEMENT_JITSI_WRAPPER) -> str:
    """Build the widget URL the way Element does: `confId` query plus `$`-variables fragment."""
    return f"{wrapper}?{urlencode({'confId': room})}#{_WRAPPER_FRAGMENT}"


def widget_state_content(
    domain: str,
    room: str,
    name: str,
    *,
    audio_only: bool = False,
    wrapper: str = ELEMENT_JITSI_WRAPPER,
) -> tuple[str, dict[str, Any]]:
    """Give `(state_key, content)` of the `im.vector.modular.widgets` event for a meeting.

    The shape is the one Element sends for its own Jitsi calls; Element renders from `data`.
    `name` is public to the homeserver (state is not encrypted): never put a patient name in it.
    """
    _check_domain(domain)
    content: dict[str, Any] = {
        "type": JITSI_WIDGET_TYPE,
        "url": widget_url(room, wrapper=wrapper),
        "name": name,
        "data": {
            "domain": domain,
            "conferenceId": room,
            "roomName": name,
            "isAudioOnly": audio_only,
            "isVideoChannel": False,
        },
    }
    return widget_id_for(room), content


def remove_widget_content(room: str) -> tuple[str, dict[str, Any]]:
    """Give `(state_key, content)` that removes the widget of `room`: empty content, same key."""
    return widget_id_for(room), {}


def layout_state_content(widget_id: str, *, height: int = 50) -> dict[str, Any]:
    """Give the `io.element.widgets.layout` content (state key "") pinning one widget on top."""
    if not 0 < height <= 100:
        raise ValueError("height is a percentage between 1 and 100")
    return {
        "widgets": {widget_id: {"container": "top", "index": 0, "width": 100, "height": height}}
    }
