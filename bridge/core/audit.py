"""The audit hash chain: canonical entries, their hashes, signed checkpoints and verification.

An entry is a flat JSON object (see `make_entry`); its hash is
``SHA256(prev_hash || canonical_json(entry))`` with `GENESIS_HASH` before the first entry.
Sequence numbers start at 1 and have no gaps. One chain covers the whole practice; each
entry also carries `pair_prev`, the hash of the previous entry of the same pair (or None),
so a pair's entries form their own linked list inside the chain. That is what lets a
transcript export prove a pair's history without showing any other pair's entries.

A checkpoint ``{count, head_hash, ts}`` signed with Ed25519 pins the head of the chain, so
cutting entries off the end (or rewriting the chain) is detected by anyone holding a copy.

Verification streams: `ChainVerifier` takes one stored record at a time and keeps only the
running hash, so a million entries verify in constant memory. Everything here is pure.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

#: Format version written into every entry.
ENTRY_VERSION = 1

#: The "previous hash" of the first entry.
GENESIS_HASH = hashlib.sha256(b"confidant audit chain v1 genesis").digest()

#: Prefix of the bytes a checkpoint signature covers, so it cannot be replayed as anything else.
_CHECKPOINT_DOMAIN = b"confidant audit checkpoint v1\n"

ENTRY_FIELDS = (
    "v",
    "seq",
    "ts",
    "pair_id",
    "pair_prev",
    "actor",
    "role",
    "action",
    "event_id",
    "outcome",
    "content_sha256",
    "details",
)


# ---------------------------------------------------------------- canonical JSON

# One encoder reused: `json.dumps` with options builds a new one per call.
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def _check_json(value: Any, depth: int = 0) -> None:
    """Refuse what canonical JSON cannot represent exactly: floats, non-string keys, objects."""
    if depth > 64:
        raise ValueError("audit JSON nests too deeply")
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        # Floats have no single canonical spelling across languages; store ints (ms, bytes).
        raise TypeError("floats are not allowed in audit JSON: use integers")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError("audit JSON object keys must be strings")
            _check_json(item, depth + 1)
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check_json(item, depth + 1)
        return
    raise TypeError(f"{type(value).__name__} is not allowed in audit JSON")


def canonical_json(value: Any, *, check: bool = True) -> bytes:
    """Encode `value` as canonical JSON: sorted keys, no spaces, UTF-8, no floats.

    `check=False` skips the type walk for values already known to be clean (e.g. read back
    from the database), which matters when verifying millions of entries.
    """
    if check:
        _check_json(value)
    return _ENCODER.encode(value).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of `data` (how content and media are referred to)."""
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- entries


