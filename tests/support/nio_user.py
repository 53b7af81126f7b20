"""An independent E2EE Matrix client for tests, built on nio's AsyncClient.

It plays a patient or a therapist: its own device, its own crypto store, its own
sync loop. It trusts every device it meets (tests only) and records, per room,
every timeline event it could read and every Megolm event it could not decrypt.

    alice = await NioUser.create(hs.url, "@alice:localhost", "pw", tmp_path / "alice")
    room_id = await alice.create_room(invite=[bob.user_id])
    await alice.wait_joined(room_id, bob.user_id)
    await alice.send_text(room_id, "hello")
    event = await bob.wait_for(room_id, text_is("hello"))
"""

# Waits take an explicit bound (`timeout`) so a failing test ends with a clear message.

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    Event,
    JoinedMembersError,
    JoinError,
    KeysClaimError,
    KeysQueryError,
    KeysUploadError,
    LoginResponse,
    MegolmEvent,
    RoomCreateError,
    RoomMessagesError,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
    ToDeviceError,
    ToDeviceMessage,
)
from nio.api import RoomPreset, RoomVisibility

log = logging.getLogger(__name__)

SYNC_TIMEOUT_MS = 30_000
BACKFILL_PAGES = 20
MEGOLM = "m.megolm.v1.aes-sha2"

EventPredicate = Callable[[Event], bool]


class NioUserError(RuntimeError):
    """A request of the test client failed."""


def text_is(body: str) -> EventPredicate:
    """A predicate matching a text message with exactly this body."""
    return lambda event: isinstance(event, RoomMessageText) and event.body == body


