"""Seal bytes at rest with AES-256-GCM under a named key, so keys can rotate.

A sealed blob describes itself::

    version (1 byte, 0x01) | key id length (1) | key id (ASCII) | nonce (12) | ciphertext+tag

The header (version and key id) is bound into the GCM associated data together with the
caller's `aad`, so moving a blob to another key id or changing its header fails to open.
Old keys stay in `keys` after a rotation; only `current_key_id` is used to seal.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = 1
NONCE_SIZE = 12
KEY_SIZE = 32
_MAX_KEY_ID = 255


class SealError(Exception):
    """A blob could not be opened: wrong key, unknown key id, tampered or malformed."""


def decode_key(text: str | bytes) -> bytes:
    """Decode a 32-byte key given as raw bytes, hex (64 chars) or base64 (standard or url-safe)."""
    if isinstance(text, bytes):
        if len(text) == KEY_SIZE:
            return text
        text = text.decode("ascii")
    text = text.strip()
    if len(text) == 2 * KEY_SIZE:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=False)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("key is neither hex nor base64") from exc
    if len(raw) != KEY_SIZE:
        raise ValueError(f"key must be {KEY_SIZE} bytes, got {len(raw)}")
    return raw


def generate_key() -> bytes:
    """Return a fresh random 256-bit key."""
    return os.urandom(KEY_SIZE)


def _header(key_id: str) -> bytes:
    kid = key_id.encode("ascii")
    return bytes([VERSION, len(kid)]) + kid


class Sealer:
    """Encrypt and decrypt blobs with AES-256-GCM; seals with the current key, opens with any."""

    def __init__(self, keys: Mapping[str, bytes], current_key_id: str) -> None:
        if current_key_id not in keys:
            raise ValueError("current_key_id is not among the keys")
        self._aead: dict[str, AESGCM] = {}
        for key_id, key in keys.items():
            if not key_id or len(key_id.encode("ascii")) > _MAX_KEY_ID:
                raise ValueError("key ids must be 1..255 ASCII characters")
            if len(key) != KEY_SIZE:
                raise ValueError(f"key {key_id!r} must be {KEY_SIZE} bytes")
            self._aead[key_id] = AESGCM(bytes(key))
        self.current_key_id = current_key_id
        # Kept to rebuild the sealer in a worker process (`__reduce__`): the AES objects
        # cannot be pickled, and a verifier opens content in several processes at once.
        self._keys = {key_id: bytes(key) for key_id, key in keys.items()}

    def __reduce__(self) -> tuple[type[Sealer], tuple[dict[str, bytes], str]]:
        return (Sealer, (self._keys, self.current_key_id))

    @classmethod
    def from_config(cls, audit_cfg: Any) -> Sealer:
        """Build from a config section with `keys` (id -> hex/base64) and `current_key_id`.

        Accepts a mapping or an object with those attributes; key values may be strings
        (hex or base64) or pydantic `SecretStr`/`SecretBytes`.
        """

        def get(name: str) -> Any:
            if isinstance(audit_cfg, Mapping):
                return audit_cfg[name]
            return getattr(audit_cfg, name)

        raw_keys = get("keys")
        keys: dict[str, bytes] = {}
        for key_id, value in dict(raw_keys).items():
            secret = value.get_secret_value() if hasattr(value, "get_secret_value") else value
            keys[str(key_id)] = decode_key(secret)
        return cls(keys, str(get("current_key_id")))

    @property
    def key_ids(self) -> frozenset[str]:
        """The ids of every key this sealer can open."""
        return frozenset(self._aead)

    def seal(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        """Encrypt `plaintext` under the current key; `aad` must be given again to open."""
        header = _header(self.current_key_id)
        nonce = os.urandom(NONCE_SIZE)
        ciphertext = self._aead[self.current_key_id].encrypt(nonce, plaintext, header + aad)
        return header + nonce + ciphertext

    def open(self, blob: bytes, aad: bytes = b"") -> bytes:
        """Decrypt a blob made by `seal` (with any known key); raises `SealError` otherwise."""
        key_id = blob_key_id(blob)
        aead = self._aead.get(key_id)
        if aead is None:
            raise SealError("sealed with an unknown key id")
        start = 2 + blob[1]
        header = bytes(blob[:start])
        nonce = bytes(blob[start : start + NONCE_SIZE])
        ciphertext = bytes(blob[start + NONCE_SIZE :])
        try:
            return aead.decrypt(nonce, ciphertext, header + aad)
        except InvalidTag as exc:
            raise SealError("sealed blob does not authenticate (wrong key or tampered)") from exc


def blob_key_id(blob: bytes) -> str:
    """Return the key id a sealed blob names; raises `SealError` when the header is malformed."""
    if len(blob) < 2 or blob[0] != VERSION:
        raise SealError("not a sealed blob of a known version")
    size = blob[1]
    if size == 0 or len(blob) < 2 + size + NONCE_SIZE + 16:
        raise SealError("sealed blob is truncated")
    try:
        return bytes(blob[2 : 2 + size]).decode("ascii")
    except UnicodeDecodeError as exc:
        raise SealError("sealed blob has a malformed key id") from exc
