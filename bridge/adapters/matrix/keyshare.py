"""Room-key sharing that is checked: a Megolm session counts as shared only where it arrived.

matrix-nio 0.26 `AsyncClient.share_group_session` sends the room key to every member
device with `/sendToDevice`, gathers the requests with `return_exceptions=True` and then
marks the outbound session as shared whatever happened. One 502 from a proxy during a
homeserver restart is then enough to make that post, and every later post in the room,
undecryptable for the devices that missed the key, with nothing noticing.

`CheckedKeyShareClient` replaces that one method. A device counts as having the key only
when the to-device request that carried it succeeded. If any trusted member device still
lacks it (a failed request, no Olm session because the one-time key claim failed), the
session stays unshared and `KeyShareIncomplete` is raised before anything is encrypted
with it: the post waits in the outbox, and the retry sends the same session's key only to
the devices that missed it. No post is therefore encrypted with a session that a member
device was meant to get and did not, so there is never a need to rotate after a failure.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from uuid import uuid4

from nio import AsyncClient, ShareGroupSessionError, ShareGroupSessionResponse
from nio.api import Api
from nio.exceptions import LocalProtocolError
from nio.rooms import MatrixRoom

log = logging.getLogger(__name__)

DeviceRef = tuple[str, str]  # (user id, device id)


class KeyShareIncomplete(Exception):
    """Some member devices have not received the room key yet; nothing was encrypted."""

    def __init__(self, room_id: str, missing: set[DeviceRef]) -> None:
        super().__init__(f"room key not delivered to {len(missing)} device(s)")
        self.room_id = room_id
        self.missing = frozenset(missing)


class CheckedKeyShareClient(AsyncClient):  # type: ignore[misc]
    """An `AsyncClient` whose group-session sharing fails loudly instead of silently."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Rooms whose last key share left member devices out, with those devices.
        self.unshared: dict[str, frozenset[DeviceRef]] = {}

    async def share_group_session(
        self, room_id: str, ignore_unverified_devices: bool = False
    ) -> ShareGroupSessionResponse | ShareGroupSessionError:
        """Share the room's outbound session; raise `KeyShareIncomplete` unless every
        trusted member device has it."""
        assert self.olm
        room = self.rooms.get(room_id)
        if room is None:
            raise LocalProtocolError(f"No such room with id {room_id}")
        if not room.encrypted:
            raise LocalProtocolError(f"Room with id {room_id} is not encrypted")
        if room_id in self.sharing_session:
            raise LocalProtocolError(f"Already sharing a group session for {room_id}")
        self.sharing_session[room_id] = asyncio.Event()
        try:
            missing_sessions = self.get_missing_sessions(room_id)
            if missing_sessions:
                # A failed claim leaves those devices without an Olm session; they are
                # found below as devices that did not get the key.
                await self.keys_claim(missing_sessions)
            if room_id not in self.olm.outbound_group_sessions:
                self.olm.create_outbound_group_session(room_id)
            session = self.olm.outbound_group_sessions[room_id]
            if session.shared:
                # A shared session that needs sharing has expired: nio rotates it below.
                before: set[DeviceRef] = set()
            else:
                before = set(session.users_shared_with)
            shared = await self._send_room_keys(room, ignore_unverified_devices)
            session = self.olm.outbound_group_sessions[room_id]
            # nio's own bookkeeping (receive_response) counts a 502 with an HTML body as a
            # success, because it parses as an empty JSON object: the record is rebuilt from
            # the answers that really were 2xx.
            session.users_shared_with.clear()
            session.users_shared_with.update(before | shared)
            missing = self._devices_without_key(room)
            if missing:
                session.shared = False
                self.unshared[room_id] = frozenset(missing)
                log.warning(
                    "room key not delivered; the post waits",
                    extra={"room_id": room_id, "devices": len(missing)},
                )
                raise KeyShareIncomplete(room_id, missing)
            self.unshared.pop(room_id, None)
            session.shared = True
        finally:
            self.sharing_session.pop(room_id).set()
        return ShareGroupSessionResponse(room_id, shared)

    async def _send_room_keys(
        self, room: MatrixRoom, ignore_unverified_devices: bool
    ) -> set[DeviceRef]:
        """Send the key in to-device batches; the devices whose batch succeeded."""
        assert self.olm
        batches: list[set[DeviceRef]] = []
        requests = []
        for sharing_with, to_device in self.olm.share_group_session_parallel(
            room.room_id,
            list(room.users.keys()),
            ignore_unverified_devices=ignore_unverified_devices,
        ):
            method, path, data = Api.to_device(
                self.access_token, "m.room.encrypted", to_device, uuid4()
            )
            batches.append(sharing_with)
            requests.append(
                self._send(
                    ShareGroupSessionResponse,
                    method,
                    path,
                    data,
                    response_data=(room.room_id, sharing_with),
                )
            )
        shared: set[DeviceRef] = set()
        results = await asyncio.gather(*requests, return_exceptions=True)
        for batch, result in zip(batches, results, strict=True):
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, ShareGroupSessionResponse) and _answered_2xx(result):
                shared |= batch
        return shared

    def _devices_without_key(self, room: MatrixRoom) -> set[DeviceRef]:
        """Member devices that should hold the current session and do not."""
        assert self.olm
        session = self.olm.outbound_group_sessions[room.room_id]
        missing: set[DeviceRef] = set()
        for user_id in room.users:
            for device in self.device_store.active_user_devices(user_id):
                ref = (user_id, device.id)
                if device.id == self.device_id and user_id == self.user_id:
                    continue
                if self.olm.is_device_blacklisted(device):
                    continue  # outsiders' devices get no keys, on purpose
                if ref in session.users_shared_with or ref in session.users_ignored:
                    continue
                missing.add(ref)
        return missing


def _answered_2xx(response: ShareGroupSessionResponse) -> bool:
    transport = getattr(response, "transport_response", None)
    status = getattr(transport, "status", 0) or 0
    return 200 <= status < 300
