"""The README's "Set up for a practice" run as written, against the test homeserver: its
`confidant` commands are read from the section itself (so it cannot drift from what works),
the example names replaced by this homeserver's, and each must succeed."""

from __future__ import annotations

import re
import secrets
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.cli import main
from dev.devhs import DevHomeserver
from tests.conftest import TestUser

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"

#: The commands that can run here, in the README's order (`run` waits for Ctrl-C; `invite`
#: needs an outbound relay; both are tested elsewhere).
RUNNABLE = ("init", "check-config", "doctor", "therapist", "pair")


def setup_commands() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Set up for a practice", 1)[1].split("\n## ", 1)[0]
    section = section.split("\n### ", 1)[0]
    # Inline code spans may wrap over a line break in the Markdown source.
    spans = re.findall(r"`(confidant [^`]+)`", section.replace("\n   ", " "))
    return [span for span in spans if span.split()[1] in RUNNABLE]


def test_the_readme_setup_commands_work_as_written(
    tmp_path: Path,
    homeserver: DevHomeserver,
    make_user: Callable[..., TestUser],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    commands = setup_commands()
    assert [c.split()[1] for c in commands] == [
        "init", "check-config", "doctor", "therapist", "pair",
    ]  # fmt: skip
    admin = make_user("admin", admin=True)
    therapist, patient = make_user("therapist"), make_user("patient")
    names = {
        "https://matrix.example.org": homeserver.url,
        "@confidant:example.org": homeserver.user_id(f"confidant-{secrets.token_hex(3)}"),
        "@t:example.org": therapist.user_id,
        "@p:example.org": patient.user_id,
        "TOKEN": admin.access_token,
    }
    monkeypatch.chdir(tmp_path)
    for command in commands:
        argv = shlex.split(command)[1:]
        argv = [names.get(arg, arg) for arg in argv]
        status = main(argv)
        out, err = capsys.readouterr()
        # doctor may warn (the README's config has SMTP on a port this machine may use).
        allowed = (0, 1) if argv[0] == "doctor" else (0,)
        assert status in allowed, f"{command}\n{out}\n{err}"
        if argv[0] == "init":
            assert "rate limits: the bot is now exempt" in out
        if argv[0] == "doctor":
            assert "ERROR" not in out, out
    assert (tmp_path / "config.yaml").exists()
