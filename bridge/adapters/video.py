"""Jitsi meetings: unguessable meeting names and signed per-user tokens.

The event shapes and links are pure and live in `bridge.core.video_rooms`; they are
re-exported here so callers have one import for everything video.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import jwt

from bridge.core.video_rooms import (
    ELEMENT_JITSI_WRAPPER,
    JITSI_WIDGET_TYPE,
    LAYOUT_EVENT_TYPE,
    ROOM_ENTROPY_BYTES,
    WIDGET_EVENT_TYPE,
    JitsiUser,
    is_room_name,
    jitsi_claims,
    layout_state_content,
    meeting_link,
    remove_widget_content,
    room_name_from_entropy,
    widget_id_for,
    widget_state_content,
    widget_url,
)

__all__ = [
    "ELEMENT_JITSI_WRAPPER",
    "JITSI_WIDGET_TYPE",
    "LAYOUT_EVENT_TYPE",
    "WIDGET_EVENT_TYPE",
    "JitsiUser",
    "is_room_name",
    "jitsi_jwt",
    "layout_state_content",
    "meeting_link",
    "new_room_name",
    "remove_widget_content",
    "widget_id_for",
    "widget_state_content",
    "widget_url",
]


def new_room_name() -> str:
    """Draw a fresh meeting name: `confidant-` and 128 random bits in lower-case base32."""
    return room_name_from_entropy(secrets.token_bytes(ROOM_ENTROPY_BYTES))


def jitsi_jwt(
    app_id: str,
    secret: str,
    audience: str,
    domain: str,
    room: str,
    user: JitsiUser,
    moderator: bool,
    now: datetime,
    lifetime: timedelta,
) -> str:
    """Sign an HS256 token that lets `user` into `room` on a token-authenticated Jitsi.

    `app_id` and `secret` are prosody's `app_id` and `app_secret`; `audience` is usually
    "jitsi". The token is valid from a minute before `now` until `now + lifetime`.
    """
    if not secret:
        raise ValueError("the Jitsi app secret is empty")
    claims = jitsi_claims(
        app_id=app_id,
        audience=audience,
        domain=domain,
        room=room,
        user=user,
        moderator=moderator,
        now=now,
        lifetime=lifetime,
    )
    return jwt.encode(claims, secret, algorithm="HS256")
