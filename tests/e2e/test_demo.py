"""`confidant demo` end to end, as a user runs it: its own Synapse, logins that work,
every channel it prints working (mail in over real SMTP, the dashboard with the printed
token, the sample voice note, `!video`), state reused on a second run, and nothing left
running after Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import http.cookiejar
import json
import os
import queue
import re
import shlex
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
from nio import Event, RoomEncryptedAudio, RoomMessageNotice, RoomMessageText

from bridge.config import load_config
from bridge.web.auth import CSRF_COOKIE, CSRF_FIELD
from dev.demo import BOT, JITSI_DOMAIN, READY, SERVER_NAME, VOICE_POSTED
from tests.support.nio_user import NioUser

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration

# The first run on a fresh machine installs Synapse.
RUN_TIMEOUT_S = 240.0

_URL = re.compile(r"^Homeserver URL: (http://127\.0\.0\.1:\d+)", re.M)
_LOGIN = re.compile(r"^\s+(therapist|patient)\s+user (@\S+)\s+password (\S+)$", re.M)
_ROOM = re.compile(r"^Pair room: (\S+)\s+\((created now|already there)\)$", re.M)
_CHANNELS = ("Chat", "E-mail", "Dashboard", "Voice", "Video")
_ADDRESS = re.compile(r"^  E-mail +The pair's address is (pair-\w+@\S+);", re.M)
_MAIL = re.compile(r"^ +(\S+ -m dev\.mail_as_patient .+)$", re.M)
_DASHBOARD = re.compile(
    r"^  Dashboard +(http://127\.0\.0\.1:\d+/dashboard) +admin token: (\S+)$", re.M
)
_VIDEO = re.compile(r"^  Video +Send !video in the pair room", re.M)

BOT_ID = f"@{BOT}:{SERVER_NAME}"


@dataclass(frozen=True)
class Printed:
    """What the demo told the user."""

    url: str
    logins: dict[str, tuple[str, str]]
    room_id: str
    created: bool
    #: The pair's e-mail address and the one-line command that mails it as the patient.
    address: str
    mail_command: str
    dashboard: str
    admin_token: str


def parse(stdout: str) -> Printed:
    url, room = _URL.search(stdout), _ROOM.search(stdout)
    address, mail, dashboard = (
        _ADDRESS.search(stdout),
        _MAIL.search(stdout),
        _DASHBOARD.search(stdout),
    )
    assert url and room and address and mail and dashboard and _VIDEO.search(stdout), stdout
    # One entry per channel, in the block that says what to try.
    for channel in _CHANNELS:
        assert re.search(rf"^  {channel} +\S", stdout, re.M), (channel, stdout)
    logins = {who: (user_id, password) for who, user_id, password in _LOGIN.findall(stdout)}
    return Printed(
        url.group(1),
        logins,
        room.group(1),
        room.group(2) == "created now",
        address.group(1),
        mail.group(1),
        dashboard.group(1),
        dashboard.group(2),
    )


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
    # Every channel on, on loopback; the admin token is printed, the config has its hash.
    assert cfg.smtp.enabled and cfg.smtp.host == "127.0.0.1"
    assert printed.address.endswith(f"@{cfg.smtp.inbound_domain}")
    assert cfg.http.enabled and cfg.http.host == "127.0.0.1"
    assert printed.dashboard == f"http://127.0.0.1:{cfg.http.port}/dashboard"
    assert cfg.http.token_ok(printed.admin_token)
    assert printed.admin_token not in (demo_dir / "config.yaml").read_text()
    assert printed.admin_token not in secrets_file.read_text()
    assert printed.admin_token not in first.stderr
    assert cfg.jitsi.domain == JITSI_DOMAIN and cfg.jitsi.jwt is None
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
    assert again.address == printed.address
    assert again.admin_token != printed.admin_token
    # The same keys, so the bridge's sealed state and crypto store stay readable.
    cfg_again = load_config(demo_dir / "config.yaml")
    assert cfg_again.bot.pickle_key == cfg.bot.pickle_key
    assert cfg_again.audit.keys == cfg.audit.keys
    assert not answers(again.url)


def _read_lines(stream: Any, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _from_bot(kind: type[Event], text: str = "") -> Any:
    return lambda e: isinstance(e, kind) and e.sender == BOT_ID and text in getattr(e, "body", "")


async def _mail_as_patient(command: str, *extra: str) -> tuple[int, str]:
    """Run the printed command (and extra options) from where the demo runs; (rc, output)."""
    proc = await asyncio.create_subprocess_exec(
        *shlex.split(command),
        *extra,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=demo_env(),
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def _patient_tries_each_channel(printed: Printed, store: Path) -> str:
    """Log in as the printed patient, read the welcome, then the voice note, mail and `!video`.

    Returns the welcome's text.
    """
    user_id, password = printed.logins["patient"]
    room = printed.room_id
    patient = await NioUser.create(printed.url, user_id, password, store, auto_join=True)
    try:
        # The welcome and the consent text come in either order.
        welcome = await patient.wait_for(room, _from_bot(RoomMessageNotice, "Welcome"), timeout=60)
        assert isinstance(welcome, RoomMessageNotice)

        # The sample voice note waits for her device, so this one can read it.
        voice = await patient.wait_for(room, _from_bot(RoomEncryptedAudio), timeout=30)
        assert isinstance(voice, RoomEncryptedAudio)
        assert voice.source["content"].get("org.matrix.msc3245.voice") is not None

        # Mail in with the printed command: real SMTP into the bridge, out in the pair room.
        rc, out = await _mail_as_patient(printed.mail_command)
        assert rc == 0, out
        text = shlex.split(printed.mail_command)[-1]
        await patient.wait_for(room, _from_bot(RoomMessageText, text), timeout=30)
        # Only the pair's patient may write to it.
        rc, out = await _mail_as_patient(printed.mail_command, "--from", "someone@example.net")
        assert rc == 1 and "550 5.7.1" in out, out

        await patient.send_text(room, "!video")
        link = await patient.wait_for(
            room, _from_bot(RoomMessageNotice, f"https://{JITSI_DOMAIN}/"), timeout=30
        )
        assert isinstance(link, RoomMessageNotice)
        return str(welcome.body)
    finally:
        await patient.close()


def _dashboard_sign_in(dashboard: str, token: str) -> tuple[int, str, str]:
    """Sign in to the dashboard's form with `token` as a browser would; (status, URL, page)."""
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with browser.open(f"{dashboard}/login", timeout=30) as form:
        assert form.status == 200
    [csrf] = [cookie.value for cookie in jar if cookie.name == CSRF_COOKIE]
    body = urllib.parse.urlencode({"token": token, CSRF_FIELD: csrf or ""}).encode()
    try:
        with browser.open(f"{dashboard}/login", data=body, timeout=30) as page:
            return page.status, page.geturl(), page.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.geturl(), err.read().decode()


