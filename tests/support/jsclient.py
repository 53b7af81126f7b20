"""An Element-grade Matrix client for tests: matrix-js-sdk with Rust crypto, run under Node.

`JsClient` drives tests/interop/client.mjs over JSON lines on stdin/stdout. It logs in with a
password (a new device each time), bootstraps its own cross-signing as Element does, and reports
for every message whether it decrypted and which shield Element would draw next to it.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Literal

INTEROP_DIR = Path(__file__).resolve().parent.parent / "interop"
CLIENT_SCRIPT = INTEROP_DIR / "client.mjs"
_MARKER = INTEROP_DIR / "node_modules" / ".confidant-lock-sha256"
_STDERR_TAIL = 60

Isolation = Literal["all", "signed"]

_install_lock = asyncio.Lock()


class JsClientError(RuntimeError):
    """The Node client failed; the message carries the tail of its stderr."""


def _lock_digest() -> str:
    return hashlib.sha256((INTEROP_DIR / "package-lock.json").read_bytes()).hexdigest()


async def ensure_node_modules() -> None:
    """Run `npm ci` in tests/interop unless node_modules already matches the lock file.

    Guarded by an asyncio lock and a file lock, so concurrent tests and pytest workers install
    once; a marker holding the lock file's digest says the install finished.
    """
    async with _install_lock:
        if not _installed():
            await asyncio.to_thread(_npm_ci_once)


def _installed() -> bool:
    return _MARKER.exists() and _MARKER.read_text() == _lock_digest()


def _npm_ci_once() -> None:
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise JsClientError("node and npm are needed for the interop client")
    # Outside the tree: npm ci empties node_modules, and the repository should stay clean.
    tag = hashlib.sha256(str(INTEROP_DIR).encode()).hexdigest()[:12]
    with open(Path(tempfile.gettempdir()) / f"confidant-npm-ci-{tag}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed():
            return
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=INTEROP_DIR,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            tail = (done.stdout + done.stderr)[-3000:]
            raise JsClientError(f"npm ci failed ({done.returncode}):\n{tail}")
        _MARKER.write_text(_lock_digest())


class JsClient:
    """One logged-in matrix-js-sdk device; start it with `await JsClient.start(...)`."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ready: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL)
        self.notices: list[dict[str, Any]] = []
        self.user_id = ""
        self.device_id = ""
        self.versions: dict[str, str] = {}
        self._stderr_reader = asyncio.create_task(self._read_stderr())
        self._stdout_reader = asyncio.create_task(self._read_stdout())

    @classmethod
    async def start(
        cls,
        hs_url: str,
        user_id: str,
        password: str,
        isolation: Isolation = "all",
        *,
        auto_join: bool = False,
        cross_signing: bool = True,
        start_timeout: float = 60,
    ) -> JsClient:
        """Log in as a new device, start syncing and return once the first sync is done.

        isolation: "all" is Element's default; "signed" is "exclude insecure devices" (MSC4153):
        no decryption from, and no room keys to, devices their owner has not cross-signed.
        """
        if isolation not in ("all", "signed"):
            raise ValueError(f"isolation must be 'all' or 'signed', not {isolation!r}")
        await ensure_node_modules()
        argv = ["--homeserver", hs_url, "--user", user_id, "--isolation", isolation]
        if auto_join:
            argv.append("--auto-join")
        if not cross_signing:
            argv.append("--no-cross-signing")
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(CLIENT_SCRIPT),
            *argv,
            cwd=INTEROP_DIR,
            # The password stays off the process list.
            env={**os.environ, "INTEROP_PASSWORD": password},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,
        )
        client = cls(proc)
        try:
            ready = await asyncio.wait_for(asyncio.shield(client._ready), start_timeout)
        except JsClientError:
            await client.stop()
            raise
        except BaseException as exc:
            await client._kill()
            await client.stop()
            raise client._error(f"interop client did not start: {exc!r}") from exc
        client.user_id = ready["user_id"]
        client.device_id = ready["device_id"]
        client.versions = ready.get("versions", {})
        return client

    async def join(self, room_id: str) -> None:
        """Join a room (after an invite) and wait until the join has synced."""
        await self._call("join", room_id=room_id)

    async def send(self, room_id: str, body: str) -> str:
        """Send an m.text message (encrypted if the room is); return its event id."""
        result = await self._call("send", room_id=room_id, body=body)
        return str(result["event_id"])

    async def send_file(
        self,
        room_id: str,
        data: bytes,
        name: str,
        mimetype: str = "application/octet-stream",
        msgtype: str = "m.file",
    ) -> str:
        """Upload `data` as an encrypted attachment and send it; return the event id."""
        result = await self._call(
            "send_file",
            room_id=room_id,
            data_b64=base64.b64encode(data).decode(),
            name=name,
            mimetype=mimetype,
            msgtype=msgtype,
        )
        return str(result["event_id"])

    async def download(self, file: dict[str, Any]) -> bytes:
        """Download and decrypt an encrypted attachment given the event's `file` object."""
        result = await self._call("download", file=file)
        return base64.b64decode(result["data_b64"])

    async def wait(
        self,
        room_id: str,
        sender: str | None = None,
        contains: str | None = None,
        timeout: float = 30,
    ) -> dict[str, Any]:
        """Wait for the first message from `sender` whose body contains `contains`.

        Returns {event_id, sender, type, content, encrypted, decrypted, decryption_error?,
        shield: {colour, reason} | None}. A decrypted match is returned at once. Without
        `contains`, a final decryption failure (e.g. UNSIGNED_SENDER_DEVICE in "signed" mode)
        is returned at once too; a failure that may heal (missing key) only at the timeout.
        Raises JsClientError if nothing from the sender arrived at all.
        """
        event = await self._call(
            "wait",
            room_id=room_id,
            sender=sender,
            contains=contains,
            timeout_ms=int(timeout * 1000),
            _timeout=timeout + 30,
        )
        return dict(event)

    async def events(self, room_id: str) -> list[dict[str, Any]]:
        """Every timeline event seen in the room, described as `wait` describes one."""
        result = await self._call("events", room_id=room_id)
        return list(result["events"])

    async def stop(self) -> None:
        """Stop syncing and end the Node process."""
        if self._proc.returncode is None:
            with contextlib.suppress(JsClientError, ConnectionError):
                await self._call("stop", _timeout=15)
            try:
                await asyncio.wait_for(self._proc.wait(), 10)
            except TimeoutError:
                await self._kill()
        for task in (self._stdout_reader, self._stderr_reader):
            task.cancel()

    async def __aenter__(self) -> JsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def stderr_tail(self) -> str:
        """The last lines the Node process wrote to stderr."""
        return "\n".join(self._stderr)

    async def _call(self, cmd: str, _timeout: float = 60, **args: Any) -> Any:
        if self._proc.returncode is not None or self._proc.stdin is None:
            raise self._error(f"{cmd}: interop client has exited ({self._proc.returncode})")
        msg_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        line = json.dumps({"id": msg_id, "cmd": cmd, **args}) + "\n"
        try:
            self._proc.stdin.write(line.encode())
            await self._proc.stdin.drain()
            return await asyncio.wait_for(future, _timeout)
        except TimeoutError as exc:
            raise self._error(f"{cmd}: no answer within {_timeout} s") from exc
        finally:
            self._pending.pop(msg_id, None)

    def _error(self, message: str) -> JsClientError:
        tail = self.stderr_tail()
        return JsClientError(f"{message}\n--- interop client stderr (tail) ---\n{tail}")

    async def _read_stdout(self) -> None:
        assert self._proc.stdout is not None
        while line := await self._proc.stdout.readline():
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                self._stderr.append(f"[unparsed stdout] {line[:200]!r}")
                continue
            if "event" in msg:
                if msg["event"] == "ready" and not self._ready.done():
                    self._ready.set_result(msg)
                self.notices.append(msg)
                continue
            future = self._pending.get(msg.get("id"))
            if future is None or future.done():
                continue
            if msg.get("ok"):
                future.set_result(msg.get("result"))
            else:
                future.set_exception(self._error(str(msg.get("error"))))
        await self._proc.wait()
        # Let the stderr reader catch up so the error shows why the process ended.
        await asyncio.wait([self._stderr_reader], timeout=2)
        failure = self._error(f"interop client exited with code {self._proc.returncode}")
        if not self._ready.done():
            self._ready.set_exception(failure)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(failure)

    async def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        while line := await self._proc.stderr.readline():
            self._stderr.append(line.decode(errors="replace").rstrip())

    async def _kill(self) -> None:
        if self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()
