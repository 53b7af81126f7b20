"""`confidant demo`: a local Synapse, a therapist, a patient and the bridge, in one directory.

Everything lives under the demo directory (default ./demo): Synapse's data in `synapse/`,
generated passwords and keys in `demo-secrets.json` (mode 0600), the bridge's configuration
in `config.yaml` and its state in `data/`. A second run reuses all of it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from bridge.app import App, utcnow
from bridge.config import Config, ConfigError, load_config
from bridge.logging_setup import setup_logging
from dev.devhs import DevHomeserver, HomeserverError, default_venv

SERVER_NAME = "localhost"
BOT, THERAPIST, PATIENT = "confidant", "therapist", "patient"
SECRETS_FILE = "demo-secrets.json"
CONFIG_FILE = "config.yaml"
READY = "Ready: the bridge is running. Press Ctrl-C to stop."

_CONFIG_HEADER = """\
# Written by `confidant demo` and rewritten on every demo run (the port may change).
# Run the bridge with it yourself: confidant run -c {path}
"""


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, replacing any previous one atomically."""
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def load_or_create_secrets(path: Path) -> dict[str, Any]:
    """The demo's passwords and keys: generated on the first run, then read back."""
    if path.exists():
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data
    data = {
        "passwords": {user: secrets.token_urlsafe(12) for user in (BOT, THERAPIST, PATIENT)},
        "pickle_key": secrets.token_urlsafe(32),
        "audit_content_key": _key(),
        "audit_signing_key": _key(),
    }
    _write_private(path, json.dumps(data, indent=2) + "\n")
    return data


def register_users(hs: DevHomeserver, passwords: dict[str, str]) -> None:
    """Create the bot, therapist and patient (or check their passwords on a reused server)."""
    names = {BOT: "Confidant", THERAPIST: "Demo Therapist", PATIENT: "Demo Patient"}
    for localpart, display in names.items():
        _, token = hs.register_user(localpart, passwords[localpart], displayname=display)
        # Registering (or logging in) made a device; drop it so the user's own client
        # is their only session and Element shows no stray unverified one.
        hs.request("POST", "/_matrix/client/v3/logout", {}, token=token)


def demo_config(homeserver_url: str, demo_secrets: dict[str, Any]) -> dict[str, Any]:
    """The bridge configuration for the demo (paths relative to the config file)."""
    return {
        "homeserver": {"url": homeserver_url, "server_name": SERVER_NAME},
        "bot": {
            "user_id": f"@{BOT}:{SERVER_NAME}",
            "password": demo_secrets["passwords"][BOT],
            "pickle_key": demo_secrets["pickle_key"],
        },
        "data_dir": "data",
        "database": {"url": "data/confidant.db"},
        "practice": {
            "name": "Demo Practice",
            "crisis_line": "+1 555 0100 (a demo number; use your local crisis line)",
        },
        # Calendar time, so reminders show up whatever the hour the demo runs at.
        "policies": {"default": {"window": "4h", "window_clock": "calendar"}},
        # The demo needs no admin API, and the port may be in use by a real bridge.
        "http": {"enabled": False},
        "audit": {
            "content_keys": {"demo1": demo_secrets["audit_content_key"]},
            "signing_key": demo_secrets["audit_signing_key"],
        },
        "logging": {"level": "INFO", "format": "text"},
    }


def write_config(path: Path, homeserver_url: str, demo_secrets: dict[str, Any]) -> Config:
    """Write config.yaml (mode 0600: it holds secrets) and load it back as `confidant run` would."""
    body = yaml.safe_dump(demo_config(homeserver_url, demo_secrets), sort_keys=False)
    _write_private(path, _CONFIG_HEADER.format(path=path) + body)
    return load_config(path)


def _say(text: str = "") -> None:
    print(text, flush=True)


