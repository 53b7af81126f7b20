"""Signed checkpoints of the audit chain head: writing, reading and keys.

A checkpoint says "the chain had `count` entries ending in `head_hash`", signed with the
practice's Ed25519 audit key. They are written every N entries, with every export and on
demand; `export_checkpoint` returns one as JSON to keep somewhere the database is not, and
`witness_checkpoint` writes it to a file there (`confidant audit checkpoint`). The copies
in the database alone cannot show a truncated tail: whoever cuts it can delete them too.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from bridge.core.audit import (
    GENESIS_HASH,
    Checkpoint,
    SignedCheckpoint,
    public_key_bytes,
    sign_checkpoint,
)
from bridge.store import audit as audit_store
from bridge.store import checkpoints
from bridge.store.base import Executor, to_ms


def _decode_32(text: str) -> bytes:
    text = text.strip()
    if len(text) == 64:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_")
    except (binascii.Error, ValueError) as exc:
        raise ValueError("key is neither hex, base64 nor PEM") from exc
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 key is 32 bytes, got {len(raw)}")
    return raw


def _secret(value: Any) -> Any:
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


def load_signing_key(value: Any) -> Ed25519PrivateKey:
    """An Ed25519 private key from a key object, a PEM (PKCS#8) text, or a 32-byte seed.

    Seeds may be raw bytes, hex or base64; pydantic secrets are unwrapped.
    """
    value = _secret(value)
    if isinstance(value, Ed25519PrivateKey):
        return value
    if isinstance(value, bytes) and len(value) == 32:
        return Ed25519PrivateKey.from_private_bytes(value)
    text = value.decode("ascii") if isinstance(value, bytes) else str(value)
    if "-----BEGIN" in text:
        key = load_pem_private_key(text.encode("ascii"), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the audit signing key must be an Ed25519 key")
        return key
    return Ed25519PrivateKey.from_private_bytes(_decode_32(text))


def load_public_key(value: Any) -> bytes:
    """Raw 32 bytes of an Ed25519 public key given as key object, PEM, hex or base64."""
    value = _secret(value)
    if isinstance(value, Ed25519PublicKey):
        return public_key_bytes(value)
    if isinstance(value, Ed25519PrivateKey):
        return public_key_bytes(value.public_key())
    if isinstance(value, bytes) and len(value) == 32:
        return value
    text = value.decode("ascii") if isinstance(value, bytes) else str(value)
    if "-----BEGIN" in text:
        key = load_pem_public_key(text.encode("ascii"))
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the audit public key must be an Ed25519 key")
        return public_key_bytes(key)
    return _decode_32(text)


async def write_checkpoint(
    tx: Executor, signing_key: Ed25519PrivateKey, ts: int, reason: str
) -> SignedCheckpoint:
    """Sign the current head and store it (inside the caller's transaction)."""
    head = await audit_store.head(tx)
    head_hash = head.head_hash if head.head_hash is not None else GENESIS_HASH
    signed = sign_checkpoint(Checkpoint(head.seq, head_hash, ts), signing_key)
    await checkpoints.add(tx, signed, reason)
    return signed


async def load_checkpoints(db: Executor) -> list[SignedCheckpoint]:
    """Every stored checkpoint, oldest first (a few per thousand entries)."""
    return await checkpoints.list_all(db)


async def latest_checkpoint(db: Executor) -> SignedCheckpoint | None:
    """The newest stored checkpoint, or None."""
    return await checkpoints.latest(db)


async def export_checkpoint(
    db: Any, signing_key: Ed25519PrivateKey, now: datetime
) -> dict[str, Any]:
    """Sign the head now, store it, and return it as JSON to keep outside the database."""
    async with db.transaction() as tx:
        signed = await write_checkpoint(tx, signing_key, to_ms(now), "manual")
    return signed.to_json()


def checkpoint_file_name(count: int) -> str:
    """The file a checkpoint at `count` entries gets in a witness directory."""
    return f"audit-checkpoint-{count:012d}.json"


def _write_atomically(path: Path, text: str) -> None:
    # A reader (or a crash) never sees half a checkpoint: write aside, sync, rename.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


async def witness_checkpoint(
    db: Any, signing_key: Ed25519PrivateKey, now: datetime, *, out: Path
) -> tuple[Path, SignedCheckpoint]:
    """Sign the committed head now and write it to `out` (a file, or a directory).

    In a directory the file is named by its entry count, so older witnesses stay beside
    newer ones and `audit verify --checkpoint DIR` checks them all.
    """
    signed = SignedCheckpoint.from_json(await export_checkpoint(db, signing_key, now))
    text = json.dumps(signed.to_json(), sort_keys=True, indent=2) + "\n"
    path = await asyncio.to_thread(_write_witness, out, signed.count, text)
    return path, signed


def _write_witness(out: Path, count: int, text: str) -> Path:
    path = out / checkpoint_file_name(count) if out.is_dir() else out
    _write_atomically(path, text)
    return path
