"""Sealing: AES-256-GCM blobs that name their key, refuse tampering and survive rotation."""

from __future__ import annotations

import base64

import pytest

from bridge.sealing import Sealer, SealError, blob_key_id, decode_key, generate_key

K1 = bytes(range(32))
K2 = bytes(range(32, 64))


def test_round_trip_and_randomised_nonce() -> None:
    sealer = Sealer({"k1": K1}, "k1")
    a = sealer.seal(b"hello", b"ctx")
    b = sealer.seal(b"hello", b"ctx")
    assert a != b
    assert b"hello" not in a
    assert sealer.open(a, b"ctx") == b"hello"
    assert blob_key_id(a) == "k1"


def test_wrong_aad_is_refused() -> None:
    sealer = Sealer({"k1": K1}, "k1")
    blob = sealer.seal(b"hello", b"seq=1")
    with pytest.raises(SealError):
        sealer.open(blob, b"seq=2")


def test_wrong_key_under_same_id_is_refused() -> None:
    blob = Sealer({"k1": K1}, "k1").seal(b"hello")
    with pytest.raises(SealError):
        Sealer({"k1": K2}, "k1").open(blob)


def test_unknown_key_id_is_refused() -> None:
    blob = Sealer({"k1": K1}, "k1").seal(b"hello")
    with pytest.raises(SealError, match="unknown key id"):
        Sealer({"k2": K2}, "k2").open(blob)


@pytest.mark.parametrize("position", [0, 1, 3, 6, 20, -1])
def test_any_flipped_byte_is_refused(position: int) -> None:
    sealer = Sealer({"k1": K1}, "k1")
    blob = bytearray(sealer.seal(b"some plaintext"))
    blob[position] ^= 0x01
    with pytest.raises(SealError):
        sealer.open(bytes(blob))


def test_truncated_blob_is_refused() -> None:
    sealer = Sealer({"k1": K1}, "k1")
    blob = sealer.seal(b"x")
    for cut in (0, 1, 4, len(blob) - 1):
        with pytest.raises(SealError):
            sealer.open(blob[:cut])


def test_header_relabel_to_other_known_key_is_refused() -> None:
    # Same-length ids so the relabelled header still parses.
    sealer = Sealer({"k1": K1, "k2": K1}, "k1")
    blob = bytearray(sealer.seal(b"x"))
    blob[3] = ord("2")
    with pytest.raises(SealError):
        sealer.open(bytes(blob))


def test_rotation_opens_old_blobs_and_seals_with_new_key() -> None:
    old = Sealer({"2024": K1}, "2024").seal(b"old")
    rotated = Sealer({"2024": K1, "2025": K2}, "2025")
    assert rotated.open(old) == b"old"
    new = rotated.seal(b"new")
    assert blob_key_id(new) == "2025"
    with pytest.raises(SealError):
        Sealer({"2024": K1}, "2024").open(new)


def test_constructor_validates_keys() -> None:
    with pytest.raises(ValueError):
        Sealer({"k1": K1}, "k2")
    with pytest.raises(ValueError):
        Sealer({"k1": b"short"}, "k1")


def test_from_config_accepts_hex_and_base64() -> None:
    cfg = {
        "keys": {"a": K1.hex(), "b": base64.b64encode(K2).decode()},
        "current_key_id": "b",
    }
    sealer = Sealer.from_config(cfg)
    assert sealer.key_ids == {"a", "b"}
    assert Sealer({"b": K2}, "b").open(sealer.seal(b"z")) == b"z"


def test_decode_key_rejects_wrong_length() -> None:
    with pytest.raises(ValueError):
        decode_key(base64.b64encode(b"x" * 16).decode())
    assert len(generate_key()) == 32
    assert decode_key(base64.urlsafe_b64encode(K1).decode().rstrip("=")) == K1