def print_logins(root: Path, url: str, passwords: dict[str, str], room_id: str, new: bool) -> None:
    """Tell the user how to log in from a Matrix client."""
    width = max(len(THERAPIST), len(PATIENT))
    _say()
    _say(f"Homeserver URL: {url}   (server name: {SERVER_NAME})")
    for who in (THERAPIST, PATIENT):
        user_id = f"@{who}:{SERVER_NAME}"
        _say(f"  {who:<{width}}  user {user_id:<22} password {passwords[who]}")
    _say(f"Pair room: {room_id}   ({'created now' if new else 'already there'})")
    _say()
    _say("Log in as each user from any Matrix client (two browsers, or one private window).")
    _say(f"In Element Web or desktop choose 'Edit' next to the homeserver and enter {url}.")
    _say("Accept the invitation to the pair room; the therapist also gets a desk room with")
    _say("the bot for reminders. The patient is asked to accept the practice's consent text")
    _say("(reply !accept); then the reply clock runs. !help lists commands, !video starts a call.")
    _say(f"Config: {root / CONFIG_FILE}; try: confidant pair -c {root / CONFIG_FILE} list")
    _say(f"Everything is kept in {root}; delete it to start afresh.")


async def run_bridge(cfg: Config, root: Path, passwords: dict[str, str], setup_only: bool) -> None:
    """Start the bridge, make sure the demo pair exists, then wait for SIGINT/SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    app = App(cfg)
    try:
        await app.start()
        if stop.is_set():
            return
        assert app.parts is not None
        record, created = await app.parts.pairs.add_pair(
            f"@{PATIENT}:{SERVER_NAME}", f"@{THERAPIST}:{SERVER_NAME}", utcnow()
        )
        assert record.room_id is not None
        print_logins(root, cfg.homeserver.url, passwords, record.room_id, created)
        if setup_only:
            _say("Setup done (--setup-only): stopping.")
            return
        _say(READY)
        await stop.wait()
    finally:
        await app.stop()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _run(hs: DevHomeserver, root: Path, setup_only: bool) -> None:
    """Synapse, users, config, bridge; Synapse is stopped whatever happens."""
    try:
        if not (default_venv() / "bin" / "python").exists():
            _say(f"Installing Synapse into {default_venv()}; this can take a minute.")
        _say(f"Starting Synapse in {hs.data_dir} ...")
        hs.start()
        demo_secrets = load_or_create_secrets(root / SECRETS_FILE)
        passwords: dict[str, str] = demo_secrets["passwords"]
        register_users(hs, passwords)
        cfg = write_config(root / CONFIG_FILE, hs.url, demo_secrets)
        try:
            asyncio.run(run_bridge(cfg, root, passwords, setup_only))
        finally:
            # asyncio.run puts SIGTERM back to its default on the way out.
            signal.signal(signal.SIGTERM, _interrupt)
    finally:
        # A second Ctrl-C must not cut this short and leave Synapse running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        hs.stop()


def main(args: argparse.Namespace) -> int:
    """Run the demo in `args.dir`; with `args.setup_only`, prepare, print the logins and exit."""
    root = Path(args.dir).resolve()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    setup_logging("INFO", "text")
    hs = DevHomeserver(root / "synapse", server_name=SERVER_NAME)
    # SIGTERM unwinds like Ctrl-C, so the `finally` in _run stops Synapse.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        _run(hs, root, args.setup_only)
    except (HomeserverError, ConfigError) as err:
        print(f"confidant demo: {err}", file=sys.stderr)
        print(f"(to start afresh, stop the demo and delete {root})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        _say("Interrupted; Synapse is stopped.")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    _say("Stopped the bridge and Synapse.")
    return 0


def cli(argv: list[str] | None = None) -> int:
    """`python -m dev.demo [--dir DIR] [--setup-only]` (what `make demo` runs)."""
    parser = argparse.ArgumentParser(
        prog="python -m dev.demo",
        description="Run a local homeserver and the bridge with demo users.",
    )
    parser.add_argument("--dir", default="demo", help="where the demo keeps its state")
    parser.add_argument("--setup-only", action="store_true", help="prepare, print logins, exit")
    return main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(cli())