def make_entry(
    *,
    seq: int,
    ts: int,
    actor: str,
    action: str,
    pair_id: str | None = None,
    pair_prev: bytes | None = None,
    role: str | None = None,
    event_id: str | None = None,
    outcome: str = "ok",
    content_sha256: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build one entry with every field present (absent values are null)."""
    if seq < 1:
        raise ValueError("seq starts at 1")
    entry: dict[str, Any] = {
        "v": ENTRY_VERSION,
        "seq": seq,
        "ts": ts,
        "pair_id": pair_id,
        "pair_prev": pair_prev.hex() if pair_prev is not None else None,
        "actor": actor,
        "role": role,
        "action": action,
        "event_id": event_id,
        "outcome": outcome,
        "content_sha256": content_sha256,
        "details": dict(details or {}),
    }
    _check_json(entry)
    return entry


def entry_hash(prev_hash: bytes, entry: Mapping[str, Any], *, check: bool = True) -> bytes:
    """SHA256(prev_hash || canonical_json(entry))."""
    return hashlib.sha256(prev_hash + canonical_json(entry, check=check)).digest()


def message_content(
    msgtype: str,
    body: str,
    *,
    formatted_body: str | None = None,
    filename: str | None = None,
    mimetype: str | None = None,
    media_ref: str | None = None,
    **extra: Any,
) -> bytes:
    """The content bytes of a message entry: canonical JSON the transcript export can render.

    Keys: `msgtype` (a Matrix msgtype such as "m.text", "m.audio", or one of Confidant's own:
    "email", "video_link", "sla", "membership", "notice"), `body`, and when they apply
    `formatted_body`, `filename`, `mimetype`, `media_ref` (hex SHA-256 of media bytes kept
    with `store_media`). Extra keys (for example `voice`, `duration_ms`, `subject`, `url`,
    `attachments`) are kept as given.
    """
    content: dict[str, Any] = {"msgtype": msgtype, "body": body}
    optional = {
        "formatted_body": formatted_body,
        "filename": filename,
        "mimetype": mimetype,
        "media_ref": media_ref,
    }
    content.update({k: v for k, v in optional.items() if v is not None})
    content.update(extra)
    return canonical_json(content)


class StoredEntry(NamedTuple):
    """An entry as read back: the entry, its stored hash and (when kept) the stored prev hash."""

    entry: Mapping[str, Any]
    hash: bytes
    prev_hash: bytes | None = None


# ---------------------------------------------------------------- checkpoints


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The chain had `count` entries ending in `head_hash` at `ts` (ms)."""

    count: int
    head_hash: bytes
    ts: int

    def signed_bytes(self) -> bytes:
        """What the signature covers."""
        body = {"count": self.count, "head_hash": self.head_hash.hex(), "ts": self.ts}
        return _CHECKPOINT_DOMAIN + canonical_json(body)


def public_key_bytes(key: Ed25519PublicKey) -> bytes:
    """The raw 32 bytes of an Ed25519 public key."""
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_fingerprint(public_key: bytes) -> str:
    """A short, stable name for a public key (first 16 hex digits of its SHA-256)."""
    return hashlib.sha256(public_key).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint with its Ed25519 signature and the raw public key that made it."""

    checkpoint: Checkpoint
    signature: bytes
    public_key: bytes

    @property
    def count(self) -> int:
        return self.checkpoint.count

    @property
    def key_id(self) -> str:
        return key_fingerprint(self.public_key)

    def signature_valid(self, trusted_key: bytes | None = None) -> bool:
        """Check the signature with `trusted_key` (raw), or with the embedded key if None.

        Only a trusted key proves who signed; the embedded key proves the checkpoint is intact.
        """
        key = trusted_key if trusted_key is not None else self.public_key
        try:
            Ed25519PublicKey.from_public_bytes(key).verify(
                self.signature, self.checkpoint.signed_bytes()
            )
        except (InvalidSignature, ValueError):
            return False
        return True

    def to_json(self) -> dict[str, Any]:
        """A JSON object that can be kept elsewhere and handed back to `from_json`."""
        return {
            "format": "confidant-audit-checkpoint/1",
            "count": self.checkpoint.count,
            "head_hash": self.checkpoint.head_hash.hex(),
            "ts": self.checkpoint.ts,
            "key_id": self.key_id,
            "public_key": base64.b64encode(self.public_key).decode("ascii"),
            "signature": base64.b64encode(self.signature).decode("ascii"),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SignedCheckpoint:
        """Parse `to_json` output; raises ValueError when a field is missing or malformed."""
        try:
            checkpoint = Checkpoint(
                count=int(data["count"]),
                head_hash=bytes.fromhex(str(data["head_hash"])),
                ts=int(data["ts"]),
            )
            return cls(
                checkpoint=checkpoint,
                signature=base64.b64decode(str(data["signature"]), validate=True),
                public_key=base64.b64decode(str(data["public_key"]), validate=True),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed checkpoint: {exc}") from exc


def sign_checkpoint(checkpoint: Checkpoint, key: Ed25519PrivateKey) -> SignedCheckpoint:
    """Sign a checkpoint with the practice's audit signing key."""
    return SignedCheckpoint(
        checkpoint=checkpoint,
        signature=key.sign(checkpoint.signed_bytes()),
        public_key=public_key_bytes(key.public_key()),
    )


# ---------------------------------------------------------------- verification


class BreakKind(enum.StrEnum):
    """What kind of damage verification found."""

    CHANGED = "changed"
    MISSING = "missing"
    REORDERED = "reordered"
    TRUNCATED = "truncated"
    WRONG_KEY = "wrong key"


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of verifying a chain: OK with counts, or the first break and its kind."""

    ok: bool
    count: int
    head_hash: bytes
    broken_seq: int | None = None
    kind: BreakKind | None = None
    detail: str = ""
    #: Checkpoints whose head matched and whose signature verified, and the newest of them.
    checkpoints_verified: int = 0
    last_checkpoint: int | None = None
    #: Entries of the pair verified, when verification was asked for one pair.
    pair_id: str | None = None
    pair_count: int = 0
    content_checked: int = 0

    def summary(self) -> str:
        """One line for the CLI."""
        if not self.ok:
            text = f"BROKEN at entry {self.broken_seq}: {self.kind}"
            return f"{text} ({self.detail})" if self.detail else text
        parts = [f"OK: {self.count} entries, head {self.head_hash.hex()[:8]}…"]
        if self.pair_id is not None:
            parts.append(f"{self.pair_count} of pair {self.pair_id}")
        if self.content_checked:
            parts.append(f"{self.content_checked} contents match their hashes")
        if self.last_checkpoint is not None:
            number, at = self.checkpoints_verified, self.last_checkpoint
            parts.append(f"checkpoint #{number} at {at} entries verified")
        else:
            parts.append("no checkpoint")
        return ", ".join(parts)


@dataclass(slots=True)
class _Break:
    seq: int
    kind: BreakKind
    detail: str
    #: While set, later records are scanned for the entry that belongs at `seq`.
    looking_for_seq: bool = False
    looking_for_hash: bool = False
    prev: bytes = b""
    other: list[str] = field(default_factory=list)


class ChainVerifier:
    """Verify a chain one stored record at a time, in sequence order, in constant memory.

    Feed records with `feed` until it returns False (nothing later can change the verdict)
    or the records run out, then call `finish`. Checkpoints may be given in any order; with
    `trusted_key` their signatures must verify under that key, or the result is WRONG_KEY.
    With `pair_id`, the pair's own links (`pair_prev`) are checked and counted as well.
    """

    def __init__(
        self,
        checkpoints: Iterable[SignedCheckpoint] = (),
        *,
        trusted_key: bytes | None = None,
        pair_id: str | None = None,
    ) -> None:
        self._prev = GENESIS_HASH
        self._next_seq = 1
        self._break: _Break | None = None
        self._pair_id = pair_id
        self._pair_head: bytes | None = None
        self._pair_count = 0
        self._wrong_key: tuple[int, str] | None = None
        good: list[SignedCheckpoint] = []
        for cp in checkpoints:
            if cp.signature_valid(trusted_key):
                good.append(cp)
            elif self._wrong_key is None or cp.count < self._wrong_key[0]:
                why = "not signed by the audit key" if trusted_key else "signature invalid"
                self._wrong_key = (cp.count, f"checkpoint at {cp.count} entries is {why}")
        self._checkpoints: Sequence[SignedCheckpoint] = sorted(good, key=lambda c: c.count)
        self._cp_index = 0
        self._cp_verified = 0
        self._cp_last: int | None = None
        self._check_checkpoints_at(0)

    @property
    def broken(self) -> bool:
        return self._break is not None

    def _fail(self, seq: int, kind: BreakKind, detail: str) -> None:
        self._break = _Break(seq, kind, detail)

    def _check_checkpoints_at(self, count: int) -> None:
        """Compare the running head with every checkpoint taken at `count` entries."""
        while self._cp_index < len(self._checkpoints):
            cp = self._checkpoints[self._cp_index]
            if cp.count > count:
                return
            self._cp_index += 1
            head = self._prev if cp.count > 0 else GENESIS_HASH
            if cp.checkpoint.head_hash != head:
                self._fail(
                    max(cp.count, 1),
                    BreakKind.TRUNCATED,
                    f"head after {cp.count} entries differs from the signed checkpoint "
                    "(entries were cut off and others appended, or the chain was rewritten)",
                )
                return
            self._cp_verified += 1
            self._cp_last = cp.count

    def feed(self, record: StoredEntry) -> bool:
        """Take the next record; return False once later records cannot change the result."""
        if self._break is not None:
            return self._classify(record)
        entry = record.entry
        seq = entry.get("seq")
        expected = self._next_seq
        if not isinstance(seq, int) or isinstance(seq, bool):
            self._fail(expected, BreakKind.CHANGED, "entry has no valid sequence number")
            return False
        if seq < expected:
            self._fail(expected, BreakKind.REORDERED, f"entry {seq} appears after {expected - 1}")
            return False
        if seq > expected:
            self._fail(expected, BreakKind.MISSING, f"next entry present is {seq}")
            self._break_scan(seq=True)
            return True
        computed = entry_hash(self._prev, entry, check=False)
        if computed != record.hash:
            if record.prev_hash is not None and record.prev_hash != self._prev:
                try:
                    intact = entry_hash(record.prev_hash, entry, check=False) == record.hash
                except (TypeError, ValueError):
                    intact = False
                if intact and expected > 1:
                    # This entry is as it was written; the one before it was altered
                    # (and its stored hash recomputed to hide it).
                    self._fail(expected - 1, BreakKind.CHANGED, "entry and its hash were rewritten")
                    return False
            self._fail(expected, BreakKind.CHANGED, "entry does not match its hash")
            self._break_scan(hash_=True)
            return True
        if record.prev_hash is not None and record.prev_hash != self._prev:
            self._fail(expected, BreakKind.CHANGED, "stored previous hash was altered")
            return False
        if self._pair_id is not None and entry.get("pair_id") == self._pair_id:
            want = self._pair_head.hex() if self._pair_head is not None else None
            if entry.get("pair_prev") != want:
                self._fail(expected, BreakKind.CHANGED, "link to the pair's previous entry differs")
                return False
            self._pair_head = computed
            self._pair_count += 1
        self._prev = computed
        self._next_seq = expected + 1
        self._check_checkpoints_at(expected)
        return self._break is None

    def _break_scan(self, *, seq: bool = False, hash_: bool = False) -> None:
        assert self._break is not None
        self._break.looking_for_seq = seq
        self._break.looking_for_hash = hash_
        self._break.prev = self._prev

    def _classify(self, record: StoredEntry) -> bool:
        """After a break, look further on for the entry that belongs at the broken seq."""
        brk = self._break
        assert brk is not None
        if brk.looking_for_seq and record.entry.get("seq") == brk.seq:
            brk.kind = BreakKind.REORDERED
            brk.detail = f"entry {brk.seq} found later in the chain"
            return False
        if brk.looking_for_hash:
            # A row whose fields belong at the broken seq (rows swapped, numbers kept).
            moved = dict(record.entry)
            moved["seq"] = brk.seq
            try:
                fits = entry_hash(brk.prev, moved, check=False) == record.hash
            except (TypeError, ValueError):
                fits = False
            if fits:
                found_at = record.entry.get("seq")
                brk.kind = BreakKind.REORDERED
                brk.detail = f"entry {brk.seq} was moved to position {found_at}"
                return False
        return brk.looking_for_seq or brk.looking_for_hash

    def finish(self) -> VerifyResult:
        """The verdict over everything fed so far."""
        count = self._next_seq - 1
        brk = self._break
        if brk is None:
            pending = [cp for cp in self._checkpoints[self._cp_index :] if cp.count > count]
            if pending:
                top = max(cp.count for cp in pending)
                brk = _Break(
                    count + 1,
                    BreakKind.TRUNCATED,
                    f"chain has {count} entries, a signed checkpoint says {top}",
                )
        if self._wrong_key is not None and (brk is None or self._wrong_key[0] < brk.seq):
            brk = _Break(max(self._wrong_key[0], 1), BreakKind.WRONG_KEY, self._wrong_key[1])
        head = self._prev
        if brk is not None:
            return VerifyResult(
                ok=False,
                count=count,
                head_hash=head,
                broken_seq=brk.seq,
                kind=brk.kind,
                detail=brk.detail,
                checkpoints_verified=self._cp_verified,
                last_checkpoint=self._cp_last,
                pair_id=self._pair_id,
                pair_count=self._pair_count,
            )
        return VerifyResult(
            ok=True,
            count=count,
            head_hash=head,
            checkpoints_verified=self._cp_verified,
            last_checkpoint=self._cp_last,
            pair_id=self._pair_id,
            pair_count=self._pair_count,
        )


def verify_chain(
    records: Iterable[StoredEntry | Mapping[str, Any]],
    checkpoint: SignedCheckpoint | Iterable[SignedCheckpoint] | None = None,
    *,
    trusted_key: bytes | None = None,
    pair_id: str | None = None,
) -> VerifyResult:
    """Verify stored records (in seq order) against their hashes and the checkpoint(s).

    Records are `StoredEntry` tuples; a plain mapping is read as an entry plus its stored
    `hash` (bytes or hex) and optional `prev_hash`. The iterable is consumed lazily.
    """
    if checkpoint is None:
        checkpoints: Iterable[SignedCheckpoint] = ()
    elif isinstance(checkpoint, SignedCheckpoint):
        checkpoints = (checkpoint,)
    else:
        checkpoints = checkpoint
    verifier = ChainVerifier(checkpoints, trusted_key=trusted_key, pair_id=pair_id)
    for record in records:
        stored = record if isinstance(record, StoredEntry) else _from_mapping(record)
        if not verifier.feed(stored):
            break
    return verifier.finish()


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return bytes.fromhex(str(value))


def _from_mapping(row: Mapping[str, Any]) -> StoredEntry:
    entry = {k: row[k] for k in ENTRY_FIELDS if k in row}
    prev = row.get("prev_hash")
    return StoredEntry(entry, _as_bytes(row["hash"]), _as_bytes(prev) if prev is not None else None)
