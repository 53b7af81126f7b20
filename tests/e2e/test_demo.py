"""`confidant demo` end to end, as a user runs it: its own Synapse, logins that work,
state reused on a second run, and nothing left running after Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import re
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nio import RoomMessageNotice

from bridge.config import load_config
from dev.demo import READY
from tests.support.nio_user import NioUser

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration

# The first run on a fresh machine installs Synapse.
RUN_TIMEOUT_S = 240.0

_URL = re.compile(r"^Homeserver URL: (http://127\.0\.0\.1:\d+)", re.M)
_LOGIN = re.compile(r"^\s+(therapist|patient)\s+user (@\S+)\s+password (\S+)$", re.M)
_ROOM = re.compile(r"^Pair room: (\S+)\s+\((created now|already there)\)$", re.M)


@dataclass(frozen=True)
class Printed:
    """What the demo told the user."""

    url: str
    logins: dict[str, tuple[str, str]]
    room_id: str
    created: bool


def parse(stdout: str) -> Printed:
    url, room = _URL.search(stdout), _ROOM.search(stdout)
    assert url and room, stdout
    logins = {who: (user_id, password) for who, user_id, password in _LOGIN.findall(stdout)}
    return Printed(url.group(1), logins, room.group(1), room.group(2) == "created now")


def demo_command(demo_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dev.demo", "--dir", str(demo_dir), *extra]


def demo_env() -> dict[str, str]:
    # The demo lives in the source tree (dev/), not in the installed package.
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}


def call(
    base: str, method: str, path: str, body: dict[str, Any] | None = None, token: str = ""
) -> tuple[int, dict[str, Any]]:
    """One client-server API call with the standard library; (status, JSON body)."""
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def answers(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/_matrix/client/versions", timeout=5):
            return True
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def synapse_pids(data_dir: Path) -> list[int]:
    """Processes running Synapse on this data directory (Linux /proc)."""
    config = str(data_dir / "homeserver.yaml").encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if b"synapse.app.homeserver" in argv and config in argv:
                    found.append(int(entry.name))
    return found


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One demo directory for the module: later runs find the earlier runs' state."""
    path = tmp_path_factory.mktemp("demo") / "demo"
    yield path
    # Should a test fail with the demo's Synapse left behind, it must not outlive the suite.
    for pid in synapse_pids(path / "synapse"):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def test_setup_only_prints_logins_and_a_second_run_reuses_them(demo_dir: Path) -> None:
    first = subprocess.run(
        demo_command(demo_dir, "--setup-only"),
        capture_output=True,
        text=True,
        env=demo_env(),
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    printed = parse(first.stdout)
    assert printed.created

    secrets_file = demo_dir / "demo-secrets.json"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((demo_dir / "config.yaml").stat().st_mode) == 0o600
    passwords = json.loads(secrets_file.read_text())["passwords"]
    assert printed.logins == {
        "therapist": ("@therapist:localhost", passwords["therapist"]),
        "patient": ("@patient:localhost", passwords["patient"]),
    }
    assert len(set(passwords.values())) == 3
    # Passwords are for the person at the terminal, never for the log.
    for password in passwords.values():
        assert password not in first.stderr

    cfg = load_config(demo_dir / "config.yaml")
    assert cfg.homeserver.url == printed.url
    assert cfg.practice.name == "Demo Practice"
    assert cfg.practice.crisis_line
    assert cfg.data_dir == demo_dir / "data"
    assert cfg.sqlite_path == demo_dir / "data" / "confidant.db"
    assert f"confidant pair -c {demo_dir / 'config.yaml'} list" in first.stdout
    assert not answers(printed.url), "Synapse still answers after --setup-only"

    second = subprocess.run(
        demo_command(demo_dir, "--setup-only"),
        capture_output=True,
        text=True,
        env=demo_env(),
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    again = parse(second.stdout)
    assert not again.created
    assert again.logins == printed.logins
    assert again.room_id == printed.room_id
    # The same keys, so the bridge's sealed state and crypto store stay readable.
    cfg_again = load_config(demo_dir / "config.yaml")
    assert cfg_again.bot.pickle_key == cfg.bot.pickle_key
    assert cfg_again.audit.keys == cfg.audit.keys
    assert not answers(again.url)


def _read_lines(stream: Any, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


async def _patient_reads_welcome(
    url: str, user_id: str, password: str, room_id: str, store: Path
) -> str:
    patient = await NioUser.create(url, user_id, password, store, auto_join=True)
    try:
        event = await patient.wait_for(
            room_id,
            lambda e: isinstance(e, RoomMessageNotice) and e.sender == "@confidant:localhost",
            timeout=60,
        )
        assert isinstance(event, RoomMessageNotice)
        return str(event.body)
    finally:
        await patient.close()


def test_running_demo_lets_the_patient_in_and_stops_cleanly_on_ctrl_c(
    demo_dir: Path, tmp_path: Path
) -> None:
    stderr_path = tmp_path / "demo.stderr"
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(
            demo_command(demo_dir),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=demo_env(),
        )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
    try:
        output = ""
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while READY not in output:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no ready line in time:\n{output}\n{stderr_path.read_text()[-3000:]}")
            if line is None:
                pytest.fail(f"demo ended early:\n{output}\n{stderr_path.read_text()[-3000:]}")
            output += line
        printed = parse(output)
        [synapse_pid] = synapse_pids(demo_dir / "synapse")

        # The patient logs in with the printed password, as a Matrix client with E2EE
        # would (a new device), joins, and reads the bot's welcome: it waited for her device.
        user_id, password = printed.logins["patient"]
        (tmp_path / "patient").mkdir()
        welcome = asyncio.run(
            _patient_reads_welcome(
                printed.url, user_id, password, printed.room_id, tmp_path / "patient"
            )
        )
        assert "Welcome" in welcome

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, stderr_path.read_text()[-3000:]
        rest = ""
        while (line := lines.get(timeout=10)) is not None:
            rest += line
        assert "Stopped the bridge and Synapse." in rest
        assert not pid_alive(synapse_pid)
        assert synapse_pids(demo_dir / "synapse") == []
        assert not answers(printed.url)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
