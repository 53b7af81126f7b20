"""Cross-signing for the bot's own device (nio has none).

Element's "exclude insecure devices" mode (MSC4153) refuses to exchange room keys with
devices their owner has not cross-signed. The bot therefore owns a master key and a
self-signing key, publishes them once, and signs its one device with the self-signing key.
The private seeds live next to the crypto store, sealed with a key derived from the
configured `pickle_key`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bridge.adapters.matrix.rest import MatrixError, MatrixRest
from bridge.store import syncstate
from bridge.store.base import Database

log = logging.getLogger(__name__)

USAGES = ("master", "self_signing", "user_signing")


def unpadded_b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def canonical_json(obj: Any) -> bytes:
    """Matrix canonical JSON: sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class SigningKey:
    seed: bytes

    @property
    def private(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    @property
    def public_b64(self) -> str:
        raw = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return unpadded_b64(raw)

    def sign_json(self, obj: dict[str, Any]) -> str:
        """Sign an object as the spec says: without `signatures` and `unsigned`."""
        stripped = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
        return unpadded_b64(self.private.sign(canonical_json(stripped)))


def _seal_key(pickle_key: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"confidant-cross-signing")
    return hkdf.derive(pickle_key.encode())


def _seal_seeds(seeds: dict[str, str], pickle_key: str) -> bytes:
    nonce = os.urandom(12)
    aead = AESGCM(_seal_key(pickle_key))
    return nonce + aead.encrypt(nonce, json.dumps(seeds).encode(), b"cross-signing")


def _open_seeds(blob: bytes, pickle_key: str) -> dict[str, SigningKey]:
    aead = AESGCM(_seal_key(pickle_key))
    seeds = json.loads(aead.decrypt(blob[:12], blob[12:], b"cross-signing"))
    return {usage: SigningKey(base64.b64decode(seeds[usage])) for usage in USAGES}


def _write_private(path: Path, blob: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(blob)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _new_seeds() -> dict[str, str]:
    return {usage: base64.b64encode(os.urandom(32)).decode() for usage in USAGES}


def load_or_create_keys(path: Path, pickle_key: str) -> dict[str, SigningKey]:
    """The bot's three cross-signing seeds, created once and kept sealed on disk."""
    if path.exists():
        return _open_seeds(path.read_bytes(), pickle_key)
    blob = _seal_seeds(_new_seeds(), pickle_key)
    _write_private(path, blob)
    return _open_seeds(blob, pickle_key)


def _existing_or_new_blob(path: Path, pickle_key: str) -> bytes:
    """An older install's sealed seeds (checked to open with this key), or new ones."""
    if path.exists():
        blob = path.read_bytes()
        _open_seeds(blob, pickle_key)
        return blob
    return _seal_seeds(_new_seeds(), pickle_key)


#: The kv entry holding the sealed seeds, shared by every instance on the database.
IDENTITY_KV_KEY = "matrix.cross_signing.sealed"


async def shared_keys(db: Database, path: Path, pickle_key: str) -> dict[str, SigningKey]:
    """The bot's cross-signing seeds, one identity for every instance of the bridge.

    An active instance and its standby each have their own device (their own data
    directory) but must sign it with the same self-signing key: a second identity would
    replace the first on the homeserver and leave the other instance's device unsigned.
    The seeds live in the database, sealed with `pickle_key` (which every instance has);
    an older install's file in `data_dir` is adopted the first time. Two instances
    starting at once agree, because only the first insert wins.
    """
    stored = await syncstate.get_kv(db, IDENTITY_KV_KEY)
    if stored is None:
        blob = _existing_or_new_blob(path, pickle_key)
        await syncstate.set_kv_if_absent(db, IDENTITY_KV_KEY, base64.b64encode(blob).decode())
        stored = await syncstate.get_kv(db, IDENTITY_KV_KEY)
        assert stored is not None
    blob = base64.b64decode(stored)
    keys = _open_seeds(blob, pickle_key)
    # A copy beside the crypto store, as before: a backup of the data directory alone can
    # still prove the bot's identity. The database copy decides.
    await asyncio.to_thread(_keep_copy, path, blob)
    return keys


def _keep_copy(path: Path, blob: bytes) -> None:
    if not path.exists() or path.read_bytes() != blob:
        _write_private(path, blob)


def cross_signing_bodies(user_id: str, keys: dict[str, SigningKey]) -> dict[str, Any]:
    """The `/keys/device_signing/upload` body: master, and the two keys it signs."""
    master = keys["master"]

    def key_obj(usage: str) -> dict[str, Any]:
        pub = keys[usage].public_b64
        return {"user_id": user_id, "usage": [usage], "keys": {f"ed25519:{pub}": pub}}

    body: dict[str, Any] = {"master_key": key_obj("master")}
    for usage in ("self_signing", "user_signing"):
        obj = key_obj(usage)
        obj["signatures"] = {user_id: {f"ed25519:{master.public_b64}": master.sign_json(obj)}}
        body[f"{usage}_key"] = obj
    return body


class CrossSigner:
    """Publishes the bot's cross-signing identity and signs its device, idempotently."""

    def __init__(self, rest: MatrixRest, user_id: str, device_id: str, password: str | None):
        self.rest = rest
        self.user_id = user_id
        self.device_id = device_id
        self.password = password

    async def ensure(self, keys: dict[str, SigningKey]) -> str:
        """Make the published identity ours and our device signed. Returns what was done."""
        query = await self.rest.request(
            "POST",
            "/_matrix/client/v3/keys/query",
            {"device_keys": {self.user_id: [self.device_id]}},
        )
        master_pub = keys["master"].public_b64
        ssk_pub = keys["self_signing"].public_b64
        published = query.get("master_keys", {}).get(self.user_id, {}).get("keys", {})
        done = []
        if f"ed25519:{master_pub}" not in published:
            await self._upload_identity(keys)
            done.append("identity published")
        device = query.get("device_keys", {}).get(self.user_id, {}).get(self.device_id)
        if device is None:
            raise RuntimeError("the bot's device has no keys on the homeserver yet")
        sigs = device.get("signatures", {}).get(self.user_id, {})
        if f"ed25519:{ssk_pub}" not in sigs or done:
            await self._sign_device(keys["self_signing"], device)
            done.append("device signed")
        return ", ".join(done) or "already cross-signed"

    async def _upload_identity(self, keys: dict[str, SigningKey]) -> None:
        body = cross_signing_bodies(self.user_id, keys)
        path = "/_matrix/client/v3/keys/device_signing/upload"
        try:
            await self.rest.request("POST", path, body)
        except MatrixError as err:
            # Replacing an existing identity needs user-interactive auth; the first
            # upload usually does not (MSC3967).
            if err.status != 401 or "session" not in err.body:
                raise
            if not self.password:
                raise RuntimeError(
                    "the homeserver wants the bot's password to publish its cross-signing "
                    "keys; set bot.password in the config"
                ) from err
            body["auth"] = {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": self.user_id},
                "password": self.password,
                "session": err.body["session"],
            }
            await self.rest.request("POST", path, body)

    async def _sign_device(self, ssk: SigningKey, device: dict[str, Any]) -> None:
        signed = {k: v for k, v in device.items() if k not in ("signatures", "unsigned")}
        signed["signatures"] = {self.user_id: {f"ed25519:{ssk.public_b64}": ssk.sign_json(device)}}
        result = await self.rest.request(
            "POST",
            "/_matrix/client/v3/keys/signatures/upload",
            {self.user_id: {self.device_id: signed}},
        )
        if result.get("failures"):
            raise RuntimeError(f"signature upload refused: {sorted(result['failures'])}")
