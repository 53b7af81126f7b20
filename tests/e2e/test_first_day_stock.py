"""A practice's first day on homeservers configured as they come, not as the test suite's:
Synapse's stock rate limits (the bot exempted by `confidant init`, then 50 `pair add` in a
row without one 429), and registration switched off (`confidant invite` refuses before it
makes a code the patient could not use)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.cli import main
from dev.devhs import DevHomeserver

pytestmark = pytest.mark.integration

PAIRS = 50
#: Synapse logs every refused request with this text (and the limit's name).
THROTTLED = "429 - Too Many Requests"


def start(tmp_path_factory: pytest.TempPathFactory, name: str, **options: object) -> DevHomeserver:
    hs = DevHomeserver(tmp_path_factory.mktemp(name), **options)  # type: ignore[arg-type]
    return hs.start()


@pytest.fixture(scope="module")
def stock_homeserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevHomeserver]:
    hs = start(tmp_path_factory, "synapse-stock", stock_rate_limits=True)
    try:
        yield hs
    finally:
        hs.stop()


def log_size(hs: DevHomeserver) -> int:
    return hs.log_path.stat().st_size


def throttled_since(hs: DevHomeserver, offset: int) -> list[str]:
    """The requests Synapse refused with 429 since `offset` in its log.

    Synapse buffers its log and flushes it every few seconds: a marked request made now
    is in the log once everything before it is.
    """
    marker = secrets.token_hex(8)
    hs.request("GET", f"/_matrix/client/versions?log_marker={marker}")
    deadline = time.monotonic() + 30
    while True:
        with hs.log_path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
        if marker in text:
            return [line for line in text.splitlines() if THROTTLED in line]
        assert time.monotonic() < deadline, "the marked request never reached Synapse's log"
        time.sleep(0.25)


def users(hs: DevHomeserver, prefix: str, count: int) -> list[str]:
    return [
        hs.register_user(f"{prefix}{i}-{secrets.token_hex(3)}", secrets.token_urlsafe(12))[0]
        for i in range(count)
    ]


def init(path: Path, hs: DevHomeserver, admin_token: str) -> None:
    bot = hs.user_id(f"bot-{secrets.token_hex(4)}")
    argv = ["init", "-c", str(path), "--homeserver", hs.url, "--bot", bot]
    assert main([*argv, "--synapse-admin-token", admin_token, "--onboarding"]) == 0


def test_the_limits_are_synapses_own(stock_homeserver: DevHomeserver) -> None:
    """Without an exemption an account is throttled after a handful of rooms."""
    _, token = stock_homeserver.register_user(f"plain-{secrets.token_hex(3)}", "pw-" * 4)
    offset = log_size(stock_homeserver)
    statuses = [
        stock_homeserver.request("POST", "/_matrix/client/v3/createRoom", {}, token=token)[0]
        for _ in range(12)
    ]
    assert 429 in statuses
    assert throttled_since(stock_homeserver, offset)


def test_fifty_pairs_in_a_row_once_init_exempted_the_bot(
    tmp_path: Path, stock_homeserver: DevHomeserver, capsys: pytest.CaptureFixture[str]
) -> None:
    hs = stock_homeserver
    _, admin_token = hs.register_user(f"admin-{secrets.token_hex(3)}", "pw-" * 4, admin=True)
    path = tmp_path / "config.yaml"
    init(path, hs, admin_token)
    assert "rate limits: the bot is now exempt" in capsys.readouterr().out
    assert main(["doctor", "-c", str(path)]) in (0, 1)
    assert "rate limits: @bot-" in capsys.readouterr().out

    therapists, patients = users(hs, "therapist", 5), users(hs, "patient", 10)
    offset = log_size(hs)
    for therapist in therapists:
        for patient in patients:
            argv = ["pair", "add", "--patient", patient, "--therapist", therapist]
            assert main([*argv, "-c", str(path)]) == 0, capsys.readouterr().err[-2000:]
    # The homeserver's own log is the proof: not one request of the 50 was throttled.
    assert throttled_since(hs, offset) == []
    capsys.readouterr()
    assert main(["pair", "list", "-c", str(path)]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert len(rows) == PAIRS and all(" active " in row for row in rows)


@pytest.fixture(scope="module")
def closed_homeserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevHomeserver]:
    hs = start(tmp_path_factory, "synapse-closed", registration="off")
    try:
        yield hs
    finally:
        hs.stop()


def test_invite_refuses_while_registration_is_off(
    tmp_path: Path, closed_homeserver: DevHomeserver, capsys: pytest.CaptureFixture[str]
) -> None:
    hs = closed_homeserver
    _, admin_token = hs.register_user(f"admin-{secrets.token_hex(3)}", "pw-" * 4, admin=True)
    [therapist] = users(hs, "therapist", 1)
    path = tmp_path / "config.yaml"
    init(path, hs, admin_token)
    capsys.readouterr()

    argv = ["invite", "--email", "alice@example.org", "--therapist", therapist, "-c", str(path)]
    assert main(argv) == 1
    err = capsys.readouterr().err.splitlines()
    assert (
        "no invitation made: the homeserver refuses registration (M_FORBIDDEN): patients "
        "could not use their invitation codes; set enable_registration: true and "
        "registration_requires_token: true in homeserver.yaml, then restart Synapse"
    ) in err
    # Nothing was made: no stored invitation, no token on the homeserver.
    assert main(["invite", "list", "-c", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == []
    status, body = hs.request("GET", "/_synapse/admin/v1/registration_tokens", token=admin_token)
    assert status == 200 and body["registration_tokens"] == []
    # doctor says the same, as an error.
    assert main(["doctor", "-c", str(path)]) == 2
    assert "ERROR registration: the homeserver refuses registration" in capsys.readouterr().out
