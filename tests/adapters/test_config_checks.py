"""check-config refuses what `run` would refuse, checks only the sections that are on, and
warns about policies; hash-token refuses short tokens and makes new ones."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.cli import main
from bridge.config import ConfigError, load_config, minimal_config_dict, verify_token

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config.example.yaml"


def write(tmp_path: Path, tree: dict[str, Any]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return path


def problems(tmp_path: Path, **overrides: Any) -> list[str]:
    try:
        load_config(write(tmp_path, minimal_config_dict(**overrides)), env={})
    except ConfigError as err:
        return [line.split(": ", 1)[1] for line in err.lines()]
    return []


SMTP_ON = {"enabled": True, "inbound_domain": "mail.localhost"}

# Each case: id, overrides, the key path refused, words of the message.
REFUSED: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "SMTP AUTH without STARTTLS",
        {"smtp": {**SMTP_ON, "auth_users": {"relay": "a-relay-password"}}},
        "smtp.auth_users",
        "SMTP AUTH needs STARTTLS: set tls_cert and tls_key, or auth_users: {}",
    ),
    ("empty bot password", {"bot": {"password": ""}}, "bot.password", "is empty"),
    (
        "blank bot access token",
        {"bot": {"password": None, "access_token": "  "}},
        "bot.access_token",
        "is empty",
    ),
    (
        "no admin token while the API is on",
        {"http": {"admin_tokens": []}},
        "http.admin_tokens",
        "confidant hash-token --generate",
    ),
    (
        "placeholder in a section that is on",
        {"outbound_email": {"enabled": True, "host": "relay.localhost",
                            "from_address": "care@localhost", "username": "u",
                            "password": "CHANGE-ME-relay"}},
        "outbound_email.password",
        "placeholder",
    ),
    (
        "misspelt switch of a section that is off",
        {"smtp": {"enabeld": True}},
        "smtp.enabeld",
        "did you mean 'enabled'?",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "key", "words"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_refused(tmp_path: Path, overrides: dict[str, Any], key: str, words: str) -> None:
    found = problems(tmp_path, **overrides)
    assert any(line.startswith(f"{key}: ") and words in line for line in found), found


def test_refused_cases_make_check_config_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for _, overrides, key, _ in REFUSED:
        path = write(tmp_path, minimal_config_dict(**overrides))
        assert main(["check-config", "-c", str(path)]) == 2
        assert f": {key}: " in capsys.readouterr().err


def test_smtp_auth_with_tls_is_accepted(tmp_path: Path) -> None:
    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    smtp = {**SMTP_ON, "auth_users": {"relay": "pw"}, "tls_cert": "cert.pem", "tls_key": "key.pem"}
    assert problems(tmp_path, smtp=smtp) == []


def test_sections_that_are_off_are_not_checked(tmp_path: Path) -> None:
    off = {
        "smtp": {"enabled": False, "port": "abc", "auth_users": {"relay": "CHANGE-ME-x"}},
        "outbound_email": {"username": "u", "password": "CHANGE-ME-y"},
        "http": {"enabled": False, "admin_tokens": ["CHANGE-ME-z"]},
        "jitsi": {"domain": None, "jwt": {"app_id": "a", "secret": "CHANGE-ME-secret-jitsi"}},
        "synapse_admin": {"access_token": None},
    }
    assert problems(tmp_path, **off) == []
    cfg = load_config(tmp_path / "config.yaml", env={})
    # What was off stays off, with nothing of what it held.
    assert not cfg.smtp.enabled and not cfg.smtp.auth_users
    assert not cfg.http.enabled and cfg.http.admin_tokens == ()
    assert cfg.jitsi.jwt is None


def test_the_example_with_its_secrets_filled_passes_although_smtp_keeps_a_relay(
    tmp_path: Path,
) -> None:
    """The example keeps `smtp.auth_users.relay` (a placeholder) with SMTP off: not an error."""
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert data["smtp"]["auth_users"]["relay"].startswith("CHANGE-ME")
    lines = problems(tmp_path, **data)
    assert lines and not any(line.startswith("smtp.") for line in lines), lines
    # Switching SMTP on brings both its placeholder and the AUTH-without-TLS refusal.
    data["smtp"]["enabled"] = True
    lines = problems(tmp_path, **data)
    assert any(line.startswith("smtp.auth_users.relay: is the placeholder") for line in lines)


def test_postgres_scheme_is_accepted_in_one_normal_form(tmp_path: Path) -> None:
    write(tmp_path, minimal_config_dict(database={"url": "postgres://c:pw@db/confidant"}))
    cfg = load_config(tmp_path / "config.yaml", env={})
    assert cfg.database_url == "postgresql://c:pw@db/confidant"
    assert cfg.sqlite_path is None
    assert problems(tmp_path, database={"url": "postgres:///nohost"}) == [
        "database.url: a PostgreSQL URL looks like postgresql://user@host/dbname"
    ]


def test_unused_and_unknown_policies_are_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bridge.store import open_database, pairs

    tree = minimal_config_dict(data_dir=str(tmp_path / "data"), policies={
        "default": {}, "urgent": {"window": "2h"}, "spare": {"window": "1d"}})  # fmt: skip
    path = write(tmp_path, tree)
    assert main(["check-config", "-c", str(path)]) == 0
    captured = capsys.readouterr()
    assert "warning: " in captured.err and "policies.spare: no pair or invitation uses it" in (
        captured.err
    )
    assert "2 warning(s)" in captured.out

    async def add_pairs() -> None:
        (tmp_path / "data").mkdir()
        db = await open_database(f"sqlite://{tmp_path}/data/confidant.db")
        await pairs.create(db, patient_id="@p:localhost", therapist_id="@t:localhost",
                           policy="urgent", now=0)  # fmt: skip
        await pairs.create(db, patient_id="@q:localhost", therapist_id="@t:localhost",
                           policy="gone", now=0)  # fmt: skip
        await db.close()

    asyncio.run(add_pairs())
    assert main(["check-config", "-c", str(path)]) == 0
    err = capsys.readouterr().err
    assert "policies.urgent" not in err
    assert "policies.spare: no pair or invitation uses it" in err
    assert "1 pair(s) or invitation(s) use policy 'gone', which is not defined" in err


def test_hash_token_refuses_short_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hash-token", "abc"]) == 2
    assert "needs at least 32" in capsys.readouterr().err
    assert main(["hash-token", "x" * 32]) == 0
    assert capsys.readouterr().out.startswith("sha256:")


def test_hash_token_generates_a_token_and_prints_it_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["hash-token", "--generate"]) == 0
    captured = capsys.readouterr()
    token = captured.err.rsplit(": ", 1)[1].strip()
    assert len(token) >= 32
    assert verify_token(token, [captured.out.strip()])
    assert token not in captured.out
    assert main(["hash-token", "--generate", "y" * 40]) == 2


def test_example_copy_is_refused_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(EXAMPLE, tmp_path / "config.yaml")
    assert main(["check-config", "-c", str(tmp_path / "config.yaml")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "placeholder" in err


def test_check_config_takes_c_and_still_the_deprecated_file_argument(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, minimal_config_dict(data_dir=str(tmp_path / "data")))
    for argv in (
        ["check-config", "-c", str(path)],
        ["check-config", "--config", str(path)],
        ["check-config", str(path)],  # what scripts written before -c do
        ["check-config", str(path), "-c", str(path)],
    ):
        assert main(argv) == 0, argv
        assert capsys.readouterr().out.startswith(f"{path}: OK ("), argv

    other = tmp_path / "other.yaml"
    assert main(["check-config", str(other), "-c", str(path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"check-config: two configurations given ({other} and -c {path}); give one, with -c FILE"
    )
    assert main(["check-config", "-c", str(other)]) == 2
    assert f"{other}: cannot read the file" in capsys.readouterr().err

    # Without either, the default every command reads.
    monkeypatch.setattr("bridge.cli.configcmds.DEFAULT_CONFIG", "config.yaml")
    monkeypatch.chdir(tmp_path)
    assert main(["check-config"]) == 0
    assert capsys.readouterr().out.startswith("config.yaml: OK (")

    with pytest.raises(SystemExit):
        main(["check-config", "--help"])
    usage = " ".join(capsys.readouterr().out.split())
    assert "[-c CONFIG] [FILE]" in usage and "FILE deprecated: use -c FILE" in usage
