"""The bridge started while its homeserver is down: SMTP and HTTP work at once, the bot
comes up when the homeserver does, and the mail taken meanwhile reaches the pair room.

The homeserver sits behind a reverse proxy that first fails every request (502 pages, or
connections closed without an answer) and then forwards to the real Synapse again, as
during a homeserver restart behind nginx.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.adapters.matrix.session import credentials_path, device_id_path, load_credentials
from bridge.app import App
from tests.features.test_email_bridge import (
    SMTP,
    free_port,
    load_config_dict,
    message,
    new_pair,
    post_with,
    posts_with,
    send_mail,
)
from tests.features.test_pair_rooms import wait_until
from tests.support.bridge_app import bridge_config_dict, start_app
from tests.support.faultproxy import FaultProxy

pytestmark = pytest.mark.integration

BRING_UP_LOGGER = "bridge.adapters.matrix.bringup"


@pytest.fixture
async def proxy(homeserver) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(homeserver.url) as running:
        yield running


async def paired_data_dir(homeserver, make_user, make_nio_user, tmp_path: Path):
    """A pair made by a bridge talking to the homeserver directly, which then stopped.

    Returns the config overrides (SMTP on a fixed port), the bot, the patient, the pair and
    its e-mail address.
    """
    bot = make_user("bot")
    overrides = bridge_config_dict(
        homeserver,
        bot.user_id,
        bot.password,
        tmp_path / "data",
        smtp={**SMTP, "port": free_port()},
    )
    app = await start_app(load_config_dict(overrides, tmp_path))
    try:
        patient, record, address = await new_pair(app, make_nio_user)
    finally:
        await app.stop()
    return overrides, bot, patient, record, address


def behind(proxy: FaultProxy, overrides: dict[str, Any], http_port: int) -> dict[str, Any]:
    """The same bridge with its homeserver behind the proxy and the admin HTTP API on."""
    return {
        **overrides,
        "homeserver": {**overrides["homeserver"], "url": proxy.url},
        "http": {"enabled": True, "port": http_port},
    }


async def health(http_port: int) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{http_port}/health") as resp,
    ):
        return resp.status, await resp.json()


async def accepted_mail(app: App) -> list[str]:
    assert app.parts is not None
    rows = await app.parts.db.fetch("SELECT message_id FROM inbound_emails ORDER BY message_id")
    return [row["message_id"] for row in rows]


async def assert_started_without_matrix(app: App, http_port: int, address: str) -> None:
    """SMTP takes and commits mail, /health says degraded, nothing is ready on Matrix."""
    assert app.matrix is not None and not app.matrix.ready.is_set()
    port = app.cfg.smtp.port
    await send_mail(port, address, message(address, message_id="<down1@x>", body="canary-down"))
    assert await accepted_mail(app) == ["<down1@x>"]
    status, body = await health(http_port)
    assert status == 503, body
    assert body["status"] == "degraded"
    assert body["checks"]["homeserver"]["ok"] is False
    assert body["checks"]["matrix"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["smtp"]["ok"] is True


async def wait_healthy(http_port: int) -> dict[str, Any]:
    async def healthy() -> dict[str, Any] | None:
        status, body = await health(http_port)
        return body if status == 200 else None

    return await wait_until(healthy, timeout=60, what="/health to say ok")


def bring_up_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == BRING_UP_LOGGER and r.levelno == logging.WARNING]


def assert_no_secrets(caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    for record in caplog.records:
        line = f"{record.getMessage()} {vars(record)}"
        for secret in secrets:
            assert secret not in line, record.getMessage()


async def test_restart_while_the_homeserver_answers_502(
    homeserver, make_user, make_nio_user, tmp_path: Path, proxy: FaultProxy, caplog
):
    overrides, bot, patient, record, address = await paired_data_dir(
        homeserver, make_user, make_nio_user, tmp_path
    )
    stored = load_credentials(Path(overrides["data_dir"]))
    assert stored is not None
    http_port = free_port()
    proxy.down(502)
    caplog.set_level(logging.INFO)
    app = await start_app(load_config_dict(behind(proxy, overrides, http_port), tmp_path))
    try:
        await assert_started_without_matrix(app, http_port, address)
        warnings = bring_up_warnings(caplog)
        assert warnings, "a failed attempt must be logged"
        # Restored device keys need no upload; the cross-signing check needs the homeserver.
        assert {(w.step, w.error) for w in warnings} == {("cross-signing", "HomeserverUnavailable")}

        proxy.up()
        assert app.matrix is not None
        await asyncio.wait_for(app.matrix.ready.wait(), 90)
        assert app.cross_signing  # checked (and done if needed) on the homeserver
        await patient.wait_for(record.room_id, post_with("canary-down"), timeout=60)
        # Mail after the recovery goes the usual way, and nothing was posted twice.
        await send_mail(
            app.cfg.smtp.port, address, message(address, message_id="<up1@x>", body="canary-up")
        )
        await patient.wait_for(record.room_id, post_with("canary-up"), timeout=60)
        assert len(posts_with(patient, record.room_id, "canary-down")) == 1
        body = await wait_healthy(http_port)
        assert body["checks"]["matrix"] == {"ok": True, "detail": "ready"}
        # The stored device was restored, not replaced by a new login.
        assert app.parts is not None and app.parts.creds == stored
    finally:
        await app.stop()
    assert_no_secrets(caplog, bot.password, stored.access_token)


async def test_first_start_while_the_homeserver_closes_connections(
    homeserver, make_user, make_nio_user, tmp_path: Path, proxy: FaultProxy, caplog
):
    """No saved session (a new machine for the same database): the bot logs in later."""
    overrides, bot, patient, record, address = await paired_data_dir(
        homeserver, make_user, make_nio_user, tmp_path
    )
    data_dir = Path(overrides["data_dir"])
    old_device = load_credentials(data_dir)
    assert old_device is not None
    credentials_path(data_dir).unlink()
    shutil.rmtree(data_dir / "crypto")
    http_port = free_port()
    proxy.down(None)
    caplog.set_level(logging.INFO)
    app = await start_app(load_config_dict(behind(proxy, overrides, http_port), tmp_path))
    try:
        assert app.bot is not None and app.parts is not None
        reserved = device_id_path(data_dir).read_text()
        assert app.bot.device_id == reserved != old_device.device_id
        assert not app.parts.creds.logged_in
        await assert_started_without_matrix(app, http_port, address)
        assert {(w.step, w.error) for w in bring_up_warnings(caplog)} == {
            ("login", "HomeserverUnavailable")
        }

        proxy.up()
        await asyncio.wait_for(app.matrix.ready.wait(), 90)
        # Logged in onto the device the bridge was built with, and that device is signed.
        saved = load_credentials(data_dir)
        assert saved is not None and saved.device_id == reserved
        assert app.parts.creds == saved
        assert not device_id_path(data_dir).exists()
        assert "device signed" in app.cross_signing
        await patient.wait_for(record.room_id, post_with("canary-down"), timeout=60)
        await wait_healthy(http_port)
    finally:
        await app.stop()
    assert_no_secrets(caplog, bot.password, saved.access_token)
