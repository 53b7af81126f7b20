"""The audit chain: canonical JSON, hashes, checkpoints and every kind of tampering."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bridge.core.audit import (
    GENESIS_HASH,
    BreakKind,
    ChainVerifier,
    Checkpoint,
    SignedCheckpoint,
    StoredEntry,
    canonical_json,
    entry_hash,
    make_entry,
    message_content,
    public_key_bytes,
    sign_checkpoint,
    verify_chain,
)

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
TRUSTED = public_key_bytes(KEY.public_key())


def build_chain(n: int, pairs: tuple[str, ...] = ("p1", "p2")) -> list[StoredEntry]:
    """n stored records as the audit log writes them (pair links included)."""
    records: list[StoredEntry] = []
    prev = GENESIS_HASH
    pair_heads: dict[str, bytes] = {}
    for seq in range(1, n + 1):
        pair = pairs[seq % len(pairs)]
        entry = make_entry(
            seq=seq,
            ts=1_700_000_000_000 + seq,
            pair_id=pair,
            pair_prev=pair_heads.get(pair),
            actor="@patient:example.org",
            role="patient",
            action="room.text",
            event_id=f"$e{seq}",
            content_sha256=hashlib.sha256(f"body {seq}".encode()).hexdigest(),
            details={"kind": "text", "n": seq},
        )
        digest = entry_hash(prev, entry)
        records.append(StoredEntry(entry, digest, prev))
        pair_heads[pair] = digest
        prev = digest
    return records


def checkpoint_of(records: list[StoredEntry], count: int, key: Ed25519PrivateKey = KEY):
    head = records[count - 1].hash if count else GENESIS_HASH
    return sign_checkpoint(Checkpoint(count=count, head_hash=head, ts=1), key)


def with_entry(record: StoredEntry, **changes: Any) -> StoredEntry:
    entry = dict(record.entry)
    entry.update(changes)
    return StoredEntry(entry, record.hash, record.prev_hash)


# ---------------------------------------------------------------- canonical JSON


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert (
        canonical_json({"b": 1, "a": ["é", None, True]}) == '{"a":["é",null,true],"b":1}'.encode()
    )


@pytest.mark.parametrize("bad", [1.5, {"x": float("nan")}, {1: "x"}, {"x": object()}])
def test_canonical_json_refuses_what_it_cannot_spell_one_way(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        canonical_json(bad)


def test_entry_hash_is_sha256_of_prev_and_canonical_entry() -> None:
    entry = make_entry(seq=1, ts=5, actor="@a:x", action="test")
    expected = hashlib.sha256(GENESIS_HASH + canonical_json(entry)).digest()
    assert entry_hash(GENESIS_HASH, entry) == expected
    assert set(entry) >= {"seq", "ts", "pair_id", "actor", "role", "action", "event_id"}


def test_message_content_shape() -> None:
    data = message_content("m.file", "report.pdf", filename="report.pdf", mimetype="x/y", size=3)
    assert json.loads(data) == {
        "msgtype": "m.file",
        "body": "report.pdf",
        "filename": "report.pdf",
        "mimetype": "x/y",
        "size": 3,
    }


# ---------------------------------------------------------------- verification


def test_intact_chain_verifies_with_checkpoints() -> None:
    records = build_chain(50)
    cps = [checkpoint_of(records, 20), checkpoint_of(records, 50)]
    result = verify_chain(iter(records), cps, trusted_key=TRUSTED)
    assert result.ok
    assert result.count == 50
    assert result.head_hash == records[-1].hash
    assert result.checkpoints_verified == 2
    assert result.last_checkpoint == 50
    assert result.summary().startswith("OK: 50 entries, head ")
    assert "checkpoint #2 at 50 entries verified" in result.summary()


def test_empty_chain_is_ok() -> None:
    result = verify_chain([])
    assert result.ok and result.count == 0 and result.head_hash == GENESIS_HASH


@pytest.mark.parametrize(
    "field,value",
    [("actor", "@mallory:x"), ("ts", 1), ("details", {"kind": "text", "n": 0}), ("outcome", "x")],
)
def test_changed_field_is_found(field: str, value: Any) -> None:
    records = build_chain(30)
    records[11] = with_entry(records[11], **{field: value})
    result = verify_chain(records)
    assert not result.ok
    assert (result.broken_seq, result.kind) == (12, BreakKind.CHANGED)
    assert result.summary().startswith("BROKEN at entry 12: changed")


def test_changed_entry_with_recomputed_hash_is_pinned_to_that_entry() -> None:
    records = build_chain(30)
    forged = dict(records[11].entry, actor="@mallory:x")
    records[11] = StoredEntry(forged, entry_hash(records[11].prev_hash or b"", forged), None)
    result = verify_chain(records)
    assert (result.broken_seq, result.kind) == (12, BreakKind.CHANGED)


def test_fully_rewritten_chain_is_caught_by_the_signed_checkpoint() -> None:
    records = build_chain(30)
    cp = checkpoint_of(records, 30)
    forged = build_chain(30, pairs=("p9",))
    result = verify_chain(forged, cp, trusted_key=TRUSTED)
    assert (result.broken_seq, result.kind) == (30, BreakKind.TRUNCATED)


def test_missing_entry_is_found() -> None:
    records = build_chain(30)
    del records[7]
    result = verify_chain(records)
    assert (result.broken_seq, result.kind) == (8, BreakKind.MISSING)


def test_reordered_stream_is_found() -> None:
    records = build_chain(30)
    records[7], records[8] = records[8], records[7]
    result = verify_chain(records)
    assert (result.broken_seq, result.kind) == (8, BreakKind.REORDERED)


@pytest.mark.parametrize("distance", [1, 2, 15])
def test_swapped_rows_with_kept_numbers_are_found(distance: int) -> None:
    """Rows read in seq order, but two rows' contents trade places (as an UPDATE would do)."""
    records = build_chain(30)
    a, b = 5, 5 + distance
    ra, rb = records[a], records[b]
    records[a] = StoredEntry(dict(rb.entry, seq=a + 1), rb.hash, rb.prev_hash)
    records[b] = StoredEntry(dict(ra.entry, seq=b + 1), ra.hash, ra.prev_hash)
    result = verify_chain(records)
    assert (result.broken_seq, result.kind) == (a + 1, BreakKind.REORDERED)


