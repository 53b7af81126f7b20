"""The bot's one device: credentials created once and reused by every process.

Logging in again would make a new device with new keys, so the first login's device id
and access token are kept (mode 0600) next to the crypto store and restored afterwards.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from bridge.adapters.matrix.rest import MatrixRest


@dataclass(frozen=True)
class BotCredentials:
    user_id: str
    device_id: str
    access_token: str


def credentials_path(data_dir: Path) -> Path:
    return data_dir / "bot-session.json"


def load_credentials(data_dir: Path) -> BotCredentials | None:
    path = credentials_path(data_dir)
    if not path.exists():
        return None
    return BotCredentials(**json.loads(path.read_text()))


def save_credentials(data_dir: Path, creds: BotCredentials) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = credentials_path(data_dir)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(creds), fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


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
    creds = load_credentials(data_dir)
    if creds is not None and creds.user_id == user_id:
        rest.access_token = creds.access_token
        return creds
    if access_token:
        rest.access_token = access_token
        who = await rest.whoami()
        creds = BotCredentials(str(who["user_id"]), str(who["device_id"]), access_token)
    elif password:
        data = await rest.login_password(user_id, password, device_name)
        creds = BotCredentials(
            str(data["user_id"]), str(data["device_id"]), str(data["access_token"])
        )
        rest.access_token = creds.access_token
    else:
        raise RuntimeError("bot: set either password or access_token")
    save_credentials(data_dir, creds)
    return creds
