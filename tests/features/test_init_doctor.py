"""`confidant init` and `confidant doctor` against a real Synapse, as a practice meets them:
the bot created (or checked) and exempted with an admin's token, or by hand with the printed
commands; then doctor's lines and exit status."""

from __future__ import annotations

import re
import secrets
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.config import load_config, verify_token
from dev.devhs import DevHomeserver
from tests.conftest import TestUser

pytestmark = pytest.mark.integration


def bot_id(homeserver: DevHomeserver) -> str:
    return homeserver.user_id(f"bot-{secrets.token_hex(4)}")


def init(path: Path, homeserver: DevHomeserver, bot: str, *extra: str) -> int:
    return main(["init", "-c", str(path), "--homeserver", homeserver.url, "--bot", bot, *extra])


def override(homeserver: DevHomeserver, admin: TestUser, user_id: str) -> dict[str, object]:
    status, body = homeserver.request(
        "GET", f"/_synapse/admin/v1/users/{user_id}/override_ratelimit", token=admin.access_token
    )
    assert status == 200, body
    return body


def lines_of(output: str, label: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(label)]


def test_init_with_an_admin_token_creates_and_exempts_the_bot(
    tmp_path: Path,
    homeserver: DevHomeserver,
    make_user: Callable[..., TestUser],
    capsys: pytest.CaptureFixture[str],
) -> None:
    admin = make_user("admin", admin=True)
    bot = bot_id(homeserver)
    path = tmp_path / "config.yaml"
    assert init(path, homeserver, bot, "--synapse-admin-token", admin.access_token) == 0
    out = capsys.readouterr().out
    assert f"bot account {bot}: created" in out
    assert "rate limits: the bot is now exempt" in out
    token = re.search(r"admin token \(shown once; .*\): (\S+)", out).group(1)  # type: ignore[union-attr]

    cfg = load_config(path, env={})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert cfg.bot.user_id == bot and cfg.homeserver.url == homeserver.url
    assert cfg.http.token_ok(token) and token not in path.read_text()
    assert verify_token(token, cfg.http.admin_tokens)
    assert cfg.synapse_admin.access_token is None  # kept only with --onboarding
    assert override(homeserver, admin, bot) == {"messages_per_second": 0, "burst_count": 0}
    # Comments of the example are kept.
    assert "# The bot account Confidant logs in as" in path.read_text()

    assert init(path, homeserver, bot, "--synapse-admin-token", admin.access_token) == 2
    assert "never overwrites" in capsys.readouterr().err

    # Doctor: the bot logs in; without an admin token the exemption cannot be seen.
    assert main(["doctor", "-c", str(path)]) == 1
    out = capsys.readouterr().out
    assert lines_of(out, "ok    homeserver: ")[0].count("Synapse 1.")
    assert lines_of(out, "ok    bot login: ")
    (limits,) = lines_of(out, "WARN  rate limits: ")
    assert "unknown, needs an admin token" in limits and "override_ratelimit" in limits
    assert lines_of(out, "ok    database: ")
    assert out.rstrip().endswith("warnings only")


