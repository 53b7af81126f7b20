"""The bot's one device: credentials created once and reused by every process.

Logging in again would make a new device with new keys, so the first login's device id
and access token are kept (mode 0600) next to the crypto store and restored afterwards.

The first login asks for a device id chosen here (kept in `bot-device-id` until that
login is saved). A login whose answer was lost (a proxy's 502 after the homeserver did
the work) is then retried onto the same device instead of leaving an orphan, and the
running bridge can open its crypto store for that device before the homeserver answers.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bridge.adapters.matrix.rest import MatrixRest


@dataclass(frozen=True)
class BotCredentials:
    user_id: str
    device_id: str
    #: Empty while the first login is still to come (see `deferred_credentials`).
    access_token: str

    @property
    def logged_in(self) -> bool:
        return bool(self.access_token)


def credentials_path(data_dir: Path) -> Path:
    return data_dir / "bot-session.json"


def device_id_path(data_dir: Path) -> Path:
    return data_dir / "bot-device-id"


def load_credentials(data_dir: Path) -> BotCredentials | None:
    path = credentials_path(data_dir)
    if not path.exists():
        return None
    return BotCredentials(**json.loads(path.read_text()))


def _write_private(path: Path, text: str) -> None:
    """Write `text` atomically with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_credentials(data_dir: Path, creds: BotCredentials) -> None:
    _write_private(credentials_path(data_dir), json.dumps(asdict(creds)))
    # The session now names the device; a later lost session starts a new device.
    device_id_path(data_dir).unlink(missing_ok=True)


def reserved_device_id(data_dir: Path) -> str:
    """The device id the first login asks for: chosen once, kept until that login is saved."""
    path = device_id_path(data_dir)
    if path.exists():
        return path.read_text().strip()
    device_id = "CONFIDANT" + secrets.token_hex(5).upper()
    _write_private(path, device_id)
    return device_id


def stored_credentials(data_dir: Path, user_id: str) -> BotCredentials | None:
    """The saved session of `user_id`, or None (none saved, or another bot's)."""
    creds = load_credentials(data_dir)
    return creds if creds is not None and creds.user_id == user_id else None


def deferred_credentials(
    data_dir: Path, *, user_id: str, password: str | None, access_token: str | None
) -> BotCredentials | None:
    """Credentials usable before the homeserver answers, or None when it must be asked first.

    The saved session, else (password login) the reserved device without a token yet: the
    bridge logs in later, in the background. A configured access token names a device only
    the homeserver knows (`whoami`), so it cannot be deferred.
    """
    creds = stored_credentials(data_dir, user_id)
    if creds is not None:
        return creds
    if access_token or not password:
        return None
    return BotCredentials(user_id, reserved_device_id(data_dir), "")


async def login_device(
    rest: MatrixRest, user_id: str, password: str, device_name: str, data_dir: Path
) -> dict[str, Any]:
    """Log in with the password onto the reserved device (idempotent on retry)."""
    return await rest.request(
        "POST",
        "/_matrix/client/v3/login",
        {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user_id},
            "password": password,
            "device_id": reserved_device_id(data_dir),
            "initial_device_display_name": device_name,
        },
    )


async def ensure_credentials(
    rest: MatrixRest,
    data_dir: Path,
    *,
    user_id: str,
    password: str | None,
    access_token: str | None,
    device_name: str,
) -> BotCredentials:
    """Reuse the stored device, or log in once (password) / adopt a configured token."""
    creds = stored_credentials(data_dir, user_id)
    if creds is not None:
        rest.access_token = creds.access_token
        return creds
    if access_token:
        rest.access_token = access_token
        who = await rest.whoami()
        creds = BotCredentials(str(who["user_id"]), str(who["device_id"]), access_token)
    elif password:
        data = await login_device(rest, user_id, password, device_name, data_dir)
        creds = BotCredentials(
            str(data["user_id"]), str(data["device_id"]), str(data["access_token"])
        )
        rest.access_token = creds.access_token
    else:
        raise RuntimeError("bot: set either password or access_token")
    save_credentials(data_dir, creds)
    return creds
