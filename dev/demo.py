"""`confidant demo`: a local Synapse, a therapist, a patient and the bridge, in one directory.

Everything lives under the demo directory (default ./demo): Synapse's data in `synapse/`,
generated passwords and keys in `demo-secrets.json` (mode 0600), the bridge's configuration
in `config.yaml`, its state in `data/` and what the demo itself did in `demo-state.json`.
A second run reuses all of it.

Every channel is on: inbound e-mail on loopback (behind a pretend MTA, `dev.mail_as_patient`),
the dashboard with an admin token made afresh on each start (the config holds its hash only),
a sample voice note posted once the patient has joined, and `!video` on meet.jit.si.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import secrets
import shlex
import signal
import socket
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from nio.exceptions import LocalProtocolError

from bridge.adapters.voice import AudioError, VoiceClip, convert_to_voice_async
from bridge.app import App, utcnow
from bridge.cli.configcmds import new_admin_token
from bridge.config import Config, ConfigError, hash_token, load_config
from bridge.features.voice import VOICE_LIMITS, queue_voice
from bridge.logging_setup import setup_logging
from bridge.store import voice_jobs
from bridge.store.pairs import PairRecord
from dev.devhs import DevHomeserver, HomeserverError, default_venv
from dev.mail_as_patient import PATIENT_EMAIL

log = logging.getLogger(__name__)

SERVER_NAME = "localhost"
BOT, THERAPIST, PATIENT = "confidant", "therapist", "patient"
SECRETS_FILE = "demo-secrets.json"
CONFIG_FILE = "config.yaml"
STATE_FILE = "demo-state.json"
READY = "Ready: the bridge is running. Press Ctrl-C to stop."
VOICE_POSTED = "Voice: the sample voice note is posted in the pair room."

#: Where the demo's mail comes in: pair addresses are pair-<token>@INBOUND_DOMAIN.
INBOUND_DOMAIN = "mail.localhost"
#: The authserv-id of the MTA the demo pretends to be behind (dev.mail_as_patient writes it).
DEMO_AUTHSERV_ID = "mta.demo.localhost"
JITSI_DOMAIN = "meet.jit.si"
#: Ports tried first, so the printed command and URL stay the same from run to run.
SMTP_PORT, HTTP_PORT = 8025, 8090
#: The sample voice note: a short tone, made by ffmpeg.
VOICE_TONE = "sine=frequency=523:duration=3"
VOICE_ACTOR = "demo"
#: How often the demo looks whether the patient can read the voice note yet.
VOICE_WAIT_S = 2.0

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


def pick_port(preferred: int) -> int:
    """`preferred` when nothing listens on it on loopback, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise OSError("no free port on 127.0.0.1")


def demo_config(
    homeserver_url: str,
    demo_secrets: dict[str, Any],
    *,
    smtp_port: int,
    http_port: int,
    admin_token_hash: str,
) -> dict[str, Any]:
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
        # The dashboard and admin API on loopback; the token itself is printed, never stored.
        "http": {
            "enabled": True,
            "host": "127.0.0.1",
            "port": http_port,
            "admin_tokens": [admin_token_hash],
        },
        # There is no MTA in the demo: the bridge trusts the results that
        # dev.mail_as_patient writes under this authserv-id, and listens on loopback only.
        "smtp": {
            "enabled": True,
            "host": "127.0.0.1",
            "port": smtp_port,
            "inbound_domain": INBOUND_DOMAIN,
            "sender_auth": "behind_mta",
            "authserv_id": DEMO_AUTHSERV_ID,
        },
        # The public Jitsi, no token: `!video` answers with a plain meeting link.
        "jitsi": {"domain": JITSI_DOMAIN},
        "audit": {
            "content_keys": {"demo1": demo_secrets["audit_content_key"]},
            "signing_key": demo_secrets["audit_signing_key"],
        },
        "logging": {"level": "INFO", "format": "text"},
    }


def write_config(
    path: Path, homeserver_url: str, demo_secrets: dict[str, Any], admin_token: str
) -> Config:
    """Write config.yaml (mode 0600: it holds secrets) and load it back as `confidant run` would."""
    settings = demo_config(
        homeserver_url,
        demo_secrets,
        smtp_port=pick_port(SMTP_PORT),
        http_port=pick_port(HTTP_PORT),
        admin_token_hash=hash_token(admin_token),
    )
    body = yaml.safe_dump(settings, sort_keys=False)
    _write_private(path, _CONFIG_HEADER.format(path=path) + body)
    return load_config(path)


def _say(text: str = "") -> None:
    print(text, flush=True)


def _shown_path(path: Path) -> str:
    """`path` relative to the working directory when it lies inside it (shorter to copy)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def mail_command(config_path: Path, address: str) -> str:
    """The shell line that mails the pair as the patient."""
    python = _shown_path(Path(sys.executable))
    words = [python, "-m", "dev.mail_as_patient", "-c", _shown_path(config_path)]
    words += ["--to", address, "--text", "Hello, this is me writing by e-mail."]
    return shlex.join(words)


def print_logins(root: Path, url: str, passwords: dict[str, str], room_id: str, new: bool) -> None:
    """Tell the user how to log in from a Matrix client."""
    width = max(len(THERAPIST), len(PATIENT))
    _say()
    _say(f"Homeserver URL: {url}   (server name: {SERVER_NAME})")
    for who in (THERAPIST, PATIENT):
        user_id = f"@{who}:{SERVER_NAME}"
        _say(f"  {who:<{width}}  user {user_id:<22} password {passwords[who]}")
    _say(f"Pair room: {room_id}   ({'created now' if new else 'already there'})")


def _entry(label: str, *lines: str) -> None:
    """One channel's entry: its name in the first column, its lines beside it."""
    for index, line in enumerate(lines):
        _say(f"  {label if index == 0 else '':<10} {line}")