def test_doctor_with_onboarding_sees_the_exemption_and_token_registration(
    tmp_path: Path,
    homeserver: DevHomeserver,
    make_user: Callable[..., TestUser],
    capsys: pytest.CaptureFixture[str],
) -> None:
    admin = make_user("admin", admin=True)
    bot = bot_id(homeserver)
    path = tmp_path / "config.yaml"
    extra = ("--synapse-admin-token", admin.access_token, "--onboarding")
    assert init(path, homeserver, bot, *extra) == 0
    capsys.readouterr()
    # The test homeserver registers with tokens only, as a practice's must.
    assert main(["doctor", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert lines_of(out, f"ok    rate limits: {bot} is exempt")
    assert lines_of(out, "ok    registration: open with registration tokens only")
    assert out.rstrip().endswith("all well")
    # Stock limits again: doctor says so, with the command that fixes it.
    status, _ = homeserver.request(
        "DELETE", f"/_synapse/admin/v1/users/{bot}/override_ratelimit", token=admin.access_token
    )
    assert status == 200
    assert main(["doctor", "-c", str(path)]) == 2
    (limits,) = lines_of(capsys.readouterr().out, "ERROR rate limits: ")
    assert "stock limits" in limits and "override_ratelimit" in limits


# What Synapse answers an empty POST /register, by its registration settings.
REGISTRATION = [
    ("registration off", 403, "M_FORBIDDEN", {"error": "Registration has been disabled"}, 2),
    ("tokens required", 401, "", {"flows": [{"stages": ["m.login.registration_token",
                                                        "m.login.dummy"]}]}, 0),
    ("open to anyone", 401, "", {"flows": [{"stages": ["m.login.dummy"]}]}, 2),
    ("tokens optional", 401, "", {"flows": [{"stages": ["m.login.registration_token"]},
                                            {"stages": ["m.login.dummy"]}]}, 1),
]  # fmt: skip


@pytest.mark.parametrize(
    ("status", "errcode", "body", "severity"),
    [c[1:] for c in REGISTRATION],
    ids=[c[0] for c in REGISTRATION],
)
def test_registration_verdicts(
    status: int, errcode: str, body: dict[str, object], severity: int
) -> None:
    from bridge.features.onboarding.registration import registration_verdict

    found, check, _text, fix = registration_verdict(status, errcode, body)
    assert (found, check) == (severity, "registration")
    if severity == 2:
        assert "registration_requires_token: true" in fix


def test_init_checks_an_existing_account(
    tmp_path: Path,
    homeserver: DevHomeserver,
    make_user: Callable[..., TestUser],
    capsys: pytest.CaptureFixture[str],
) -> None:
    admin = make_user("admin", admin=True)
    existing = make_user("bot")
    path = tmp_path / "config.yaml"
    token = ("--synapse-admin-token", admin.access_token)
    assert init(path, homeserver, existing.user_id, *token) == 2
    assert "exists; give its password with --bot-password" in capsys.readouterr().err
    assert init(path, homeserver, existing.user_id, *token, "--bot-password", "wrong") == 2
    assert "does not log in" in capsys.readouterr().err
    assert not path.exists()
    assert (
        init(path, homeserver, existing.user_id, *token, "--bot-password", existing.password) == 0
    )
    assert f"bot account {existing.user_id}: exists, password checked" in capsys.readouterr().out
    assert override(homeserver, admin, existing.user_id)["messages_per_second"] == 0


def test_without_an_admin_token_init_prints_commands_that_work(
    tmp_path: Path,
    homeserver: DevHomeserver,
    make_user: Callable[..., TestUser],
    capsys: pytest.CaptureFixture[str],
) -> None:
    bot = bot_id(homeserver)
    path = tmp_path / "config.yaml"
    assert init(path, homeserver, bot) == 0
    out = capsys.readouterr().out
    commands = [line.strip() for line in out.splitlines() if line.startswith("  curl ")]
    assert len(commands) == 2
    cfg = load_config(path, env={})
    assert cfg.bot.password is not None
    password = cfg.bot.password.get_secret_value()
    assert password not in out  # the commands read it from $BOT_PASSWORD

    admin = make_user("admin", admin=True)
    env = {"ADMIN_TOKEN": admin.access_token, "BOT_PASSWORD": password, "PATH": "/usr/bin:/bin"}
    for command in commands:
        subprocess.run(
            ["bash", "-c", command], env=env, check=True, timeout=30, capture_output=True
        )
    assert override(homeserver, admin, bot) == {"messages_per_second": 0, "burst_count": 0}
    assert homeserver.login(bot.split(":")[0][1:], password)


def test_doctor_names_what_is_wrong(
    tmp_path: Path, homeserver: DevHomeserver, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    assert init(path, homeserver, bot_id(homeserver)) == 0  # the bot account is never made
    text = path.read_text().replace("supervisors: []", 'supervisors: ["@nobody-here:localhost"]')
    path.write_text(text.replace("escalate_after: null", 'escalate_after: "4h"'))
    capsys.readouterr()
    assert main(["doctor", "-c", str(path)]) == 2
    out = capsys.readouterr().out
    assert lines_of(out, "ERROR bot login: ")[0].endswith(
        "fix: create the account (`confidant init` prints how) or fix bot.password"
    )
    assert lines_of(out, "ERROR supervisor: @nobody-here:localhost has no account")

    down = tmp_path / "down.yaml"
    text = path.read_text().replace(homeserver.url, "http://127.0.0.1:9")
    down.write_text(text.replace("  url: null", '  url: "postgresql://c@127.0.0.1:9/c"'))
    assert main(["doctor", "-c", str(down)]) == 2
    out = capsys.readouterr().out
    assert lines_of(out, "ERROR homeserver: http://127.0.0.1:9 does not answer")
    assert lines_of(out, "ERROR database: PostgreSQL cannot be opened")
