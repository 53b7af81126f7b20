"""The bot's intake of events that wait for their key: held, retried, handed over, released.

No homeserver: the nio client's decryption is replaced, the handler is an in-memory fake.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from nio import MegolmEvent, RoomMessageText, SyncResponse

from bridge.adapters.matrix import roomcache
from bridge.adapters.matrix.client import BUSY_SYNC_EVENTS, BUSY_SYNC_PAUSE_S, MatrixBot
from bridge.adapters.matrix.events import HeldEvent, IncomingEvent, megolm_event, megolm_source
from bridge.adapters.matrix.session import BotCredentials

ROOM = "!pair:practice"
PATIENT = "@pat:practice"
GRACE = 30.0


def encrypted(event_id: str, ts: int = 1_700_000_000_000) -> MegolmEvent:
    ev = MegolmEvent.from_dict(
        {
            "type": "m.room.encrypted",
            "event_id": event_id,
            "sender": PATIENT,
            "origin_server_ts": ts,
            "unsigned": {"age": 12, "m.relations": {"m.thread": {"count": 2}}},
            "content": {
                "algorithm": "m.megolm.v1.aes-sha2",
                "ciphertext": "AwgAEnAc",
                "device_id": "PATDEVICE",
                "sender_key": "curve",
                "session_id": "session",
                "m.relates_to": {"rel_type": "m.thread", "event_id": "$root"},
            },
        }
    )
    assert isinstance(ev, MegolmEvent)
    return ev


class FakeHandler:
    """Keeps held rows like the store does and records what the bot hands over, in order."""

    def __init__(self) -> None:
        self.rows: dict[str, HeldEvent] = {}
        self.processed: set[str] = set()
        self.log: list[tuple[str, str]] = []
        self.events: list[IncomingEvent] = []

    async def is_processed(self, event_id: str) -> bool:
        return event_id in self.processed

    async def on_event(self, event: IncomingEvent) -> None:
        self.events.append(event)
        self.processed.add(event.event_id)
        self.log.append(("committed", event.event_id))

    async def hold_pending(self, event: HeldEvent) -> int:
        kept = self.rows.setdefault(event.event_id, event)
        return kept.first_seen_ms

    async def held_pending(self) -> list[HeldEvent]:
        return list(self.rows.values())

    async def release_pending(self, event_id: str) -> None:
        self.rows.pop(event_id, None)
        self.log.append(("released", event_id))

    async def on_invite(self, room_id: str, inviter: str | None) -> None: ...
    async def load_kv(self, key: str) -> str | None:
        return None

    async def save_kv(self, key: str, value: str) -> None: ...
    async def trusted_users(self, room_id: str) -> set[str] | None:
        return None

    async def on_receipt(self, room_id: str, user_id: str, event_id: str, ts: int) -> None: ...


@pytest.fixture
async def bot(tmp_path: Path) -> Any:
    handler = FakeHandler()
    creds = BotCredentials("@bot:practice", "BOTDEVICE", "token")
    bot = MatrixBot(
        homeserver_url="http://127.0.0.1:9",
        creds=creds,
        store_dir=tmp_path / "crypto",
        pickle_key="test-pickle-key",
        handler=handler,
        undecryptable_grace=GRACE,
    )
    keys: dict[str, Any] = {"known": set()}

    def decrypt(ev: MegolmEvent) -> Any:
        if ev.event_id not in keys["known"]:
            raise RuntimeError("no session")
        return RoomMessageText.from_dict(
            {
                "type": "m.room.message",
                "event_id": ev.event_id,
                "sender": ev.sender,
                "origin_server_ts": ev.server_timestamp,
                "content": {"msgtype": "m.text", "body": "hello"},
            }
        )

    async def request_room_key(ev: MegolmEvent) -> None:
        return None

    bot.client.decrypt_event = decrypt  # type: ignore[method-assign]
    bot.client.request_room_key = request_room_key  # type: ignore[method-assign]
    bot.keys = keys
    yield bot
    await bot.client.close()


def now_ms() -> int:
    return int(time.time() * 1000)


def test_the_stored_source_is_ciphertext_and_routing_only() -> None:
    source = megolm_source(ROOM, encrypted("$a"))
    assert source == {
        "type": "m.room.encrypted",
        "room_id": ROOM,
        "event_id": "$a",
        "sender": PATIENT,
        "origin_server_ts": 1_700_000_000_000,
        "content": {
            "algorithm": "m.megolm.v1.aes-sha2",
            "ciphertext": "AwgAEnAc",
            "device_id": "PATDEVICE",
            "sender_key": "curve",
            "session_id": "session",
            "m.relates_to": {"rel_type": "m.thread", "event_id": "$root"},
        },
    }
    held = HeldEvent(ROOM, "$a", PATIENT, 1_700_000_000_000, source, 0)
    rebuilt = megolm_event(held)
    assert isinstance(rebuilt, MegolmEvent)
    assert (rebuilt.event_id, rebuilt.room_id, rebuilt.session_id) == ("$a", ROOM, "session")


def test_a_source_that_no_longer_parses_gives_no_event() -> None:
    held = HeldEvent(ROOM, "$a", PATIENT, 0, {"type": "m.room.encrypted"}, 0)
    assert megolm_event(held) is None


async def test_an_event_is_held_before_the_sync_moves_on(bot: Any) -> None:
    await bot._dispatch(ROOM, encrypted("$a"))
    assert set(bot.handler.rows) == {"$a"}
    assert bot.stats.pending_undecryptable == 1
    await bot._dispatch(ROOM, encrypted("$a"))  # the same event in a replayed sync
    assert len(bot.handler.rows) == 1


async def test_nothing_expires_before_this_process_completed_a_sync(bot: Any) -> None:
    old = now_ms() - int(GRACE * 1000) - 60_000
    bot.handler.rows["$a"] = HeldEvent(
        ROOM, "$a", PATIENT, 1, megolm_source(ROOM, encrypted("$a")), old
    )
    await bot._load_pending()
    await bot._retry_pending()  # inside the first sync: its key may still be on its way
    assert bot.handler.events == []
    bot.stats.synced_batches = 1
    await bot._retry_pending()
    (event,) = bot.handler.events
    assert (event.event_id, event.decrypted, event.sender) == ("$a", False, PATIENT)
    assert bot.handler.log == [("committed", "$a"), ("released", "$a")]
    assert bot.stats.pending_undecryptable == 0 and bot.stats.decryption_failures == 1


async def test_the_grace_counts_from_the_first_sighting_by_any_instance(bot: Any) -> None:
    bot.stats.synced_batches = 1
    # Another instance saw it first, most of the grace ago.
    first = now_ms() - int(GRACE * 1000) + 5_000
    bot.handler.rows["$a"] = HeldEvent(ROOM, "$a", PATIENT, 1, {}, first)
    await bot._dispatch(ROOM, encrypted("$a"))
    assert bot._pending["$a"].held.first_seen_ms == first
    await bot._retry_pending()
    assert bot.handler.events == []
    bot._pending["$a"].held = HeldEvent(ROOM, "$a", PATIENT, 1, {}, first - 6_000)
    await bot._retry_pending()
    assert [e.decrypted for e in bot.handler.events] == [False]


async def test_a_key_that_arrives_hands_the_event_over_decrypted(bot: Any) -> None:
    bot.stats.synced_batches = 1
    await bot._dispatch(ROOM, encrypted("$a"))
    await bot._retry_pending()
    assert bot.handler.events == [] and "$a" in bot.handler.rows
    bot.keys["known"].add("$a")
    await bot._retry_pending()
    (event,) = bot.handler.events
    assert event.decrypted and event.content["body"] == "hello"
    assert bot.handler.log == [("committed", "$a"), ("released", "$a")]
    assert bot.handler.rows == {}


async def test_a_failed_handover_keeps_the_row(bot: Any) -> None:
    bot.stats.synced_batches = 1
    await bot._dispatch(ROOM, encrypted("$a"))
    bot.keys["known"].add("$a")

    async def failing(event: IncomingEvent) -> None:
        raise RuntimeError("database is locked")

    bot.handler.on_event = failing
    with pytest.raises(RuntimeError):
        await bot._retry_pending()
    assert "$a" in bot.handler.rows and "$a" in bot._pending


async def test_rows_committed_before_a_stop_are_released_at_start(bot: Any) -> None:
    source = megolm_source(ROOM, encrypted("$done"))
    bot.handler.rows["$done"] = HeldEvent(ROOM, "$done", PATIENT, 1, source, now_ms())
    bot.handler.rows["$wait"] = HeldEvent(ROOM, "$wait", PATIENT, 1, source, now_ms())
    bot.handler.processed.add("$done")
    await bot._load_pending()
    assert set(bot._pending) == {"$wait"}
    assert set(bot.handler.rows) == {"$wait"}
    assert bot.stats.pending_undecryptable == 1


def sync_with(texts: int, next_batch: str) -> SyncResponse:
    timeline = [
        {
            "type": "m.room.message",
            "event_id": f"${next_batch}.{n}",
            "sender": PATIENT,
            "origin_server_ts": 1_000 + n,
            "content": {"msgtype": "m.text", "body": "x"},
        }
        for n in range(texts)
    ]
    resp = SyncResponse.from_dict(
        {
            "next_batch": next_batch,
            "rooms": {"join": {ROOM: {"timeline": {"events": timeline, "limited": False}}}},
        }
    )
    assert isinstance(resp, SyncResponse)
    return resp


@pytest.mark.parametrize(("texts", "pauses"), [(BUSY_SYNC_EVENTS, 1), (BUSY_SYNC_EVENTS - 1, 0)])
async def test_a_busy_sync_waits_a_moment_before_the_next(
    bot: Any, monkeypatch: pytest.MonkeyPatch, texts: int, pauses: int
) -> None:
    replies = iter([sync_with(1, "s1"), sync_with(texts, "s2")])

    async def sync(**_: Any) -> SyncResponse:
        return next(replies)

    async def nothing() -> None:
        return None

    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(bot.client, "sync", sync)
    monkeypatch.setattr(bot, "_housekeeping", nothing)
    monkeypatch.setattr(asyncio, "sleep", sleep)
    await bot._sync_once()  # the first sync never waits: it is the catch-up
    await bot._sync_once()
    assert len(bot.handler.events) == 1 + texts  # every event handed over first
    assert slept == [BUSY_SYNC_PAUSE_S] * pauses
    assert bot.stats.paused_syncs == pauses


def limited_sync(first_type: str, next_batch: str) -> SyncResponse:
    first: dict[str, Any] = {
        "type": first_type,
        "event_id": f"${next_batch}.first",
        "sender": PATIENT,
        "origin_server_ts": 1_000,
        "content": (
            {"room_version": "12"} if first_type == "m.room.create" else {"msgtype": "m.text"}
        ),
    }
    if first_type == "m.room.create":
        first["state_key"] = ""
    resp = SyncResponse.from_dict(
        {
            "next_batch": next_batch,
            "rooms": {
                "join": {
                    ROOM: {"timeline": {"events": [first], "limited": True, "prev_batch": "p"}}
                }
            },
        }
    )
    assert isinstance(resp, SyncResponse)
    return resp


@pytest.mark.parametrize(
    ("first_type", "backfilled"), [("m.room.create", False), ("m.room.message", True)]
)
async def test_a_limited_timeline_is_back_filled_unless_it_begins_with_the_room(
    bot: Any, monkeypatch: pytest.MonkeyPatch, first_type: str, backfilled: bool
) -> None:
    async def sync(**_: Any) -> SyncResponse:
        return limited_sync(first_type, "s9")

    async def stored_token(key: str) -> str:
        return "s8"  # not the first sync: a gap since the last one is possible

    asked: list[str | None] = []

    async def backfill(room_id: str, prev_batch: str | None) -> list[Any]:
        asked.append(prev_batch)
        return []

    async def nothing() -> None:
        return None

    monkeypatch.setattr(bot.client, "sync", sync)
    monkeypatch.setattr(bot.handler, "load_kv", stored_token)
    monkeypatch.setattr(bot, "_backfill", backfill)
    monkeypatch.setattr(bot, "_housekeeping", nothing)
    await bot._sync_once()
    assert asked == (["p"] if backfilled else [])


async def test_a_stop_before_the_first_sync_keeps_no_rooms(bot: Any, tmp_path: Path) -> None:
    # Rooms known from no completed sync would leave quiet rooms unknown after a resume.
    bot._saved_token = "s1"
    await bot.stop()
    assert not (tmp_path / "crypto" / roomcache.SNAPSHOT_FILE).exists()


async def test_a_resumed_start_syncs_incrementally(
    bot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[Any] = []

    async def sync(**kwargs: Any) -> SyncResponse:
        asked.append(kwargs.get("full_state"))
        return sync_with(1, "s2")

    async def nothing() -> None:
        return None

    monkeypatch.setattr(bot.client, "sync", sync)
    monkeypatch.setattr(bot, "_housekeeping", nothing)
    bot._resumed = True
    await bot._sync_once()
    bot._resumed = False
    bot.first_sync_done.clear()
    await bot._sync_once()
    assert asked == [None, True]  # resumed: incremental; otherwise the first asks full state
