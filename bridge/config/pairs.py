"""`pairs:` how the pair rooms (and the therapists' desk rooms) are created."""

from __future__ import annotations

from pydantic import Field

from bridge.config.section import Section


class Pairs(Section):
    """Settings of the rooms Confidant creates."""

    #: The room version new rooms get; None: the homeserver's default. Version 12 room ids
    #: have no `:server` part, which some clients (matrix-commander) still reject.
    room_version: str | None = Field(default=None, pattern=r"^[0-9a-z.-]{1,32}$")
