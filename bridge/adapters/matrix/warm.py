"""A warm standby's device: it receives room keys while another instance is active.

Each instance of the bridge has its own device of the bot account (its own data
directory), cross-signed with the bot's one identity. Patients' and therapists' clients,
and the active instance, share every room key with every trusted device of the bot, so
the standby's device gets them too, but only as to-device messages that someone must
collect: the standby syncs while it waits, asking for nothing but to-device messages and
its own device-list changes (no room timelines, so it never audits or acts on anything).
nio keeps the keys it receives in the crypto store, where the bot finds them when this
instance takes over and opens the same store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from nio import AsyncClientConfig, KeysUploadResponse, SyncError, SyncResponse

from bridge.adapters.matrix.keyshare import CheckedKeyShareClient
from bridge.adapters.matrix.session import BotCredentials

log = logging.getLogger(__name__)

#: Only to-device messages and device lists: no rooms, presence or account data.
TO_DEVICE_ONLY = {
    "room": {"rooms": [], "include_leave": False},
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
}


class WarmStandby:
    """Syncs the standby's own device for to-device messages until `handover()`.

    `prepare` runs once before the first sync and is retried until it succeeds: the
    device's credentials (a first login), its keys on the homeserver and its
    cross-signature, so that other devices trust it and send it their room keys.
    """

    def __init__(
        self,
        *,
        homeserver_url: str,
        store_dir: Path,
        pickle_key: str,
        credentials: Callable[[], Awaitable[BotCredentials]],
        cross_sign: Callable[[BotCredentials], Awaitable[object]],
        close: Callable[[], Awaitable[object]] | None = None,
        sync_timeout_ms: int = 30_000,
        retry_seconds: float = 5.0,
    ) -> None:
        self._homeserver_url = homeserver_url
        self._store_dir = store_dir
        self._pickle_key = pickle_key
        self._credentials = credentials
        self._cross_sign = cross_sign
        self._close = close
        self._sync_timeout_ms = sync_timeout_ms
        self._retry_seconds = retry_seconds
        self._client: CheckedKeyShareClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._token: str | None = None
        #: Completed to-device syncs (for /health and tests).
        self.syncs = 0
        self.ready = asyncio.Event()

    async def start(self) -> None:
        """Begin in the background; returns at once."""
        self._task = asyncio.create_task(self._run(), name="warm-standby")

    async def handover(self) -> None:
        """This instance takes over: collect what is waiting once more, then close the
        client so the bot can open the same crypto store."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        client = self._client
        if client is not None and self.ready.is_set():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._sync(client, timeout_ms=0), 15)
        if client is not None:
            await client.close()
        self._client = None
        if self._close is not None:
            await self._close()
            self._close = None

    async def _run(self) -> None:
        client = await self._prepare()
        self.ready.set()
        log.info("standby: syncing room keys for this instance's device")
        while True:
            try:
                await self._sync(client, timeout_ms=self._sync_timeout_ms)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("standby sync failed", extra={"error": type(exc).__name__})
                await asyncio.sleep(self._retry_seconds)

    async def _prepare(self) -> CheckedKeyShareClient:
        while True:
            try:
                creds = await self._credentials()
                client = self._client or self._make_client(creds)
                self._client = client
                if client.should_upload_keys:
                    resp = await client.keys_upload()
                    if not isinstance(resp, KeysUploadResponse):
                        raise RuntimeError("keys upload refused")
                await self._cross_sign(creds)
                return client
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("standby device not ready", extra={"error": type(exc).__name__})
                await asyncio.sleep(self._retry_seconds)

    def _make_client(self, creds: BotCredentials) -> CheckedKeyShareClient:
        self._store_dir.mkdir(parents=True, exist_ok=True)
        client = CheckedKeyShareClient(
            self._homeserver_url,
            creds.user_id,
            device_id=creds.device_id,
            store_path=str(self._store_dir),
            config=AsyncClientConfig(
                encryption_enabled=True,
                store_sync_tokens=False,
                pickle_key=self._pickle_key,
                max_timeouts=2,
                request_timeout=self._sync_timeout_ms / 1000 + 30,
            ),
        )
        client.restore_login(creds.user_id, creds.device_id, creds.access_token)
        return client

    async def _sync(self, client: CheckedKeyShareClient, *, timeout_ms: int) -> None:
        resp = await client.sync(timeout=timeout_ms, since=self._token, sync_filter=TO_DEVICE_ONLY)
        if isinstance(resp, SyncError) or not isinstance(resp, SyncResponse):
            raise RuntimeError(f"sync error {getattr(resp, 'status_code', '?')}")
        # What sync_forever would do: answer key claims and replace used one-time keys.
        if client.should_upload_keys:
            await client.keys_upload()
        if client.should_query_keys:
            await client.keys_query()
        await client.send_to_device_messages()
        self._token = resp.next_batch
        self.syncs += 1
