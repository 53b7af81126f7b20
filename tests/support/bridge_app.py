"""Start the real bridge (App) against the test homeserver, for integration tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from nio import Event, RoomMessageNotice, RoomMessageText

from bridge.app import App
from bridge.config import Config, minimal_config
from bridge.outbox import enqueue_content
from dev.devhs import DevHomeserver


def bridge_config(
    homeserver: DevHomeserver, bot_user_id: str, bot_password: str, data_dir: Path, **overrides: Any
) -> Config:
    return minimal_config(
        **bridge_config_dict(homeserver, bot_user_id, bot_password, data_dir, **overrides)
    )


def bridge_config_dict(
    homeserver: DevHomeserver, bot_user_id: str, bot_password: str, data_dir: Path, **overrides: Any
) -> dict[str, Any]:
    """The overrides for `minimal_config` (also what a YAML file for the CLI needs)."""
    base: dict[str, Any] = {
        "homeserver": {"url": homeserver.url, "server_name": homeserver.server_name},
        "bot": {"user_id": bot_user_id, "password": bot_password},
        "data_dir": str(data_dir),
        # Consent on first contact has its own tests; elsewhere it would only hold clocks.
        "practice": {
            "name": "Harbour Therapy",
            "crisis_line": "+44 800 000 000",
            "ask_consent": False,
        },
        # Tests that need the admin API turn it on and bind a free port themselves.
        "http": {"enabled": False},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


async def queue_notices(app: App, room_id: str, bodies: list[str], txn_prefix: str) -> None:
    """Queue notices in the outbox in one transaction, as a feature would, and kick it."""
    assert app.parts is not None and app.service is not None and app.outbox is not None
    async with app.parts.db.transaction() as tx:
        for n, body in enumerate(bodies):
            await enqueue_content(
                tx,
                app.parts.sealer,
                room_id,
                "m.room.message",
                {"msgtype": "m.notice", "body": body},
                f"{txn_prefix}.{n:04d}",
                "test",
                app.service.clock(),
            )
    app.outbox.kick()


async def start_app(cfg: Config, **options: Any) -> App:
    app = App(cfg, **options)
    await app.start()
    return app


def notice_containing(text: str) -> Callable[[Event], bool]:
    return lambda e: isinstance(e, (RoomMessageNotice, RoomMessageText)) and text in e.body


def text_from(sender: str, body: str) -> Callable[[Event], bool]:
    return lambda e: isinstance(e, RoomMessageText) and e.sender == sender and e.body == body
