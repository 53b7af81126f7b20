"""The bot's E2EE Matrix client: one nio device, our own sync loop, exactly-once sends.

We drive `sync()` ourselves instead of `sync_forever()` because the audit must see every
event: a limited timeline is back-filled from `prev_batch`, and the sync token is only
saved after every event in the batch was handed to the service (which dedupes by event
id, so a crash in between replays nothing twice) or, while it waits for its room key, held
in the database (so a restart or a standby's takeover still finds it).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from nio import (
    AsyncClientConfig,
    InviteMemberEvent,
    KeysClaimResponse,
    KeysQueryResponse,
    MegolmEvent,
    OlmUnverifiedDeviceError,
    ReceiptEvent,
    RoomGetStateEventResponse,
    RoomKeyRequest,
    RoomMessagesError,
    RoomSendResponse,
    SyncError,
    SyncResponse,
    UploadResponse,
)
from nio.api import Api
from nio.exceptions import LocalProtocolError

from bridge.adapters.matrix import roomcache
from bridge.adapters.matrix.events import (
    HeldEvent,
    IncomingEvent,
    megolm_event,
    megolm_source,
    to_incoming,
)
from bridge.adapters.matrix.keyshare import CheckedKeyShareClient, KeyShareIncomplete
from bridge.adapters.matrix.session import BotCredentials

log = logging.getLogger(__name__)


class SyncHandler(Protocol):
    async def is_processed(self, event_id: str) -> bool: ...
    async def on_event(self, event: IncomingEvent) -> None: ...
    async def on_invite(self, room_id: str, inviter: str | None) -> None: ...
    async def load_kv(self, key: str) -> str | None: ...
    async def save_kv(self, key: str, value: str) -> None: ...
    async def trusted_users(self, room_id: str) -> set[str] | None: ...
    async def on_receipt(self, room_id: str, user_id: str, event_id: str, ts: int) -> None: ...
    async def hold_pending(self, event: HeldEvent) -> int:
        """Keep an event waiting for its key durably; return when it was first seen (ms)."""
        ...

    async def held_pending(self) -> list[HeldEvent]:
        """Every event still waiting, as held by this or an earlier instance."""
        ...

    async def release_pending(self, event_id: str) -> None:
        """Forget a held event (call only once the service has committed it)."""
        ...


class RoomNotReady(Exception):
    """The bot has not yet seen the room in a sync (or it is not joined)."""


class UnencryptedRoom(Exception):
    """We never send into a room without encryption."""


class HomeserverUnavailable(ConnectionError):
    """The homeserver (or the proxy before it) did not answer, or answered 5xx.

    A `ConnectionError`, so that queues retrying sends can tell an outage (probe, then
    retry everything at once) from a problem with one post, without importing us.
    """


@dataclass
class _Pending:
    held: HeldEvent
    #: None when a stored source no longer parses: it can only expire, never decrypt.
    event: MegolmEvent | None
    requested: bool = False


@dataclass
class SyncStats:
    last_sync_ok_at: float = 0.0
    synced_batches: int = 0
    backfilled_events: int = 0
    decryption_failures: int = 0
    pending_undecryptable: int = 0
    errors: int = 0
    #: Posts held back because a member device had not received the room key.
    key_share_failures: int = 0
    #: Syncs followed by a pause because their batch was large (`BUSY_SYNC_EVENTS`).
    paused_syncs: int = 0
    #: Rooms rebuilt at start from the snapshot of a clean stop (0: full state).
    rooms_restored: int = 0
    lag_seconds: float = field(default=0.0)


SYNC_TOKEN_KEY = "matrix.sync_token"

#: The most to-device messages Synapse returns in one sync.
TO_DEVICE_BATCH = 100

#: A sync that brought at least this many timeline events means the rooms are busy: the
#: next one waits `BUSY_SYNC_PAUSE_S`, so that it collects a batch. Each sync costs the
#: homeserver a response built for every room that changed; one per message, under load,
#: takes its time from the members' own sends. A quiet room's message is seen at once.
BUSY_SYNC_EVENTS = 8
BUSY_SYNC_PAUSE_S = 0.25

#: What the bot's sync asks for: every timeline event (the audit sees them all), room
#: state in full, read receipts, to-device messages and device lists; not what nothing
#: here reads: presence, typing, and account data (push rules, tags, read markers).
#: Members are not lazy-loaded: nio shares room keys with the members it knows from sync
#: (invited ones included, which `joined_members` never lists), and `member_ready` and
#: `_require_members_known` read the same list, so every member event must arrive.
SYNC_FILTER: dict[str, Any] = {
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
    "room": {
        "timeline": {"limit": 100},
        "ephemeral": {"types": ["m.receipt"]},
        "account_data": {"not_types": ["*"]},
    },
}


class MatrixBot:
    """Owns the nio client; everything else talks to Matrix through these methods."""

    def __init__(
        self,
        *,
        homeserver_url: str,
        creds: BotCredentials,
        store_dir: Path,
        pickle_key: str,
        handler: SyncHandler,
        undecryptable_grace: float = 30.0,
        sync_timeout_ms: int = 30_000,
    ) -> None:
        store_dir.mkdir(parents=True, exist_ok=True)
        config = AsyncClientConfig(
            encryption_enabled=True,
            store_sync_tokens=False,
            pickle_key=pickle_key,
            # Fail fast and let our own loops retry: nio would otherwise retry forever.
            max_timeouts=2,
            request_timeout=sync_timeout_ms / 1000 + 30,
        )
        self.client = CheckedKeyShareClient(
            homeserver_url,
            creds.user_id,
            device_id=creds.device_id,
            store_path=str(store_dir),
            config=config,
        )
        self.client.restore_login(creds.user_id, creds.device_id, creds.access_token)
        self.user_id = creds.user_id
        self.device_id = creds.device_id
        self.handler = handler
        self.stats = SyncStats()
        self._grace = undecryptable_grace
        self._sync_timeout_ms = sync_timeout_ms
        self._store_dir = store_dir
        #: The sync token handed to the service last (what a room snapshot goes with).
        self._saved_token: str | None = None
        #: Rooms rebuilt from the snapshot of a clean stop: the first sync is incremental.
        self._resumed = False
        self._pending: dict[str, _Pending] = {}
        self._to_device_backlog = False
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.first_sync_done = asyncio.Event()
        self._synced = asyncio.Condition()
        self._send_lock = asyncio.Lock()
        self.client.add_to_device_callback(self._on_key_request, (RoomKeyRequest,))

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Upload device keys if needed, do the first sync, then keep syncing."""
        await self._load_pending()
        token = await self.handler.load_kv(SYNC_TOKEN_KEY)
        restored = roomcache.restore(self.client, self._store_dir, token)
        if restored is not None:
            self._resumed = True
            self._saved_token = token
            self.stats.rooms_restored = restored
            log.info("rooms restored; incremental first sync", extra={"rooms": restored})
        await self._housekeeping()
        self._task = asyncio.create_task(self._run(), name="matrix-sync")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        # Only rooms a completed first sync made whole are worth keeping: an empty or
        # partial set would leave quiet rooms unknown after an incremental start.
        if self.first_sync_done.is_set() and self._saved_token is not None:
            try:
                kept = roomcache.save(self.client, self._store_dir, self._saved_token)
            except OSError as exc:
                log.warning("room snapshot not written", extra={"error": type(exc).__name__})
            else:
                log.info("rooms kept for the next start", extra={"rooms": kept})
        await self.client.close()

    async def wait_synced(self, within: float = 30.0) -> None:
        """Wait for the next completed sync cycle (events handed to the service)."""
        async with self._synced:
            await asyncio.wait_for(self._synced.wait(), within)

    # ------------------------------------------------------------ sync loop

    async def _run(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            try:
                await self._sync_once()
                backoff = 1.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.errors += 1
                log.warning("sync failed", extra={"error": type(exc).__name__})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _sync_once(self) -> None:
        token = await self.handler.load_kv(SYNC_TOKEN_KEY)
        first = not self.first_sync_done.is_set()
        started = time.monotonic()
        timeout_ms = self._sync_timeout_ms
        if self._pending:
            # Come back soon to retry undecryptable events even if the room stays quiet.
            timeout_ms = min(timeout_ms, 2_000)
        resp = await self.client.sync(
            timeout=0 if first else timeout_ms,
            since=token,
            # nio keeps no rooms over a restart: full state, unless the snapshot of a clean
            # stop brought them back (`roomcache`).
            full_state=(first and not self._resumed) or None,
            sync_filter=SYNC_FILTER,
        )
        if isinstance(resp, SyncError):
            raise RuntimeError(f"sync error {resp.status_code}")
        assert isinstance(resp, SyncResponse)
        # Synapse hands out at most 100 to-device messages per sync: a full batch means
        # more are queued (after downtime), and a waiting event's key may be among them.
        self._to_device_backlog = len(resp.to_device_events) >= TO_DEVICE_BATCH
        for room_id, info in resp.rooms.invite.items():
            inviter = None
            for ev in info.invite_state:
                if isinstance(ev, InviteMemberEvent) and ev.state_key == self.user_id:
                    inviter = ev.sender
            await self.handler.on_invite(room_id, inviter)
        busy = 0
        for room_id, info in resp.rooms.join.items():
            events: list[Any] = list(info.timeline.events)
            busy += len(events)
            if info.timeline.limited and token is not None and not _from_the_start(events):
                events = await self._backfill(room_id, info.timeline.prev_batch) + events
            for ev in events:
                await self._dispatch(room_id, ev)
            await self._dispatch_receipts(room_id, info.ephemeral)
        await self._retry_pending()
        await self._housekeeping()
        await self.handler.save_kv(SYNC_TOKEN_KEY, resp.next_batch)
        self._saved_token = resp.next_batch
        self.stats.synced_batches += 1
        self.stats.last_sync_ok_at = time.time()
        self.stats.lag_seconds = max(0.0, time.monotonic() - started - self._sync_timeout_ms / 1000)
        self.first_sync_done.set()
        async with self._synced:
            self._synced.notify_all()
        if not first and busy >= BUSY_SYNC_EVENTS:
            self.stats.paused_syncs += 1
            await asyncio.sleep(BUSY_SYNC_PAUSE_S)

    async def _backfill(self, room_id: str, prev_batch: str | None) -> list[Any]:
        """Fetch what a limited sync left out, oldest first, back to what we already saw."""
        older: list[Any] = []
        start = prev_batch
        for _ in range(200):  # at most 20,000 events in one gap
            if not start:
                break
            resp = await self.client.room_messages(room_id, start=start, limit=100)
            if isinstance(resp, RoomMessagesError) or not resp.chunk:
                break
            reached_known = False
            for ev in resp.chunk:  # newest first
                event_id = getattr(ev, "event_id", None)
                if event_id and await self.handler.is_processed(event_id):
                    reached_known = True
                    break
                older.append(ev)
            if reached_known or resp.end == start:
                break
            start = resp.end
        older.reverse()
        self.stats.backfilled_events += len(older)
        return older

    async def _dispatch(self, room_id: str, ev: Any) -> None:
        if isinstance(ev, MegolmEvent):
            if ev.event_id in self._pending or await self.handler.is_processed(ev.event_id):
                return
            await self._hold(room_id, ev)
            return
        incoming = to_incoming(room_id, ev)
        if incoming is not None:
            await self.handler.on_event(incoming)

    async def _hold(self, room_id: str, ev: MegolmEvent) -> None:
        """Keep an event that waits for its key, durably, before the sync token passes it."""
        ev.room_id = room_id  # events from back-fill may lack it; decryption needs it
        held = HeldEvent(
            room_id=room_id,
            event_id=ev.event_id,
            sender=ev.sender,
            origin_server_ts=ev.server_timestamp,
            source=megolm_source(room_id, ev),
            first_seen_ms=int(time.time() * 1000),
        )
        # Another instance (before a takeover) may have held it first: its time counts.
        first_seen_ms = await self.handler.hold_pending(held)
        self._pending[ev.event_id] = _Pending(replace(held, first_seen_ms=first_seen_ms), ev)
        self.stats.pending_undecryptable = len(self._pending)

    async def _load_pending(self) -> None:
        """Take up the events an earlier run, or the instance before a takeover, held."""
        for held in await self.handler.held_pending():
            if held.event_id in self._pending:
                continue
            if await self.handler.is_processed(held.event_id):
                # Committed by the service just before a stop, never released.
                await self.handler.release_pending(held.event_id)
                continue
            self._pending[held.event_id] = _Pending(held, megolm_event(held))
        self.stats.pending_undecryptable = len(self._pending)
        if self._pending:
            log.info("events waiting for their key", extra={"count": len(self._pending)})

    async def _dispatch_receipts(self, room_id: str, ephemeral: list[Any]) -> None:
        """Hand each public read receipt to the handler (after the room's timeline)."""
        for ev in ephemeral:
            if not isinstance(ev, ReceiptEvent):
                continue
            for receipt in ev.receipts:
                if receipt.receipt_type == "m.read":
                    await self.handler.on_receipt(
                        room_id, receipt.user_id, receipt.event_id, receipt.timestamp
                    )

    async def _retry_pending(self) -> None:
        """Events waiting for a key: retry, ask for the key, hand over after the grace.

        Runs after each sync, when nio has taken in the sync's to-device messages (where
        room keys arrive). The grace counts from the first time any instance saw the
        event; still, nothing expires before this process has completed a sync, because
        its key may be among the to-device messages queued while the bridge was down.
        A row is released only after the service has committed the event: a crash in
        between hands it over again, and the service ignores an event id it has seen.
        """
        now_ms = int(time.time() * 1000)
        may_expire = self.stats.synced_batches > 0 and not self._to_device_backlog
        for event_id, item in list(self._pending.items()):
            decrypted: Any = None
            if item.event is not None:
                try:
                    decrypted = self.client.decrypt_event(item.event)
                except Exception:
                    decrypted = None
            if decrypted is not None and not isinstance(decrypted, MegolmEvent):
                incoming = to_incoming(item.held.room_id, decrypted)
                if incoming is not None:
                    await self.handler.on_event(incoming)
                await self._release(event_id)
                continue
            if item.event is not None and not item.requested:
                item.requested = True
                with contextlib.suppress(LocalProtocolError):  # already requested
                    await self.client.request_room_key(item.event)
            if may_expire and now_ms - item.held.first_seen_ms > self._grace * 1000:
                self.stats.decryption_failures += 1
                await self.handler.on_event(
                    IncomingEvent(
                        room_id=item.held.room_id,
                        event_id=event_id,
                        sender=item.held.sender,
                        type="m.room.encrypted",
                        content={},
                        origin_server_ts=item.held.origin_server_ts,
                        encrypted=True,
                        decrypted=False,
                    )
                )
                await self._release(event_id)
        self.stats.pending_undecryptable = len(self._pending)

    async def _release(self, event_id: str) -> None:
        await self.handler.release_pending(event_id)
        del self._pending[event_id]

    async def _housekeeping(self) -> None:
        """What `sync_forever` would do: keys up, device lists, one-time keys, to-device."""
        c = self.client
        if c.should_upload_keys:
            await c.keys_upload()
        if c.should_query_keys:
            resp = await c.keys_query()
            if not isinstance(resp, KeysQueryResponse):
                log.warning("keys query failed")
        if c.should_claim_keys:
            claim = await c.keys_claim(c.get_users_for_key_claiming())
            if not isinstance(claim, KeysClaimResponse):
                log.warning("keys claim failed")
        await c.send_to_device_messages()

    async def _on_key_request(self, event: RoomKeyRequest) -> None:
        # nio answers key requests only from the bot's own devices; other users'
        # requests are left unanswered on purpose (no history is forwarded to a newcomer's
        # device). Logged without ids of the requester's keys.
        log.info("room key request not forwarded", extra={"room_id": event.room_id})

    # ------------------------------------------------------------ trust

    def apply_trust(self, room_id: str, trusted: Iterable[str]) -> None:
        """Trust on first use for the pair's devices; outsiders' devices get no keys."""
        trusted_set = set(trusted) | {self.user_id}
        room = self.client.rooms.get(room_id)
        users = set(room.users) if room else set()
        for user in users | trusted_set:
            for device in self.client.device_store.active_user_devices(user):
                if user == self.user_id and device.id == self.device_id:
                    continue
                if user in trusted_set:
                    if not self.client.olm.is_device_verified(device):
                        self.client.verify_device(device)
                elif not self.client.olm.is_device_blacklisted(device):
                    self.client.blacklist_device(device)

    # ------------------------------------------------------------ self-check

    async def own_devices(self) -> set[str]:
        """The bot account's other devices, from a device list fetched afresh.

        A device of ours that appeared a moment ago (the witness) is trusted and gets room
        keys only once this device knows it; nio does not always track its own user.
        """
        assert self.client.olm is not None
        self.client.olm.users_for_key_query.add(self.user_id)
        async with self._send_lock:
            resp = await self.client.keys_query()
        if not isinstance(resp, KeysQueryResponse):
            raise HomeserverUnavailable("keys query failed")
        devices = self.client.device_store.active_user_devices(self.user_id)
        return {device.id for device in devices} - {self.device_id}

    def key_meant_for(self, room_id: str, device_id: str) -> bool:
        """Whether the room's current Megolm session counts as shared with our `device_id`."""
        assert self.client.olm is not None
        session = self.client.olm.outbound_group_sessions.get(room_id)
        return session is not None and (self.user_id, device_id) in session.users_shared_with

    async def rotate_room_key(self, room_id: str, session_id: str) -> bool:
        """Make the room's next post start a fresh Megolm session, if it still uses
        `session_id`; False when it has moved on already.

        Dropped whether or not nio counts it as shared: a session that was used although
        its key did not arrive must never be shared again, not even to the devices missed.
        """
        assert self.client.olm is not None
        async with self._send_lock:
            session = self.client.olm.outbound_group_sessions.get(room_id)
            if session is None or session.id != session_id:
                return False
            del self.client.olm.outbound_group_sessions[room_id]
            self.client.unshared.pop(room_id, None)
        log.info("room key rotated", extra={"room_id": room_id})
        return True

    # ------------------------------------------------------------ sending

    async def send(
        self, room_id: str, event_type: str, content: dict[str, Any], txn_id: str
    ) -> str:
        """Send encrypted, with a stable transaction id (a retry never posts twice).

        Raises `HomeserverUnavailable` when the homeserver cannot be reached or answers
        5xx, `KeyShareIncomplete` when a member device has not received the room key yet,
        `RoomNotReady` while our sync has not caught up with the room's members.
        """
        room = self.client.rooms.get(room_id)
        if room is None:
            raise RoomNotReady(room_id)
        if not room.encrypted:
            raise UnencryptedRoom(room_id)
        try:
            async with self._send_lock:
                sent_type, payload = await self._encrypt_locked(room_id, event_type, content)
            # The PUT goes outside the lock: the Megolm ratchet only needs the encryption
            # serialised, and posts to other rooms need not wait for this round trip. A
            # room's own posts stay in order because the outbox sends them one by one.
            method, path, data = Api.room_send(
                self.client.access_token, room_id, sent_type, payload, txn_id
            )
            resp = await self.client._send(RoomSendResponse, method, path, data, (room_id,))
        except KeyShareIncomplete:
            self.stats.key_share_failures += 1
            raise
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise HomeserverUnavailable(type(exc).__name__) from exc
        if isinstance(resp, RoomSendResponse):
            return str(resp.event_id)
        status = getattr(resp.transport_response, "status", 0) or 0
        if status >= 500 or status == 0:
            raise HomeserverUnavailable(f"send answered {status or 'nothing'}")
        raise RuntimeError(f"send failed: {getattr(resp, 'status_code', '?')}")

    async def _encrypt_locked(
        self, room_id: str, event_type: str, content: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """Make sure every trusted member device holds the room key, then encrypt.

        What nio's `room_send` does before its PUT, with the bridge's checks: members
        known from sync, device lists fresh for members with none, trust applied.
        """
        trusted = await self.handler.trusted_users(room_id) or set()
        await self._require_members_known(room_id, trusted)
        assert self.client.olm is not None
        for user in trusted:
            # A member with no known device may have just logged in: ask before the
            # first post, or that device would never get this post's key.
            if not any(True for _ in self.client.device_store.active_user_devices(user)):
                self.client.olm.users_for_key_query.add(user)
        if self.client.should_query_keys:
            query = await self.client.keys_query()
            if not isinstance(query, KeysQueryResponse):
                # Sharing from a stale device list could leave a new device without the key.
                raise HomeserverUnavailable("keys query failed")
        room = self.client.rooms[room_id]
        if not room.members_synced:
            await self.client.joined_members(room_id)
            if self.client.should_query_keys:
                await self.client.keys_query()
        for attempt in range(3):
            self.apply_trust(room_id, trusted)
            try:
                if self.client.olm.should_share_group_session(room_id):
                    await self.client.share_group_session(room_id)
                encrypted: tuple[str, dict[str, Any]] = self.client.encrypt(
                    room_id, event_type, content
                )
                return encrypted
            except OlmUnverifiedDeviceError:
                # A device appeared between the trust pass and the send.
                await self.client.keys_query()
                if attempt == 2:
                    raise
        raise RuntimeError("send failed")

    async def member_ready(self, room_id: str, user_id: str) -> bool:
        """Whether a notice meant for `user_id` can be read by them if sent now.

        True once they have joined the room and have at least one device, with their
        device list fetched afresh: a patient who logged in a moment ago must be among
        the devices that receive this first post's key (clients no longer ask for keys
        later, so a post sent before her device existed would stay unreadable on it).
        """
        room = self.client.rooms.get(room_id)
        if room is None or user_id not in room.users or user_id in room.invited_users:
            return False
        assert self.client.olm is not None
        async with self._send_lock:
            # Asked under the lock: the sync loop's own query may have fetched this very
            # list while we waited, and nio refuses a query with nothing left to ask.
            self.client.olm.users_for_key_query.add(user_id)
            if self.client.should_query_keys:
                resp = await self.client.keys_query()
                if not isinstance(resp, KeysQueryResponse):
                    return False
        return any(True for _ in self.client.device_store.active_user_devices(user_id))

    async def reachable(self) -> bool:
        """A cheap probe: does the homeserver answer `/versions` right now?"""
        try:
            resp = await self.client.send("GET", "/_matrix/client/versions", timeout=5)
        except (OSError, TimeoutError, aiohttp.ClientError):
            return False
        async with resp:
            return bool(resp.status == 200)

    async def _require_members_known(self, room_id: str, trusted: set[str]) -> None:
        """Refuse to send before our sync has seen every member the server has.

        A member invited a moment ago (a handover, a new pair) must get the room key with
        this message; nio shares keys only with the members it knows from sync, so a send
        racing the sync would leave the newcomer unable to read it. Retried by the outbox.
        """
        room = self.client.rooms.get(room_id)
        known = set(room.users) if room is not None else set()
        for user in trusted - known:
            resp = await self.client.room_get_state_event(room_id, "m.room.member", user)
            membership = (
                resp.content.get("membership")
                if isinstance(resp, RoomGetStateEventResponse)
                else None
            )
            if membership in ("join", "invite"):
                raise RoomNotReady(room_id)

    async def upload_encrypted(self, data: bytes, mimetype: str, filename: str) -> dict[str, Any]:
        """Upload an attachment encrypted; returns the event's `file` object."""
        resp, keys = await self.client.upload(
            lambda *_: io.BytesIO(data),
            content_type="application/octet-stream",
            filename=None,
            encrypt=True,
            filesize=len(data),
        )
        if not isinstance(resp, UploadResponse) or keys is None:
            raise RuntimeError("upload failed")
        file_obj: dict[str, Any] = dict(keys)
        file_obj["url"] = resp.content_uri
        file_obj["mimetype"] = mimetype
        return file_obj

    async def download_decrypted(self, file_obj: dict[str, Any]) -> bytes:
        """Download and decrypt an encrypted attachment (checks its SHA-256)."""
        from nio import DownloadResponse
        from nio.crypto.attachments import decrypt_attachment

        resp = await self.client.download(mxc=file_obj["url"])
        if not isinstance(resp, DownloadResponse):
            raise RuntimeError("download failed")
        return bytes(
            decrypt_attachment(
                resp.body, file_obj["key"]["k"], file_obj["hashes"]["sha256"], file_obj["iv"]
            )
        )


def _from_the_start(events: list[Any]) -> bool:
    """Whether a timeline begins with the room's creation: nothing older to fetch (a room
    made a moment ago arrives marked limited, with all its events)."""
    if not events:
        return False
    source = getattr(events[0], "source", None) or {}
    return bool(source.get("type") == "m.room.create")
