"""`confidant doctor`'s checks of the room version, the bot's cross-signing, the outbound relay
login and Jitsi, against a real Synapse and a real SMTP server on loopback; and `run` logs
the start-up checks."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.cli import main
from bridge.cli.doctor import ERROR, OK, WARN, Doctor, Finding
from bridge.config import minimal_config
from dev.devhs import DevHomeserver
from tests.adapters.test_mailer import SinkFactory, smtp_sink, tls_pair
from tests.conftest import TestUser

pytestmark = pytest.mark.integration

__all__ = ["smtp_sink"]  # the fixture, used by name


async def findings(cfg: Any, check: str, *args: Any) -> list[Finding]:
    seen: list[Finding] = []
    await getattr(Doctor(cfg, seen.append), check)(*args)
    return seen


def relay_config(port: int, password: str) -> Any:
    return minimal_config(
        outbound_email={
            "enabled": True,
            "host": "127.0.0.1",
            "port": port,
            "security": "starttls",
            "username": "relay-user",
            "password": password,
            "from_address": "care@example.org",
        }
    )


async def test_outbound_relay_login(
    smtp_sink: SinkFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server_tls, _ = tls_pair(tmp_path)
    # The relay's certificate is trusted the way a practice's would be: by the system store.
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "tls.crt"))
    sink = await smtp_sink(tls=server_tls, users={"relay-user": "relay-pass"})

    (good,) = await findings(relay_config(sink.port, "relay-pass"), "outbound_relay")
    assert (good.severity, good.check) == (OK, "outbound relay")
    assert f"127.0.0.1:{sink.port} accepts the login of relay-user" in good.text
    assert sink.messages == []  # nothing sent

    (bad,) = await findings(relay_config(sink.port, "wrong-pass"), "outbound_relay")
    assert bad.severity == ERROR and "refuses the login of relay-user" in bad.text
    assert "outbound_email.password" in bad.line()

    (off,) = await findings(minimal_config(), "outbound_relay")
    assert off.severity == OK and off.text.startswith("off")


async def test_jitsi_settings() -> None:
    (off,) = await findings(minimal_config(), "jitsi")
    assert off.severity == OK and "!video is not offered" in off.text
    (gone,) = await findings(minimal_config(jitsi={"domain": "meet.invalid"}), "jitsi")
    assert gone.severity == WARN and "https://meet.invalid/ does not answer" in gone.text
    assert "open meetings" in gone.text and "jitsi.domain" in gone.line()


def config_file(
    tmp_path: Path, homeserver: DevHomeserver, admin: TestUser, room_version: str | None
) -> Path:
    path = tmp_path / "config.yaml"
    bot = homeserver.user_id(f"bot-{secrets.token_hex(4)}")
    argv = ["init", "-c", str(path), "--homeserver", homeserver.url, "--bot", bot]
    assert main([*argv, "--synapse-admin-token", admin.access_token, "--onboarding"]) == 0
    data = yaml.safe_load(path.read_text())
    data["pairs"] = {"room_version": room_version}
    data["smtp"]["enabled"] = False
    path.write_text(yaml.safe_dump(data))
    return path


def test_pinned_room_version_reaches_the_rooms_and_doctor_reports_it(
    tmp_path: Path,
    homeserver: DevHomeserver,
    make_user: Callable[..., TestUser],
    capsys: pytest.CaptureFixture[str],
) -> None:
    admin = make_user("admin", admin=True)
    therapist, patient = make_user("therapist"), make_user("patient")
    path = config_file(tmp_path, homeserver, admin, "11")
    capsys.readouterr()
    argv = ["pair", "--json", "add", "--patient", patient.user_id]
    assert main([*argv, "--therapist", therapist.user_id, "-c", str(path)]) == 0
    out = capsys.readouterr().out
    room_id = yaml.safe_load(out)["room_id"]
    # Version 11 ids carry the server; the bot (not the creator's unlimited power) holds 100.
    assert room_id.endswith(":localhost")
    status, create = homeserver.request(
        "GET", f"/_synapse/admin/v1/rooms/{room_id}", token=admin.access_token
    )
    assert status == 200 and create["version"] == "11"

    assert main(["doctor", "-c", str(path)]) in (0, 1)
    out = capsys.readouterr().out
    assert "ok    room version: 11 (pairs.room_version; default 12)" in out
    # The CLI made rooms but never ran the bridge: the bot has no device keys yet.
    assert "ok    cross-signing: not yet: `confidant run` publishes it at start" in out


def test_room_version_the_homeserver_does_not_offer(
    tmp_path: Path, homeserver: DevHomeserver, make_user: Callable[..., TestUser]
) -> None:
    admin = make_user("admin", admin=True)
    from bridge.config import load_config

    cfg = load_config(config_file(tmp_path, homeserver, admin, "99"))
    import asyncio

    from bridge.adapters.matrix.rest import MatrixRest

    async def check() -> list[Finding]:
        seen: list[Finding] = []
        async with MatrixRest(homeserver.url, None) as rest:
            await Doctor(cfg, seen.append).room_version(rest)
        return seen

    (found,) = asyncio.run(check())
    assert found.severity == ERROR and "pairs.room_version 99 is not offered" in found.text
    assert "set pairs.room_version to one of 1, 2," in found.line()


def test_run_logs_the_start_up_checks(
    tmp_path: Path,
    homeserver: DevHomeserver,
    make_user: Callable[..., TestUser],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from bridge.cli.run import check_at_start
    from bridge.config import load_config

    admin = make_user("admin", admin=True)
    cfg = load_config(config_file(tmp_path, homeserver, admin, None))
    with caplog.at_level("INFO", logger="bridge.cli.run"):
        check_at_start(cfg)
    lines = [r.getMessage() for r in caplog.records if r.name == "bridge.cli.run"]
    assert any(line.startswith("doctor: ok    homeserver: ") for line in lines)
    assert any(line.startswith("doctor: ok    rate limits: ") for line in lines)
    assert any(
        line.startswith("doctor: ok    room version: the homeserver's default") for line in lines
    )
    # The password is left to the bridge's own login, the port to its listener.
    assert not any("smtp:" in line or "supervisors" in line for line in lines)
