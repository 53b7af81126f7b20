"""The bot's E2EE Matrix client: one nio device, our own sync loop, exactly-once sends.

We drive `sync()` ourselves instead of `sync_forever()` because the audit must see every
event: a limited timeline is back-filled from `prev_batch`, and the sync token is only
saved after every event in the batch was handed to the service (which dedupes by event
id, so a crash in between replays nothing twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from nio import (
    AsyncClient,
    AsyncClientConfig,
    Event,
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
from nio.exceptions import LocalProtocolError

from bridge.adapters.matrix.session import BotCredentials

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IncomingEvent:
    """One room event as the service sees it: decrypted content, no nio types."""

    room_id: str
    event_id: str
    sender: str
    type: str
    content: dict[str, Any]
    origin_server_ts: int
    state_key: str | None = None
    redacts: str | None = None
    encrypted: bool = False
    #: False when the event stayed undecryptable after the grace period.
    decrypted: bool = True


class SyncHandler(Protocol):
    async def is_processed(self, event_id: str) -> bool: ...
    async def on_event(self, event: IncomingEvent) -> None: ...
    async def on_invite(self, room_id: str, inviter: str | None) -> None: ...
    async def load_kv(self, key: str) -> str | None: ...
    async def save_kv(self, key: str, value: str) -> None: ...
    async def trusted_users(self, room_id: str) -> set[str] | None: ...
    async def on_receipt(self, room_id: str, user_id: str, event_id: str, ts: int) -> None: ...


class RoomNotReady(Exception):
    """The bot has not yet seen the room in a sync (or it is not joined)."""


class UnencryptedRoom(Exception):
    """We never send into a room without encryption."""


@dataclass
class _Pending:
    event: MegolmEvent
    room_id: str
    first_seen: float
    requested: bool = False


@dataclass
class SyncStats:
    last_sync_ok_at: float = 0.0
    synced_batches: int = 0
    backfilled_events: int = 0
    decryption_failures: int = 0
    pending_undecryptable: int = 0
    errors: int = 0
    lag_seconds: float = field(default=0.0)


SYNC_TOKEN_KEY = "matrix.sync_token"


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
        self.client = AsyncClient(
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
        self._pending: dict[str, _Pending] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.first_sync_done = asyncio.Event()
        self._synced = asyncio.Condition()
        self._send_lock = asyncio.Lock()
        self.client.add_to_device_callback(self._on_key_request, (RoomKeyRequest,))

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Upload device keys if needed, do the first sync, then keep syncing."""
        await self._housekeeping()
        self._task = asyncio.create_task(self._run(), name="matrix-sync")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
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
            full_state=first or None,
            sync_filter={"room": {"timeline": {"limit": 100}}},
        )
        if isinstance(resp, SyncError):
            raise RuntimeError(f"sync error {resp.status_code}")
        assert isinstance(resp, SyncResponse)
        for room_id, info in resp.rooms.invite.items():
            inviter = None
            for ev in info.invite_state:
                if isinstance(ev, InviteMemberEvent) and ev.state_key == self.user_id:
                    inviter = ev.sender
            await self.handler.on_invite(room_id, inviter)
        for room_id, info in resp.rooms.join.items():
            events: list[Any] = list(info.timeline.events)
            if info.timeline.limited and token is not None:
                events = await self._backfill(room_id, info.timeline.prev_batch) + events
            for ev in events:
                await self._dispatch(room_id, ev)
            await self._dispatch_receipts(room_id, info.ephemeral)
        await self._retry_pending()
        await self._housekeeping()
        await self.handler.save_kv(SYNC_TOKEN_KEY, resp.next_batch)
        self.stats.synced_batches += 1
        self.stats.last_sync_ok_at = time.time()
        self.stats.lag_seconds = max(0.0, time.monotonic() - started - self._sync_timeout_ms / 1000)
        self.first_sync_done.set()
        async with self._synced:
            self._synced.notify_all()

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
            if await self.handler.is_processed(ev.event_id):
                return
            self._pending.setdefault(ev.event_id, _Pending(ev, room_id, time.monotonic()))
            return
        incoming = to_incoming(room_id, ev)
        if incoming is not None:
            await self.handler.on_event(incoming)

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
        """Undecryptable events: ask for the key, retry, and give up after the grace time."""
        now = time.monotonic()
        for event_id, item in list(self._pending.items()):
            try:
                decrypted = self.client.decrypt_event(item.event)
            except Exception:
                decrypted = None
            if decrypted is not None and not isinstance(decrypted, MegolmEvent):
                del self._pending[event_id]
                incoming = to_incoming(item.room_id, decrypted)
                if incoming is not None:
                    await self.handler.on_event(incoming)
                continue
            if not item.requested:
                item.requested = True
                with contextlib.suppress(LocalProtocolError):  # already requested
                    await self.client.request_room_key(item.event)
            if now - item.first_seen > self._grace:
                del self._pending[event_id]
                self.stats.decryption_failures += 1
                await self.handler.on_event(
                    IncomingEvent(
                        room_id=item.room_id,
                        event_id=event_id,
                        sender=item.event.sender,
                        type="m.room.encrypted",
                        content={},
                        origin_server_ts=item.event.server_timestamp,
                        encrypted=True,
                        decrypted=False,
                    )
                )
        self.stats.pending_undecryptable = len(self._pending)

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

    # ------------------------------------------------------------ sending

    async def send(
        self, room_id: str, event_type: str, content: dict[str, Any], txn_id: str
    ) -> str:
        """Send encrypted, with a stable transaction id (a retry never posts twice)."""
        room = self.client.rooms.get(room_id)
        if room is None:
            raise RoomNotReady(room_id)
        if not room.encrypted:
            raise UnencryptedRoom(room_id)
        async with self._send_lock:
            trusted = await self.handler.trusted_users(room_id) or set()
            await self._require_members_known(room_id, trusted)
            if self.client.should_query_keys:
                await self.client.keys_query()
            for attempt in range(3):
                self.apply_trust(room_id, trusted)
                try:
                    resp = await self.client.room_send(room_id, event_type, content, tx_id=txn_id)
                except OlmUnverifiedDeviceError:
                    # A device appeared between the trust pass and the send.
                    await self.client.keys_query()
                    if attempt == 2:
                        raise
                    continue
                if isinstance(resp, RoomSendResponse):
                    return str(resp.event_id)
                raise RuntimeError(f"send failed: {getattr(resp, 'status_code', '?')}")
            raise RuntimeError("send failed")

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


def to_incoming(room_id: str, ev: Any) -> IncomingEvent | None:
    """Translate a (decrypted) nio event; unknown shapes still keep their source."""
    source: dict[str, Any] = getattr(ev, "source", None) or {}
    event_id = getattr(ev, "event_id", None) or source.get("event_id")
    if not event_id:
        return None
    content = source.get("content", {}) if isinstance(source.get("content"), dict) else {}
    return IncomingEvent(
        room_id=room_id,
        event_id=str(event_id),
        sender=str(getattr(ev, "sender", None) or source.get("sender", "")),
        type=str(source.get("type", "")),
        content=content,
        origin_server_ts=int(
            getattr(ev, "server_timestamp", 0) or source.get("origin_server_ts", 0)
        ),
        state_key=source.get("state_key"),
        redacts=source.get("redacts"),
        encrypted=bool(getattr(ev, "decrypted", False)),
    )


EventCallback = Callable[[IncomingEvent], Awaitable[None]]
_ = Event  # re-exported type for callers that want isinstance checks
