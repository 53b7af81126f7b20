"""Whose language a text is written in: the pair room's patient, the desk room's therapist,
an e-mail's recipient; stored per person (migration 011), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from bridge.adapters.render import Renderer
from bridge.core.model import SendMessage
from bridge.outbox import enqueue_message
from bridge.store import languages, pairs, therapists
from bridge.store.base import Database

NOW = datetime(2026, 12, 1, 6, 31, tzinfo=UTC)


class ClearSealer:
    """Keeps content readable, so the test can see what the outbox queued."""

    def seal(self, data: bytes, associated: bytes = b"") -> bytes:
        return data

    def open(self, blob: bytes, associated: bytes = b"") -> bytes:
        return blob


async def test_each_room_is_written_in_its_readers_language(db: Database) -> None:
    async with db.transaction() as tx:
        pair = await pairs.create(
            tx,
            patient_id="@greta:hs",
            therapist_id="@tom:hs",
            now=0,
            room_id="!pair:hs",
            patient_email="Greta@example.org",
            sealer=ClearSealer(),
        )
        await therapists.upsert(tx, "@tom:hs", now=0, email="tom@example.org")
        await therapists.set_desk_room(tx, "@tom:hs", "!desk:hs")
        assert await languages.of_room(tx, "!pair:hs") is None
        await languages.set_language(tx, "@greta:hs", "de", now=1)
        await languages.set_language(tx, "@tom:hs", "en", now=1)
        assert await languages.of_room(tx, "!pair:hs") == "de"
        assert await languages.of_room(tx, "!desk:hs") == "en"
        assert await languages.of_room(tx, "!elsewhere:hs") is None
        assert await languages.of_address(tx, "greta@EXAMPLE.org") == "de"
        assert await languages.of_address(tx, "tom@example.org") == "en"
        await languages.set_language(tx, "@greta:hs", "es", now=2)
        assert await languages.of_user(tx, "@greta:hs") == "es"
        await languages.set_language(tx, "@greta:hs", None, now=3)
        assert await languages.of_user(tx, "@greta:hs") is None
        await languages.set_language(tx, "@greta:hs", "de", now=4)

        renderer = Renderer()
        sealer = ClearSealer()
        for room in ("!pair:hs", "!desk:hs"):
            msg = SendMessage(room, "video_off", txn_id=f"t.{room}", pair_id=pair.pair_id)
            assert await enqueue_message(tx, renderer, sealer, msg, NOW)
        named = SendMessage("!desk:hs", "video_off", txn_id="t.named", language="de")
        assert await enqueue_message(tx, renderer, sealer, named, NOW)
        rows = await tx.fetch("SELECT txn_id, content FROM outbox ORDER BY txn_id")
    bodies = {str(r["txn_id"]): json.loads(bytes(r["content"]))["body"] for r in rows}  # type: ignore[arg-type]
    english = Renderer().text("video_off", {})
    german = Renderer().text("video_off", {}, "de")
    assert bodies == {"t.!desk:hs": english, "t.!pair:hs": german, "t.named": german}


async def test_an_invitations_language_is_the_patients_until_she_picks_one(db: Database) -> None:
    async with db.transaction() as tx:
        await languages.set_invitation_language(tx, "inv1", "es")
        assert await languages.of_invitation(tx, "inv1") == "es"
        assert await languages.of_invitation(tx, "inv2") is None
