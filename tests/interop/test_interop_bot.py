"""Element's own crypto (matrix-js-sdk + Rust crypto) trusts and reads the bot, and the bot
reads it, in both of Element's device isolation modes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.bridge_app import bridge_config, start_app
from tests.support.jsclient import JsClient

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("isolation", ["all", "signed"])
async def test_element_crypto_therapist_and_bot(
    isolation, homeserver, make_user, make_nio_user, tmp_path: Path
):
    bot = make_user("bot")
    app = await start_app(bridge_config(homeserver, bot.user_id, bot.password, tmp_path / "d"))
    js = None
    try:
        therapist_user = make_user("therapist")
        js = await JsClient.start(
            homeserver.url,
            therapist_user.user_id,
            therapist_user.password,
            isolation=isolation,
            auto_join=True,
        )
        patient = await make_nio_user("patient")
        record, _ = await app.parts.pairs.add_pair(
            patient.user_id, therapist_user.user_id, app.service.clock()
        )
        room = record.room_id
        welcome = await js.wait(room, sender=bot.user_id, contains="Welcome", timeout=60)
        assert welcome["decrypted"], welcome
        # No warning about the bot's device: it is cross-signed by its owner.
        assert welcome["shield"] is None or welcome["shield"]["colour"] == "NONE", welcome

        event_id = await js.send(room, "Hello from Element's crypto")

        async def bot_read_it() -> list[str]:
            rows = await app.parts.db.fetch(
                "SELECT action FROM audit_entries WHERE event_id = ? AND action LIKE 'room.%'",
                event_id,
            )
            return [r["action"] for r in rows]

        for _ in range(150):
            actions = await bot_read_it()
            if actions:
                break
            await asyncio.sleep(0.2)
        assert actions == ["room.text"], actions  # decrypted by the bot, audited once
    finally:
        if js is not None:
            await js.stop()
        await app.stop()
