"""Value types shared by the sections: durations, Matrix ids, domains, URLs, keys, paths.

Each is an `Annotated` type whose validator says in one line what a good value looks
like; values that may be secrets are never echoed.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from datetime import timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, PlainValidator, SecretBytes, ValidationInfo

# ---------------------------------------------------------------- durations

_DURATION = re.compile(
    r"(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?"
)
_DURATION_HINT = "write a duration with units, like '90s', '30m', '2h', '1d' or '1h30m'"


def parse_duration(value: Any) -> timedelta:
    """Parse '90s', '30m', '2h', '1d', '1w', '1h30m' (or a timedelta) into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration; {_DURATION_HINT}")
    text = value.replace(" ", "").lower()
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(f"{value!r} is not a duration; {_DURATION_HINT}")
    parts = {name: int(number or 0) for name, number in match.groupdict().items()}
    return timedelta(
        weeks=parts["w"], days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"]
    )


def positive_duration(value: Any) -> timedelta:
    """A duration longer than zero: what `Duration` accepts."""
    duration = parse_duration(value)
    if duration <= timedelta(0):
        raise ValueError("must be longer than zero")
    return duration


def _optional_duration(value: Any) -> timedelta | None:
    return None if value is None else positive_duration(value)


Duration = Annotated[timedelta, PlainValidator(positive_duration)]
OptionalDuration = Annotated[timedelta | None, PlainValidator(_optional_duration)]

# ---------------------------------------------------------------- names, addresses, keys, paths

_SERVER_NAME = r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::\d{1,5})?"
_SERVER_NAME_RE = re.compile(_SERVER_NAME)
# Historical user ids may hold any printable ASCII but ':' in the localpart.
USER_ID_RE = re.compile(rf"@[\x21-\x39\x3b-\x7e]+:{_SERVER_NAME}")
_DOMAIN_RE = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _matrix_user_id(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 255 or not USER_ID_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a Matrix user id like '@name:example.org'")
    return value


def _server_name(value: Any) -> str:
    if not isinstance(value, str) or not _SERVER_NAME_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a server name like 'example.org'")
    return value


def _domain(value: Any) -> str:
    if not isinstance(value, str) or not _DOMAIN_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a domain name like 'mail.example.org'")
    return value.lower()


def _http_url(value: Any) -> str:
    if isinstance(value, str):
        parts = urlsplit(value)
        if parts.scheme in ("http", "https") and parts.netloc:
            return value.rstrip("/")
    raise ValueError(f"{value!r} is not an http:// or https:// URL")


def _email_address(value: Any) -> str:
    if isinstance(value, str):
        _, address = parseaddr(value)
        local, at, domain = address.rpartition("@")
        if at and local and _DOMAIN_RE.fullmatch(domain) and " " not in local:
            return value
    raise ValueError(f"{value!r} is not an e-mail address like 'Practice <care@example.org>'")


def _key32(value: Any) -> bytes:
    """A 32-byte key written as base64 (standard or URL-safe) or 64 hex digits."""
    if isinstance(value, SecretBytes):
        value = value.get_secret_value()
    if isinstance(value, bytes) and len(value) == 32:
        return value
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[0-9A-Fa-f]{64}", text):
            return bytes.fromhex(text)
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) == 32:
            return raw
    # Never echo the value: it is a key.
    raise ValueError("must be 32 bytes in base64 (e.g. from `openssl rand -base64 32`)")


Key32 = Annotated[SecretBytes, BeforeValidator(lambda v: SecretBytes(_key32(v)))]
MatrixUserId = Annotated[str, PlainValidator(_matrix_user_id)]
ServerName = Annotated[str, PlainValidator(_server_name)]
DomainName = Annotated[str, PlainValidator(_domain)]
#: A plain string (not pydantic's `HttpUrl`), without a trailing slash.
HttpUrl = Annotated[str, PlainValidator(_http_url)]
EmailAddress = Annotated[str, PlainValidator(_email_address)]


def resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Make a relative path relative to the configuration file's directory."""
    path = value.expanduser()
    if not path.is_absolute():
        base = (info.context or {}).get("base_dir") or Path.cwd()
        path = Path(base) / path
    return Path(os.path.normpath(path))


ConfigPath = Annotated[Path, AfterValidator(resolve_path)]
