"""The witness: a second device of the bot account that only reads, to prove posts readable.

The bot's posts are encrypted with a Megolm session whose key the bot's device sends to
every trusted device of the room, its own other devices included, over `/sendToDevice`.
The witness is such a device: logged in once with the bot's password (credentials and its
own crypto store in `data_dir/witness`), cross-signed with the bot's self-signing key like
the main device, so it is a device Element-grade clients and the main device trust. It
syncs only what a device's keys need (to-device messages, one-time key counts: no rooms,
no timeline, so it never sees, audits or acts on anything), and for each post the
bridge names, fetches that event from the homeserver and tries to decrypt it.

A post it can decrypt was encrypted with a session whose key went out through the
homeserver to the bot's devices and arrived; one it cannot, after its room key had
every chance to arrive, was not (nio's silent share failures, a session marked shared
that was not). The witness never asks anyone for a key: a key it does not hold must
not be fetched around the very failure it is there to see.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    KeysUploadResponse,
    MegolmEvent,
    SyncError,
    SyncResponse,
)
from nio.exceptions import EncryptionError

from bridge.adapters.matrix.crosssign import CrossSigner, SigningKey
from bridge.adapters.matrix.rest import MatrixError, MatrixRest, q
from bridge.adapters.matrix.session import BotCredentials, load_credentials, save_credentials

log = logging.getLogger(__name__)

#: To-device messages and key counts only: no room, presence or account data at all.
SYNC_FILTER: dict[str, Any] = {
    "presence": {"types": []},
    "account_data": {"types": []},
    "room": {"rooms": [], "account_data": {"types": []}},
}


#: The witness's sync token, beside its crypto store.
SYNC_TOKEN_FILE = "sync-token"


def witness_dir(data_dir: Path) -> Path:
    """Where the witness keeps its credentials and crypto store."""
    return data_dir / "witness"


def _reserved_device_id(directory: Path) -> str:
    """The device id the witness's first login asks for, chosen once.

    A login whose answer was lost is retried onto the same device instead of leaving an
    orphan device of the bot account behind (one that would wait for room keys forever).
    """
    path = directory / "witness-device-id"
    if path.exists():
        return path.read_text().strip()
    device_id = "CONFIDANTW" + secrets.token_hex(5).upper()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(device_id)
    return device_id


@dataclass(frozen=True)
class Reading:
    """What the witness made of one post."""

    #: Decrypted, or (never for our posts) not encrypted at all.
    readable: bool
    #: The Megolm session the post was encrypted with (None when not encrypted).
    session_id: str | None = None
    #: Nothing left to read (redacted): no verdict can be had.
    gone: bool = False


class WitnessDevice:
    """The witness's device: login, cross-signing, its own sync loop, and reading posts."""

    def __init__(
        self,
        *,
        homeserver_url: str,
        user_id: str,
        password: str,
        device_name: str,
        data_dir: Path,
        pickle_key: str,
        verify_tls: bool = True,
        sync_timeout_ms: int = 30_000,
    ) -> None:
        self.homeserver_url = homeserver_url
        self.user_id = user_id
        self.device_name = device_name
        self.directory = witness_dir(data_dir)
        self._password = password
        self._pickle_key = pickle_key
        self._sync_timeout_ms = sync_timeout_ms
        self.rest = MatrixRest(homeserver_url, None, verify_tls=verify_tls)
        self.client: AsyncClient | None = None
        saved = load_credentials(self.directory)
        #: Known from an earlier run too: a post whose key went to it waits for its reading.
        self.device_id: str | None = (
            saved.device_id if saved is not None and saved.user_id == user_id else None
        )
        #: Called after each completed sync (room keys may have arrived).
        self.on_synced: Callable[[], None] | None = None
        #: Wall-clock start (s) of the last sync that completed, and when it completed.
        self.synced_from = 0.0
        self.last_sync_ok_at = 0.0
        self.sync_errors = 0
        self._ciphertexts: dict[str, dict[str, Any]] = {}
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ bring-up

    async def bring_up(self, keys: dict[str, SigningKey]) -> None:
        """Log in once (or restore), upload device keys, cross-sign the device. Idempotent.

        A device removed on the homeserver (say, in Element's session list) is replaced:
        its token is refused, so its credentials and keys go and the next attempt logs in.
        """
        try:
            await self._bring_up(keys)
        except MatrixError as err:
            if err.errcode != "M_UNKNOWN_TOKEN":
                raise
            await self._forget_device()
            raise

    async def _bring_up(self, keys: dict[str, SigningKey]) -> None:
        creds = await self._credentials()
        self.rest.access_token = creds.access_token
        if self.client is None:
            config = AsyncClientConfig(
                encryption_enabled=True,
                # The sync token goes to a small file of its own (`_keep_token`), not into
                # the crypto store: nio would commit that database in the event loop after
                # every sync (about 9 ms each, once per post under load).
                store_sync_tokens=False,
                pickle_key=self._pickle_key,
                max_timeouts=2,
                request_timeout=self._sync_timeout_ms / 1000 + 30,
            )
            store = self.directory / "crypto"
            store.mkdir(mode=0o700, parents=True, exist_ok=True)
            client = AsyncClient(
                self.homeserver_url,
                creds.user_id,
                device_id=creds.device_id,
                store_path=str(store),
                config=config,
            )
            client.restore_login(creds.user_id, creds.device_id, creds.access_token)
            client.next_batch = self._kept_token()
            self.client = client
            self.device_id = creds.device_id
        if self.client.should_upload_keys:
            uploaded = await self.client.keys_upload()
            if not isinstance(uploaded, KeysUploadResponse):
                status = str(getattr(uploaded, "status_code", "") or "")
                raise MatrixError(0, status or "M_UNKNOWN", "device keys not uploaded", {})
        signer = CrossSigner(self.rest, creds.user_id, creds.device_id, self._password)
        state = await signer.ensure(keys)
        log.info("witness cross-signing", extra={"state": state, "device_id": creds.device_id})

    async def _forget_device(self) -> None:
        log.warning("witness device gone from the homeserver; a new one is made")
        if self.client is not None:
            await self.client.close()
            self.client = None
        self.device_id = None
        self.rest.access_token = None
        shutil.rmtree(self.directory, ignore_errors=True)

    async def _credentials(self) -> BotCredentials:
        creds = load_credentials(self.directory)
        if creds is not None and creds.user_id == self.user_id:
            return creds
        data = await self.rest.request(
            "POST",
            "/_matrix/client/v3/login",
            {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": self.user_id},
                "password": self._password,
                "device_id": _reserved_device_id(self.directory),
                "initial_device_display_name": self.device_name,
            },
        )
        creds = BotCredentials(
            str(data["user_id"]), str(data["device_id"]), str(data["access_token"])
        )
        save_credentials(self.directory, creds)
        (self.directory / "witness-device-id").unlink(missing_ok=True)
        log.info("witness device created", extra={"device_id": creds.device_id})
        return creds

    # ------------------------------------------------------------ sync

    def start(self) -> None:
        """Keep syncing (to-device messages only) until `stop`."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="witness-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self.client is not None:
            await self.client.close()
        await self.rest.close()

    async def _run(self) -> None:
        backoff = 1.0
        while True:
            try:
                await self.sync_once()
                backoff = 1.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.sync_errors += 1
                log.warning("witness sync failed", extra={"error": type(exc).__name__})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def sync_once(self, timeout_ms: int | None = None) -> None:
        """One sync: take in room keys, keep one-time keys topped up."""
        client = self.client
        assert client is not None, "bring_up first"
        started = time.time()
        first = not self.synced_from
        resp = await client.sync(
            timeout=0 if first else (self._sync_timeout_ms if timeout_ms is None else timeout_ms),
            sync_filter=SYNC_FILTER,
        )
        if isinstance(resp, SyncError):
            raise RuntimeError(f"sync error {resp.status_code}")
        assert isinstance(resp, SyncResponse)
        if client.should_upload_keys:
            # The main device claims a one-time key to open its Olm channel to us.
            await client.keys_upload()
        await client.send_to_device_messages()
        self._keep_token(resp.next_batch)
        self.synced_from = started
        self.last_sync_ok_at = time.time()
        if self.on_synced is not None:
            self.on_synced()

    def _kept_token(self) -> str | None:
        path = self.directory / SYNC_TOKEN_FILE
        try:
            return path.read_text().strip() or None
        except FileNotFoundError:
            return None

    def _keep_token(self, token: str) -> None:
        """Where the next start resumes. Lost in a crash at worst: the homeserver then hands
        over the last batch of to-device messages again, and the room keys in it are known.
        Without it, every restart would take in that batch twice, and nio logs an error for
        each Olm message it has decrypted before."""
        path = self.directory / SYNC_TOKEN_FILE
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token)
        os.replace(tmp, path)

    def synced_since(self, moment: float) -> bool:
        """Whether a sync that began at or after `moment` (wall clock, s) has completed:
        every room key sent to us before `moment` has then been taken in."""
        return self.synced_from >= moment

    # ------------------------------------------------------------ reading

    async def read(self, room_id: str, event_id: str) -> Reading:
        """Try to decrypt one post, fetched from the homeserver once and kept until `forget`.

        Raises `MatrixError` or `HomeserverUnavailable` when the event cannot be fetched.
        """
        client = self.client
        assert client is not None, "bring_up first"
        source = self._ciphertexts.get(event_id)
        if source is None:
            source = await self.rest.request(
                "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/event/{q(event_id)}"
            )
            self._ciphertexts[event_id] = source
        if source.get("type") != "m.room.encrypted":
            return Reading(True)
        event = MegolmEvent.from_dict({**source, "room_id": room_id})
        if not isinstance(event, MegolmEvent):
            return Reading(False, gone=True)
        event.room_id = room_id
        try:
            decrypted = client.decrypt_event(event)
        except EncryptionError:
            return Reading(False, event.session_id)
        return Reading(not isinstance(decrypted, MegolmEvent), event.session_id)

    def forget(self, event_id: str) -> None:
        self._ciphertexts.pop(event_id, None)

    # ------------------------------------------------------------ retiring

    @staticmethod
    def has_device(data_dir: Path) -> bool:
        return (witness_dir(data_dir) / "bot-session.json").exists()

    @staticmethod
    async def retire(homeserver_url: str, data_dir: Path, *, verify_tls: bool = True) -> bool:
        """Log out an earlier witness device (the self-check is off now) and delete its keys.

        Otherwise the bot would keep sending room keys to a device nobody runs, and once its
        one-time keys were used up, a post would wait for a device that cannot take a key.
        """
        directory = witness_dir(data_dir)
        path = directory / "bot-session.json"
        if not path.exists():
            return False
        creds = BotCredentials(**json.loads(path.read_text()))
        async with MatrixRest(homeserver_url, creds.access_token, verify_tls=verify_tls) as rest:
            try:
                await rest.request("POST", "/_matrix/client/v3/logout", {})
            except MatrixError as err:
                if err.errcode != "M_UNKNOWN_TOKEN":  # already logged out elsewhere
                    raise
        shutil.rmtree(directory)
        log.info("witness device retired", extra={"device_id": creds.device_id})
        return True
