"""A real Synapse homeserver on loopback for the demo, the test suite and the benchmarks.

Synchronous on purpose (subprocess + urllib): it is used from pytest fixtures, from
benchmarks before their event loop starts and from the command line.

    with DevHomeserver(Path("var/hs")) as hs:
        user_id, token = hs.register_user("alice", "secret")
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import jinja2
import yaml

log = logging.getLogger(__name__)

SYNAPSE_REQUIREMENT = "matrix-synapse>=1.120,<2"
_MIN_VERSION = (1, 120)
_MAX_MAJOR = 2
_MARKER = ".confidant-synapse-ok"

_CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
_TEMPLATE = "homeserver.yaml.j2"

# Keys from synapse/config/ratelimiting.py; each takes {per_second, burst_count}.
RATE_LIMITS = (
    "rc_message",
    "rc_registration",
    "rc_registration_token_validity",
    "rc_admin_redaction",
    "rc_joins_per_room",
    "rc_3pid_validation",
    "rc_third_party_invite",
    "rc_media_create",
    "rc_delayed_event_mgmt",
    "rc_room_creation",
    "rc_reports",
    "rc_user_directory",
    "rc_profile",
    "rc_key_requests",
)
NESTED_RATE_LIMITS = {
    "rc_login": ("address", "account", "failed_attempts"),
    "rc_joins": ("local", "remote"),
    "rc_invites": ("per_room", "per_user", "per_issuer"),
    "rc_presence": ("per_user",),
}

#: homeserver.yaml's (enable_registration, registration_requires_token) for each mode.
REGISTRATION_MODES = {"tokens": (True, True), "off": (False, False), "open": (True, False)}

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


class HomeserverError(RuntimeError):
    """The dev homeserver could not be set up, started or asked something."""


def default_venv() -> Path:
    """Where Synapse's own virtualenv lives unless told otherwise."""
    env = os.environ.get("CONFIDANT_SYNAPSE_VENV")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "confidant" / "synapse-venv"


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _parse_version(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in text.strip().split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def synapse_version(python: Path) -> str | None:
    """The Synapse version importable by `python`, or None."""
    proc = subprocess.run(
        [str(python), "-c", "import synapse; print(synapse.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def _version_ok(version: str | None) -> bool:
    if not version:
        return False
    parsed = _parse_version(version)
    return parsed >= _MIN_VERSION and parsed[0] < _MAX_MAJOR


def ensure_synapse(venv: Path | None = None) -> Path:
    """Make sure Synapse is installed in its own virtualenv; return that venv's python.

    Synapse pins its own Twisted and friends, so it never shares Confidant's
    environment. A marker file makes the check instant once it has passed.
    """
    venv = (venv or default_venv()).expanduser()
    python = _venv_python(venv)
    marker = venv / _MARKER
    if marker.exists() and python.exists():
        return python
    if not python.exists():
        log.info("creating synapse virtualenv at %s", venv)
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    version = synapse_version(python)
    if not _version_ok(version):
        log.info("installing %s into %s", SYNAPSE_REQUIREMENT, venv)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", SYNAPSE_REQUIREMENT],
            check=True,
        )
        version = synapse_version(python)
        if not _version_ok(version):
            raise HomeserverError(f"Synapse in {venv} is {version!r}; need {SYNAPSE_REQUIREMENT}")
    marker.write_text(f"{version}\n")
    return python


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As Twisted does: a port whose old connections sit in TIME_WAIT is reusable.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class DevHomeserver:
    """One Synapse process serving a data directory on 127.0.0.1.

    The data directory keeps everything (config, secret, port, SQLite database,
    media, log), so a second run finds the same users on the same port when it can.
    """

    def __init__(
        self,
        data_dir: Path,
        server_name: str = "localhost",
        port: int | None = None,
        *,
        venv: Path | None = None,
        max_upload_size: str = "100M",
        stock_rate_limits: bool = False,
        registration: str = "tokens",
    ) -> None:
        """`stock_rate_limits` keeps Synapse's own limits (as a practice's homeserver has
        them) instead of raising them out of the way; `registration` is "tokens" (open,
        with a registration token only, as onboarding needs), "off" or "open" (no token)."""
        if registration not in REGISTRATION_MODES:
            raise ValueError(f"registration must be one of {sorted(REGISTRATION_MODES)}")
        self.data_dir = Path(data_dir).resolve()
        self.server_name = server_name
        self._requested_port = port
        self._venv = venv
        self._max_upload_size = max_upload_size
        self._stock_rate_limits = stock_rate_limits
        self._registration = registration
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # -- paths ------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        """The rendered homeserver.yaml."""
        return self.data_dir / "homeserver.yaml"

    @property
    def log_path(self) -> Path:
        """Synapse's own log file."""
        return self.data_dir / "homeserver.log"

    @property
    def _stderr_path(self) -> Path:
        return self.data_dir / "synapse.stderr"

    @property
    def _generated_path(self) -> Path:
        return self.data_dir / "generated.yaml"

    @property
    def _secret_path(self) -> Path:
        return self.data_dir / "registration_shared_secret"

    @property
    def _port_path(self) -> Path:
        return self.data_dir / "port"

    # -- public state -----------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1 (known once configured)."""
        if self._port is None:
            raise HomeserverError("the homeserver has not been configured yet; call start()")
        return self._port

    @property
    def url(self) -> str:
        """Base URL of the client-server API."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def registration_shared_secret(self) -> str:
        """The shared secret for the admin registration API."""
        return self._secret_path.read_text().strip()

    def is_running(self) -> bool:
        """Whether the Synapse process is alive."""
        return self._proc is not None and self._proc.poll() is None

    # -- configuration ----------------------------------------------------

    def _choose_port(self) -> int:
        if self._requested_port is not None:
            return self._requested_port
        if self._port_path.exists():
            previous = int(self._port_path.read_text().strip())
            if _port_is_free(previous):
                return previous
        return _free_port()

    def _generate(self, python: Path) -> None:
        """Let Synapse generate its secrets, signing key and log config once."""
        if self._generated_path.exists():
            return
        proc = subprocess.run(
            [
                str(python),
                "-m",
                "synapse.app.homeserver",
                "--server-name",
                self.server_name,
                "--config-path",
                str(self._generated_path),
                "--generate-config",
                "--report-stats=no",
                "--data-directory",
                str(self.data_dir),
            ],
            cwd=self.data_dir,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise HomeserverError(
                f"synapse --generate-config failed ({proc.returncode}):\n{proc.stderr[-2000:]}"
            )

    def configure(self) -> Path:
        """Write homeserver.yaml (generating what is missing); return its path."""
        python = ensure_synapse(self._venv)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._generate(python)
        generated: dict[str, Any] = yaml.safe_load(self._generated_path.read_text())
        if not self._secret_path.exists():
            self._secret_path.write_text(secrets.token_urlsafe(32) + "\n")
            self._secret_path.chmod(0o600)
        self._port = self._choose_port()
        self._port_path.write_text(f"{self._port}\n")

        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(_CONFIG_DIR)),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        text = env.get_template(_TEMPLATE).render(
            server_name=self.server_name,
            public_baseurl=f"http://127.0.0.1:{self._port}/",
            port=self._port,
            data_dir=str(self.data_dir),
            log_config=generated["log_config"],
            signing_key_path=generated["signing_key_path"],
            macaroon_secret_key=generated["macaroon_secret_key"],
            form_secret=generated["form_secret"],
            registration_shared_secret=self.registration_shared_secret,
            max_upload_size=self._max_upload_size,
            enable_registration=REGISTRATION_MODES[self._registration][0],
            registration_requires_token=REGISTRATION_MODES[self._registration][1],
            rate_limits=() if self._stock_rate_limits else RATE_LIMITS,
            nested_rate_limits={} if self._stock_rate_limits else NESTED_RATE_LIMITS,
            rate_per_second=100000,
            rate_burst_count=100000,
        )
        self.config_path.write_text(text)
        self.config_path.chmod(0o600)
        return self.config_path

    # -- process ----------------------------------------------------------

    def start(self) -> DevHomeserver:
        """Start Synapse and wait until the client API answers."""
        if self.is_running():
            return self
        python = ensure_synapse(self._venv)
        self.configure()
        with self._stderr_path.open("ab") as err:
            self._proc = subprocess.Popen(
                [
                    str(python),
                    "-m",
                    "synapse.app.homeserver",
                    "--config-path",
                    str(self.config_path),
                ],
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                # Its own process group, so stop() reaches any child it spawns.
                start_new_session=True,
            )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        log.info("synapse up on %s (pid %d)", self.url, self._proc.pid)
        return self

    def _wait_until_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                raise HomeserverError(
                    f"synapse exited with {code} during start-up.\n"
                    f"--- {self._stderr_path} ---\n{_tail(self._stderr_path)}\n"
                    f"--- {self.log_path} ---\n{_tail(self.log_path)}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/_matrix/client/versions", timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        raise HomeserverError(
            f"synapse did not answer on {self.url} within {START_TIMEOUT_S:.0f} s.\n"
            f"--- {self.log_path} ---\n{_tail(self.log_path)}"
        )

    def stop(self) -> None:
        """Stop Synapse: SIGTERM, then SIGKILL if it lingers."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("synapse (pid %d) ignored SIGTERM; killing it", proc.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def __enter__(self) -> DevHomeserver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- HTTP -------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        token: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Call the homeserver; return (HTTP status, JSON body). Never raises on HTTP errors."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                payload = json.loads(raw or b"{}")
            except ValueError:
                payload = {"error": raw.decode(errors="replace")}
            return err.code, payload

    def user_id(self, localpart: str) -> str:
        """The full Matrix id of a local user."""
        return f"@{localpart}:{self.server_name}"

    def register_user(
        self,
        localpart: str,
        password: str,
        admin: bool = False,
        displayname: str | None = None,
    ) -> tuple[str, str]:
        """Create a user with the shared-secret admin API; return (user_id, access_token).

        If the user already exists (a reused data directory), log in instead.
        """
        status, body = self.request("GET", "/_synapse/admin/v1/register")
        if status != 200:
            raise HomeserverError(f"register nonce: HTTP {status} {body.get('errcode')}")
        nonce = body["nonce"]
        mac = hmac.new(self.registration_shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([nonce.encode(), localpart.encode(), password.encode()]))
        mac.update(b"\x00" + (b"admin" if admin else b"notadmin"))
        payload: dict[str, Any] = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        if displayname is not None:
            payload["displayname"] = displayname
        status, body = self.request("POST", "/_synapse/admin/v1/register", payload)
        if status == 200:
            return body["user_id"], body["access_token"]
        if body.get("errcode") == "M_USER_IN_USE":
            return self.user_id(localpart), self.login(localpart, password)
        raise HomeserverError(f"register {localpart}: HTTP {status} {body.get('errcode')}")

    def login(self, localpart: str, password: str) -> str:
        """Log in with a password (a new device each time); return the access token."""
        status, body = self.request(
            "POST",
            "/_matrix/client/v3/login",
            {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": localpart},
                "password": password,
                "initial_device_display_name": "devhs",
            },
        )
        if status != 200:
            raise HomeserverError(f"login {localpart}: HTTP {status} {body.get('errcode')}")
        token: str = body["access_token"]
        return token


def main(argv: list[str] | None = None) -> int:
    """Start a dev homeserver on a data directory and wait for Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m dev.devhs", description=main.__doc__)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--server-name", default="localhost")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument(
        "--stock-rate-limits", action="store_true", help="keep Synapse's own rate limits"
    )
    parser.add_argument("--registration", choices=sorted(REGISTRATION_MODES), default="tokens")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    stop_requested = False

    def _request_stop(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, _request_stop)
    hs = DevHomeserver(
        args.data_dir,
        server_name=args.server_name,
        port=args.port,
        stock_rate_limits=args.stock_rate_limits,
        registration=args.registration,
    )
    with hs:
        print(f"Synapse {hs.server_name} on {hs.url} (log: {hs.log_path}); Ctrl-C stops it.")
        try:
            while not stop_requested and hs.is_running():
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        if not hs.is_running() and not stop_requested:
            print(f"Synapse stopped by itself; see {hs.log_path}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