def test_truncated_tail_is_found_with_a_checkpoint() -> None:
    records = build_chain(30)
    cp = checkpoint_of(records, 30)
    result = verify_chain(records[:25], cp, trusted_key=TRUSTED)
    assert (result.broken_seq, result.kind) == (26, BreakKind.TRUNCATED)
    assert "25 entries" in result.detail


def test_truncated_tail_without_checkpoint_cannot_be_seen() -> None:
    # This is why checkpoints exist (and are exported to be kept elsewhere).
    assert verify_chain(build_chain(30)[:25]).ok


def test_cut_and_regrown_tail_is_found() -> None:
    records = build_chain(30)
    cp = checkpoint_of(records, 30)
    regrown = records[:25] + build_chain(40, pairs=("p3",))[25:]
    # The regrown part links to nothing real; verify it as if its hashes were recomputed.
    prev = records[24].hash
    fixed = records[:25]
    for record in regrown[25:]:
        digest = entry_hash(prev, record.entry)
        fixed.append(StoredEntry(record.entry, digest, prev))
        prev = digest
    result = verify_chain(fixed, cp, trusted_key=TRUSTED)
    assert (result.broken_seq, result.kind) == (30, BreakKind.TRUNCATED)


def test_checkpoint_from_another_key_is_wrong_key() -> None:
    records = build_chain(10)
    forged = checkpoint_of(records, 10, key=OTHER_KEY)
    result = verify_chain(records, forged, trusted_key=TRUSTED)
    assert (result.broken_seq, result.kind) == (10, BreakKind.WRONG_KEY)
    # Without a trusted key the forged checkpoint is at least self-consistent.
    assert verify_chain(records, forged).ok


def test_checkpoint_with_edited_count_fails_its_signature() -> None:
    records = build_chain(10)
    cp = checkpoint_of(records, 10)
    edited = SignedCheckpoint(
        Checkpoint(count=5, head_hash=records[4].hash, ts=1), cp.signature, cp.public_key
    )
    result = verify_chain(records, edited)
    assert result.kind is BreakKind.WRONG_KEY


def test_checkpoint_json_round_trip() -> None:
    cp = checkpoint_of(build_chain(3), 3)
    again = SignedCheckpoint.from_json(json.loads(json.dumps(cp.to_json())))
    assert again == cp and again.signature_valid(TRUSTED)
    with pytest.raises(ValueError):
        SignedCheckpoint.from_json({"count": 1})


def test_pair_links_are_checked_and_counted() -> None:
    records = build_chain(30)
    result = verify_chain(records, pair_id="p1")
    assert result.ok and result.pair_count == 15
    assert "15 of pair p1" in result.summary()


def test_verifier_stops_reading_once_the_verdict_is_settled() -> None:
    records = build_chain(30)
    records[3] = with_entry(records[3], actor="@x:y")
    verifier = ChainVerifier()
    fed = 0
    for record in records:
        fed += 1
        if not verifier.feed(record):
            break
    # A changed entry makes the verifier look on for a moved row, then give up at the end.
    assert verifier.finish().kind is BreakKind.CHANGED
    assert fed == 30


def test_streams_a_generator_without_holding_it() -> None:
    def gen():
        prev = GENESIS_HASH
        for seq in range(1, 20_001):
            entry = make_entry(seq=seq, ts=seq, actor="@a:x", action="t")
            digest = entry_hash(prev, entry)
            yield StoredEntry(entry, digest)
            prev = digest

    result = verify_chain(gen())
    assert result.ok and result.count == 20_000
