"""`confidant pair add` on a practice's first day, as its IT person types it: accounts that do
not exist are refused before any room is made (the patient is offered an invitation), `-c`
goes after any sub-command, and tables have headers."""

from __future__ import annotations

import argparse
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bridge.cli import build_parser, main
from dev.devhs import DevHomeserver
from tests.conftest import TestUser

pytestmark = pytest.mark.integration


def initialised(tmp_path: Path, homeserver: DevHomeserver, admin: TestUser, *extra: str) -> Path:
    """A config written by `confidant init`, with the bot created and exempted."""
    path = tmp_path / "config.yaml"
    bot = homeserver.user_id(f"bot-{secrets.token_hex(4)}")
    argv = ["init", "-c", str(path), "--homeserver", homeserver.url, "--bot", bot]
    assert main([*argv, "--synapse-admin-token", admin.access_token, *extra]) == 0
    return path


def nobody(homeserver: DevHomeserver) -> str:
    return homeserver.user_id(f"nobody-{secrets.token_hex(4)}")


@pytest.mark.parametrize("onboarding", [False, True], ids=["profile lookup", "admin API"])
def test_pair_add_refuses_accounts_that_do_not_exist(
    onboarding: bool,
    tmp_path: Path,
    homeserver: DevHomeserver,
    make_user: Callable[..., TestUser],
    capsys: pytest.CaptureFixture[str],
) -> None:
    admin = make_user("admin", admin=True)
    path = initialised(tmp_path, homeserver, admin, *(["--onboarding"] if onboarding else []))
    therapist, patient = make_user("therapist"), make_user("patient")
    capsys.readouterr()

    missing = nobody(homeserver)
    add = ["pair", "add", "--therapist", therapist.user_id, "-c", str(path)]
    assert main([*add, "--patient", missing, "--patient-email", "p@example.org"]) == 1
    err = capsys.readouterr().err
    assert f"{missing} has no account on the homeserver" in err
    assert (
        f"confidant invite --email p@example.org --therapist {therapist.user_id} -c {path}" in err
    )
    assert "created" not in err.splitlines()

    missing_therapist = nobody(homeserver)
    argv = ["pair", "add", "--therapist", missing_therapist, "--patient", patient.user_id]
    assert main([*argv, "-c", str(path)]) == 1
    assert f"{missing_therapist} has no account" in capsys.readouterr().err

    if onboarding:
        # The admin API also knows a deactivated account (its profile may stay visible).
        gone = make_user("gone")
        status, _ = homeserver.request(
            "POST", f"/_synapse/admin/v1/deactivate/{gone.user_id}", {}, token=admin.access_token
        )
        assert status == 200
        assert main([*add, "--patient", gone.user_id]) == 1
        assert f"{gone.user_id} has no account" in capsys.readouterr().err

    # Nothing was made for the refused pairs.
    assert main(["pair", "list", "-c", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == []

    assert main([*add, "--patient", patient.user_id]) == 0
    assert "created" in capsys.readouterr().err.splitlines()
    assert main(["pair", "list", "-c", str(path)]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["LABEL", "STATUS", "PATIENT", "THERAPIST", "POLICY", "ROOM"]
    assert row.split()[1:5] == ["active", patient.user_id, therapist.user_id, "default"]


def leaf_parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every command a user can type, with the parser that reads its options."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs or not subs[0].required:
        yield path, parser
    for action in subs:
        for name, child in action.choices.items():
            yield from leaf_parsers(child, (*path, name))


#: Commands that read no configuration.
WITHOUT_CONFIG = {("hash-token",)}


def test_every_command_that_reads_the_config_takes_c_after_it() -> None:
    commands = dict(leaf_parsers(build_parser()))
    assert ("pair", "add") in commands and ("invite",) in commands
    assert ("check-config",) in commands
    for path, parser in commands.items():
        if path in WITHOUT_CONFIG:
            continue
        options = {s for a in parser._actions for s in a.option_strings}
        assert "-c" in options, f"confidant {' '.join(path)} does not take -c"
