"""The rooms kept over a clean restart: written with their sync token, used only with it."""

from __future__ import annotations

import json
from pathlib import Path

from nio import AsyncClient, MatrixRoom

from bridge.adapters.matrix import roomcache


def client() -> AsyncClient:
    return AsyncClient("http://127.0.0.1:9", "@bot:hs")


def known_rooms(c: AsyncClient) -> None:
    pair = MatrixRoom("!pair", "@bot:hs", encrypted=True)
    for user in ("@bot:hs", "@doc:hs"):
        pair.add_member(user, "Shown Name", None)
    pair.add_member("@pat:hs", "Patient Name", None, invited=True)
    c.rooms["!pair"] = pair
    c.rooms["!plain"] = MatrixRoom("!plain", "@bot:hs")


def test_rooms_come_back_with_who_joined_and_who_is_invited(tmp_path: Path) -> None:
    before = client()
    known_rooms(before)
    assert roomcache.save(before, tmp_path, "s42") == 2
    path = tmp_path / roomcache.SNAPSHOT_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert "Name" not in path.read_text()  # ids only, never display names

    after = client()
    assert roomcache.restore(after, tmp_path, "s42") == 2
    pair = after.rooms["!pair"]
    assert pair.encrypted and "!pair" in after.encrypted_rooms
    assert set(pair.users) == {"@bot:hs", "@doc:hs", "@pat:hs"}
    assert set(pair.invited_users) == {"@pat:hs"}
    assert not after.rooms["!plain"].encrypted
    assert not path.exists()  # read once


def test_another_token_or_a_damaged_file_means_full_state(tmp_path: Path) -> None:
    before = client()
    known_rooms(before)
    roomcache.save(before, tmp_path, "s42")
    fresh = client()
    assert roomcache.restore(fresh, tmp_path, "s43") is None
    assert fresh.rooms == {} and not (tmp_path / roomcache.SNAPSHOT_FILE).exists()

    roomcache.save(before, tmp_path, "s42")
    assert roomcache.restore(client(), tmp_path, None) is None  # no stored token at all

    (tmp_path / roomcache.SNAPSHOT_FILE).write_text("{not json")
    assert roomcache.restore(client(), tmp_path, "s42") is None
    (tmp_path / roomcache.SNAPSHOT_FILE).write_text(json.dumps({"version": 99, "token": "s42"}))
    assert roomcache.restore(client(), tmp_path, "s42") is None
    assert roomcache.restore(client(), tmp_path, "s42") is None  # nothing left to read
    damaged = {"version": roomcache.VERSION, "token": "s42", "rooms": {"!r": {"joined": []}}}
    (tmp_path / roomcache.SNAPSHOT_FILE).write_text(json.dumps(damaged))
    partial = client()
    assert roomcache.restore(partial, tmp_path, "s42") is None and partial.rooms == {}