class NioUser:
    """A Matrix user with E2EE and a background sync loop, for tests."""

    def __init__(self, client: AsyncClient, password: str, auto_join: bool) -> None:
        self.client = client
        self.password = password
        self.auto_join = auto_join
        # Everything readable from each room's timeline, decrypted where it was encrypted.
        self.timeline: dict[str, list[Event]] = {}
        # Megolm events that have not been decrypted (yet); retried after each sync.
        self.undecrypted: dict[str, list[MegolmEvent]] = {}
        # Events that only decrypted on a later attempt (room key arrived late).
        self.late_decrypted = 0
        self._seen: set[str] = set()
        self._changed = asyncio.Event()
        self._crypto_lock = asyncio.Lock()
        self._prepared_rooms: set[str] = set()
        self._sync_task: asyncio.Task[None] | None = None
        self._sync_error: BaseException | None = None
        self._listeners: list[Callable[[str, Event], None]] = []

    # -- lifecycle --------------------------------------------------------

    @classmethod
    async def create(
        cls,
        homeserver_url: str,
        user_id: str,
        password: str,
        store_dir: Path,
        *,
        auto_join: bool = True,
        device_name: str = "nio-test",
    ) -> NioUser:
        """Log in (or restore the saved device from store_dir) and start syncing.

        Returns once the first sync is done and the device keys are on the server,
        so others can encrypt to this device right away.
        """
        store_dir = Path(store_dir)
        store_dir.mkdir(parents=True, exist_ok=True)
        session_file = store_dir / "session.json"
        session: dict[str, str] = (
            json.loads(session_file.read_text()) if session_file.exists() else {}
        )
        pickle_key = session.get("pickle_key") or secrets.token_hex(32)
        config = AsyncClientConfig(
            encryption_enabled=True,
            store_sync_tokens=True,
            pickle_key=pickle_key,
            request_timeout=SYNC_TIMEOUT_MS / 1000 + 30,
        )
        client = AsyncClient(homeserver_url, user_id, store_path=str(store_dir), config=config)
        if session.get("device_id") and session.get("access_token"):
            # Logging in again would make a new device with new keys.
            client.restore_login(user_id, session["device_id"], session["access_token"])
        else:
            resp = await client.login(password, device_name=device_name)
            if not isinstance(resp, LoginResponse):
                await client.close()
                raise NioUserError(f"login {user_id}: {resp}")
            session = {
                "device_id": resp.device_id,
                "access_token": resp.access_token,
                "pickle_key": pickle_key,
            }
            session_file.write_text(json.dumps(session))
            session_file.chmod(0o600)
        user = cls(client, password, auto_join)
        try:
            await user._sync_once(timeout_ms=0, full_state=True)
        except BaseException:
            await client.close()
            raise
        user._sync_task = asyncio.create_task(user._sync_loop(), name=f"sync {user_id}")
        return user

    async def close(self) -> None:
        """Stop the sync loop and close the HTTP session."""
        task, self._sync_task = self._sync_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.client.close()

    async def __aenter__(self) -> NioUser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def user_id(self) -> str:
        """The Matrix user id."""
        user_id: str = self.client.user_id
        return user_id

    @property
    def device_id(self) -> str:
        """This client's own device id."""
        return self.client.device_id or ""

    # -- sync -------------------------------------------------------------

    async def _sync_loop(self) -> None:
        while True:
            try:
                await self._sync_once(timeout_ms=SYNC_TIMEOUT_MS, full_state=False)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Surface the failure to whoever waits, then keep trying.
                self._sync_error = exc
                self._wake()
                log.warning("sync of %s failed: %s", self.user_id, type(exc).__name__)
                await asyncio.sleep(0.5)

    async def _sync_once(self, timeout_ms: int, full_state: bool) -> None:
        resp = await self.client.sync(timeout=timeout_ms, full_state=full_state)
        if not isinstance(resp, SyncResponse):
            raise NioUserError(f"sync {self.user_id}: {resp}")
        self._sync_error = None
        # nio has already decrypted what it could (to-device keys come first).
        await self._record(resp)
        self._wake()
        await self._housekeeping()
        if self.auto_join:
            for room_id in resp.rooms.invite:
                joined = await self.client.join(room_id)
                if isinstance(joined, JoinError):
                    log.warning("%s could not join %s: %s", self.user_id, room_id, joined)
        self._wake()

    async def _housekeeping(self) -> None:
        """What sync_forever would do after a sync: keys, to-device, trust."""
        client = self.client
        async with self._crypto_lock:
            if client.should_upload_keys:
                self._check(await client.keys_upload(), KeysUploadError)
            if client.should_query_keys:
                self._check(await client.keys_query(), KeysQueryError)
            if client.should_claim_keys:
                users = client.get_users_for_key_claiming()
                self._check(await client.keys_claim(users), KeysClaimError)
            await client.send_to_device_messages()
            self._trust_known_devices()

    @staticmethod
    def _check(resp: object, error_type: type) -> None:
        if isinstance(resp, error_type):
            raise NioUserError(str(resp))

    def _trust_known_devices(self) -> None:
        # Tests only: a real client verifies; here every known device is trusted,
        # including this account's other devices (they also count as unverified).
        for device in self.client.device_store:
            if device.device_id == self.client.device_id and device.user_id == self.user_id:
                continue
            if not device.deleted and not self.client.olm.is_device_verified(device):
                self.client.verify_device(device)

    async def _record(self, resp: SyncResponse) -> None:
        for room_id, info in resp.rooms.join.items():
            events: list[Event] = list(info.timeline.events)
            if info.timeline.limited and room_id in self.timeline and info.timeline.prev_batch:
                # An incremental sync returns at most a page of events; fetch the gap.
                events = await self._backfill(room_id, info.timeline.prev_batch) + events
            self._append(room_id, events)
        self._retry_undecrypted()

    async def _backfill(self, room_id: str, token: str) -> list[Event]:
        missing: list[Event] = []
        for _ in range(BACKFILL_PAGES):
            resp = await self.client.room_messages(room_id, start=token, limit=100)
            if isinstance(resp, RoomMessagesError):
                log.warning("backfill of %s failed: %s", room_id, resp)
                break
            reached_known = False
            for event in resp.chunk:  # newest first
                if event.event_id in self._seen:
                    reached_known = True
                    break
                missing.append(event)
            if reached_known or not resp.chunk or not resp.end:
                break
            token = resp.end
        missing.reverse()
        return missing

    def add_listener(self, callback: Callable[[str, Event], None]) -> None:
        """Call callback(room_id, event) for every event as it becomes readable."""
        self._listeners.append(callback)

    def _readable(self, room_id: str, event: Event) -> None:
        self.timeline.setdefault(room_id, []).append(event)
        for callback in self._listeners:
            callback(room_id, event)

    def _append(self, room_id: str, events: list[Event]) -> None:
        self.timeline.setdefault(room_id, [])
        undecrypted = self.undecrypted.setdefault(room_id, [])
        for event in events:
            if event.event_id in self._seen:
                continue
            self._seen.add(event.event_id)
            if isinstance(event, MegolmEvent):
                event.room_id = room_id
                undecrypted.append(event)
            else:
                self._readable(room_id, event)

    def _retry_undecrypted(self) -> None:
        for room_id, pending in self.undecrypted.items():
            still: list[MegolmEvent] = []
            for event in pending:
                try:
                    decrypted = self.client.decrypt_event(event)
                except Exception:
                    still.append(event)
                    continue
                self.late_decrypted += 1
                self._readable(room_id, decrypted)
            pending[:] = still

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _until(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                cause = f" (last sync error: {self._sync_error})" if self._sync_error else ""
                raise TimeoutError(f"{self.user_id}: {what} not seen within {timeout} s{cause}")
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    # -- rooms ------------------------------------------------------------

    async def create_room(
        self, invite: list[str] | None = None, name: str | None = None, encrypted: bool = True
    ) -> str:
        """Create a private room (encrypted unless told otherwise); return its id."""
        initial_state: list[dict[str, Any]] = [
            {
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": {"history_visibility": "invited"},
            }
        ]
        if encrypted:
            initial_state.append(
                {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}}
            )
        resp = await self.client.room_create(
            visibility=RoomVisibility.private,
            preset=RoomPreset.private_chat,
            name=name,
            invite=invite or [],
            initial_state=initial_state,
        )
        if isinstance(resp, RoomCreateError):
            raise NioUserError(f"create room: {resp}")
        room_id: str = resp.room_id
        await self.wait_room(room_id)
        return room_id

    async def join(self, room_id: str, timeout: float = 10) -> None:
        """Join a room and wait until the sync shows it."""
        resp = await self.client.join(room_id)
        if isinstance(resp, JoinError):
            raise NioUserError(f"join {room_id}: {resp}")
        await self.wait_room(room_id, timeout)

    async def wait_room(self, room_id: str, timeout: float = 10) -> None:
        """Wait until a sync has put the room in the client's joined rooms."""
        await self._until(lambda: room_id in self.client.rooms, timeout, f"room {room_id}")

    def is_joined(self, room_id: str, user_id: str) -> bool:
        """Whether this client has seen user_id joined to room_id."""
        room = self.client.rooms.get(room_id)
        return room is not None and user_id in room.users and user_id not in room.invited_users

    async def wait_joined(self, room_id: str, user_id: str, timeout: float = 10) -> None:
        """Wait until this client sees user_id as a joined member of room_id."""
        await self._until(
            lambda: self.is_joined(room_id, user_id), timeout, f"{user_id} joined {room_id}"
        )

    # -- messages ---------------------------------------------------------

    async def _prepare_room(self, room_id: str) -> None:
        """Make sure the member list and every member's device list are current.

        Without this, a peer device added since nio last looked would get no room
        key and see the message as "historical, no key".
        """
        await self.wait_room(room_id)
        room = self.client.rooms[room_id]
        if not room.encrypted:
            return
        async with self._crypto_lock:
            if room_id not in self._prepared_rooms:
                if not room.members_synced:
                    members = await self.client.joined_members(room_id)
                    self._check(members, JoinedMembersError)
                self.client.olm.users_for_key_query.update(room.users)
                self._prepared_rooms.add(room_id)
            if self.client.should_query_keys:
                self._check(await self.client.keys_query(), KeysQueryError)
            self._trust_known_devices()

    async def send(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        """Send an event (encrypted if the room is); return its event id."""
        await self._prepare_room(room_id)
        resp = await self.client.room_send(room_id, event_type, content)
        if not isinstance(resp, RoomSendResponse):
            raise NioUserError(f"send to {room_id}: {resp}")
        event_id: str = resp.event_id
        return event_id

    async def send_text(self, room_id: str, body: str) -> str:
        """Send an m.text message; return its event id."""
        return await self.send(room_id, "m.room.message", {"msgtype": "m.text", "body": body})

    async def send_withholding_key(
        self, room_id: str, withheld_from: str, bodies: list[str]
    ) -> tuple[list[str], dict[str, Any]]:
        """Send texts in a fresh Megolm session whose key `withheld_from`'s devices never get.

        The other members' devices get the key as usual. Returns the event ids and the
        session's room key at index 0 (an `m.room_key` content), which `send_room_key`
        can deliver later: a key that arrives late, as a delayed to-device message would.
        Later sends use a new session shared with everyone again.
        """
        await self._prepare_room(room_id)
        client = self.client
        olm = client.olm
        assert olm is not None
        # Held for the whole send: the sync loop's trust pass would re-trust the devices.
        async with self._crypto_lock:
            devices = list(client.device_store.active_user_devices(withheld_from))
            if not devices:
                raise NioUserError(f"no known device of {withheld_from}")
            for device in devices:
                client.blacklist_device(device)
            olm.create_outbound_group_session(room_id)
            session = olm.outbound_group_sessions[room_id]
            room_key = {
                "algorithm": MEGOLM,
                "room_id": room_id,
                "session_id": session.id,
                "session_key": session.session_key,
            }
            event_ids: list[str] = []
            try:
                for body in bodies:
                    resp = await client.room_send(
                        room_id, "m.room.message", {"msgtype": "m.text", "body": body}
                    )
                    if not isinstance(resp, RoomSendResponse):
                        raise NioUserError(f"send to {room_id}: {resp}")
                    event_ids.append(resp.event_id)
            finally:
                olm.outbound_group_sessions.pop(room_id, None)
                for device in devices:
                    client.unblacklist_device(device)
                    client.verify_device(device)
        return event_ids, room_key

    async def send_room_key(self, user_id: str, room_key: dict[str, Any]) -> None:
        """Send a room key (`m.room_key` content) to every device of `user_id`, Olm-encrypted."""
        client = self.client
        olm = client.olm
        assert olm is not None
        async with self._crypto_lock:
            missing = olm.get_missing_sessions([user_id])
            if missing:
                self._check(await client.keys_claim(missing), KeysClaimError)
            for device in client.device_store.active_user_devices(user_id):
                session = olm.session_store.get(device.curve25519)
                if session is None:
                    raise NioUserError(f"no Olm session with {user_id} {device.id}")
                content = olm._olm_encrypt(session, device, "m.room_key", room_key)
                message = ToDeviceMessage("m.room.encrypted", user_id, device.id, content)
                self._check(await client.to_device(message), ToDeviceError)

    def find(self, room_id: str, predicate: EventPredicate) -> Event | None:
        """The first readable timeline event of the room matching predicate, if any."""
        for event in self.timeline.get(room_id, []):
            if predicate(event):
                return event
        return None

    async def wait_for(self, room_id: str, predicate: EventPredicate, timeout: float = 10) -> Event:
        """Wait for a readable (decrypted or plain) timeline event matching predicate."""
        event: Event = await self._until(
            lambda: self.find(room_id, predicate), timeout, f"matching event in {room_id}"
        )
        return event

    def texts(self, room_id: str) -> list[str]:
        """Bodies of every text message readable in the room, oldest first."""
        return [e.body for e in self.timeline.get(room_id, []) if isinstance(e, RoomMessageText)]
