"""The bot's rooms and their members, kept over a clean restart.

nio keeps no room state across restarts, and key sharing needs every room's members, so
the first sync after a start has asked for every room's full state: at 5,000 rooms that
sync alone takes Synapse 12 s. At a clean stop the rooms nio knows (whether each is
encrypted, who has joined, who is invited) are written here with the sync token they go
with; the next start rebuilds them and syncs on from that token, incrementally, which
brings every membership change since.

The snapshot is used only when its token is the one the bridge stored, and it is removed
as it is read: after a crash, a standby's takeover or a restore, the next start asks for
full state as before. It holds Matrix user ids only (no display names), as the pairs
table does, in a file only the bridge's user can read.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from nio import AsyncClient, MatrixRoom

log = logging.getLogger(__name__)

SNAPSHOT_FILE = "rooms.json"
VERSION = 1


def save(client: AsyncClient, directory: Path, token: str) -> int:
    """Write the rooms nio knows with `token`; returns how many."""
    rooms: dict[str, dict[str, Any]] = {}
    for room_id, room in client.rooms.items():
        invited = set(room.invited_users)
        rooms[room_id] = {
            "encrypted": bool(room.encrypted),
            "joined": sorted(u for u in room.users if u not in invited),
            "invited": sorted(invited),
        }
    path = directory / SNAPSHOT_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"version": VERSION, "token": token, "rooms": rooms}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return len(rooms)


def restore(client: AsyncClient, directory: Path, token: str | None) -> int | None:
    """Rebuild the rooms written with `token`; None (nothing rebuilt) when there is no
    snapshot, it is unreadable, or it goes with another token. The file is removed."""
    path = directory / SNAPSHOT_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("room snapshot unreadable; full state", extra={"error": type(exc).__name__})
        path.unlink(missing_ok=True)
        return None
    path.unlink(missing_ok=True)
    if (
        not isinstance(data, dict)
        or data.get("version") != VERSION
        or token is None
        or data.get("token") != token
    ):
        log.info("room snapshot does not match the sync token; full state")
        return None
    try:
        rooms = {room_id: _room(client, room_id, info) for room_id, info in data["rooms"].items()}
    except (AttributeError, KeyError, TypeError) as exc:
        log.warning("room snapshot malformed; full state", extra={"error": type(exc).__name__})
        return None
    for room_id, room in rooms.items():
        client.rooms[room_id] = room
        if room.encrypted:
            client.encrypted_rooms.add(room_id)
            if client.olm is not None:
                client.olm.update_tracked_users(room)
    return len(rooms)


def _room(client: AsyncClient, room_id: str, info: dict[str, Any]) -> MatrixRoom:
    room = MatrixRoom(str(room_id), client.user_id, bool(info["encrypted"]))
    for user_id in info["joined"]:
        room.add_member(str(user_id), None, None)
    for user_id in info["invited"]:
        room.add_member(str(user_id), None, None, invited=True)
    return room