def print_channels(cfg: Config, root: Path, record: PairRecord, admin_token: str) -> None:
    """Tell the user what to try on each channel, one entry per channel."""
    config = root / CONFIG_FILE
    url = cfg.homeserver.url
    _say()
    _say("Try each channel:")
    _entry(
        "Chat",
        f"In Element (Web or desktop) choose 'Edit' next to the homeserver, enter {url}",
        "and log in as the patient and as the therapist (two browsers, or one private window).",
        "Accept the invitation to the pair room; the therapist also gets a desk room with the",
        "bot for reminders. The patient is asked to accept the practice's consent text (reply",
        "!accept); then the reply clock runs. !help lists the commands.",
    )
    if record.has_patient_email:
        address = f"pair-{record.email_token}@{cfg.smtp.inbound_domain}"
        _entry(
            "E-mail",
            f"The pair's address is {address}; mail it as the patient",
            f"({PATIENT_EMAIL}), from this directory:",
            mail_command(config, address),
        )
    else:
        _entry(
            "E-mail",
            "This pair was made by an older demo, without the patient's e-mail address;",
            f"stop the demo and delete {root} to start afresh with one.",
        )
    _entry(
        "Dashboard",
        f"http://{cfg.http.host}:{cfg.http.port}/dashboard   admin token: {admin_token}",
        "(a new token on every start; the config keeps only its hash)",
    )
    _entry(
        "Voice",
        "A sample voice note is posted in the pair room once the patient has joined;",
        f"send your own: confidant voice send -c {config} --pair {record.label} FILE",
    )
    _entry(
        "Video", f"Send !video in the pair room: the bot answers with a {cfg.jitsi.domain} link."
    )
    _say()
    _say(f"Config: {config}; try: confidant pair -c {config} list")
    _say(f"Everything is kept in {root}; delete it to start afresh.")


def _load_state(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return state


async def sample_voice_clip() -> VoiceClip:
    """A short tone made by ffmpeg, converted as `confidant voice send` converts a file."""
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", VOICE_TONE,
        "-ac", "1", "-f", "wav", "pipe:1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    wav, err = await proc.communicate()
    if proc.returncode != 0:
        raise AudioError("ffmpeg", err.decode("utf-8", "replace").strip() or "ffmpeg failed")
    return await convert_to_voice_async(wav, filename_hint="tone.wav", limits=VOICE_LIMITS)


async def post_sample_voice(app: App, root: Path, record: PairRecord) -> None:
    """Queue the sample voice note once, when the patient can read it.

    A post encrypted before the patient's device exists stays unreadable on it, so this
    waits until she has joined with a device, as the bridge's welcome does.
    """
    state_path = root / STATE_FILE
    state = _load_state(state_path)
    parts, bot = app.parts, app.bot
    assert parts is not None and bot is not None and record.room_id is not None
    job_id = state.get("sample_voice_job")
    if job_id and await voice_jobs.get(parts.db, str(job_id)) is not None:
        return
    try:
        clip = await sample_voice_clip()
    except (AudioError, OSError) as err:
        _say(f"Voice: no sample voice note ({err}); install ffmpeg for it.")
        return
    # Polled: the bridge tells nothing outside itself when a member joins.
    while True:
        try:
            if await bot.member_ready(record.room_id, record.patient_id):
                break
        except LocalProtocolError:
            # nio refuses a device-list query when the sync loop's own query has just
            # taken the user off its list; the next look asks again.
            pass
        await asyncio.sleep(VOICE_WAIT_S)
    async with parts.db.transaction() as tx:
        job_id = await queue_voice(tx, parts.audit, record.pair_id, clip, VOICE_ACTOR, utcnow())
    _write_private(state_path, json.dumps({**state, "sample_voice_job": job_id}) + "\n")
    _say(VOICE_POSTED)


async def run_bridge(
    cfg: Config, root: Path, passwords: dict[str, str], admin_token: str, setup_only: bool
) -> None:
    """Start the bridge, make sure the demo pair exists, then wait for SIGINT/SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    app = App(cfg)
    voice: asyncio.Task[None] | None = None
    try:
        await app.start()
        if stop.is_set():
            return
        assert app.parts is not None
        record, created = await app.parts.pairs.add_pair(
            f"@{PATIENT}:{SERVER_NAME}",
            f"@{THERAPIST}:{SERVER_NAME}",
            utcnow(),
            patient_email=PATIENT_EMAIL,
        )
        assert record.room_id is not None
        print_logins(root, cfg.homeserver.url, passwords, record.room_id, created)
        print_channels(cfg, root, record, admin_token)
        if setup_only:
            _say("Setup done (--setup-only): stopping.")
            return
        voice = asyncio.create_task(post_sample_voice(app, root, record), name="demo-voice")
        _say(READY)
        await stop.wait()
    finally:
        if voice is not None:
            voice.cancel()
            [outcome] = await asyncio.gather(voice, return_exceptions=True)
            if isinstance(outcome, Exception):
                # Reported, not raised: the bridge and Synapse must still stop.
                log.error("the sample voice note failed", exc_info=outcome)
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
        # Made afresh on every start and only printed: the config holds its hash.
        admin_token = new_admin_token()
        cfg = write_config(root / CONFIG_FILE, hs.url, demo_secrets, admin_token)
        try:
            asyncio.run(run_bridge(cfg, root, passwords, admin_token, setup_only))
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