def _check_dashboard(printed: Printed) -> None:
    status, url, page = _dashboard_sign_in(printed.dashboard, printed.admin_token)
    assert (status, url) == (200, printed.dashboard), (status, url)
    assert "Demo Practice" in page
    status, _url, _page = _dashboard_sign_in(printed.dashboard, "not-" + printed.admin_token)
    assert status == 401
    # The admin API takes the same token as a bearer token.
    api = printed.dashboard.removesuffix("/dashboard") + "/api/v1/pairs"
    status, pairs = call(api, "GET", "", token=printed.admin_token)
    assert status == 200 and printed.room_id in json.dumps(pairs)
    assert call(api, "GET", "")[0] == 401


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

        _check_dashboard(printed)

        # The patient logs in with the printed password, as a Matrix client with E2EE
        # would (a new device), joins, and reads the bot's welcome: it waited for her device.
        (tmp_path / "patient").mkdir()
        welcome = asyncio.run(_patient_tries_each_channel(printed, tmp_path / "patient"))
        assert "Welcome" in welcome

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, stderr_path.read_text()[-3000:]
        rest = ""
        while (line := lines.get(timeout=10)) is not None:
            rest += line
        assert VOICE_POSTED in rest
        assert printed.admin_token not in stderr_path.read_text()
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
