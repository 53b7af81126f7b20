"""Secrets in the configuration: `${ENV}` and `file:` references, placeholders, admin tokens.

The loader calls `resolve_references` on the raw YAML tree before validation, so every
later step sees plain values; problems come back with the key path they belong to.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

#: Every secret in config.example.yaml starts with this; such a value is never accepted.
PLACEHOLDER_PREFIX = "CHANGE-ME"

#: Prefix of a value whose content is read from a file (relative to the config's directory).
FILE_PREFIX = "file:"

TOKEN_HASH_PREFIX = "sha256:"

_ENV_REF = re.compile(r"\$\$|\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOKEN_HASH = re.compile(r"sha256:[0-9a-f]{64}")

KeyPath = tuple[str | int, ...]
Problem = tuple[KeyPath, str]


def format_path(path: Iterable[str | int]) -> str:
    """Render a key path the way a user would point at it: `http.admin_tokens[0]`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def resolve_references(
    data: Any, env: Mapping[str, str], base_dir: Path
) -> tuple[Any, list[Problem]]:
    """Return `data` with `${NAME}` and `file:` references replaced, plus any problems.

    `${NAME}` may appear anywhere in a string (`$$` is a literal `$`); a value that is
    exactly `file:PATH` is replaced by the stripped content of that file. A value that is,
    or resolves to, a `CHANGE-ME` placeholder is reported. Unresolvable values are left
    as written so validation can continue around them.
    """
    problems: list[Problem] = []

    def walk(node: Any, path: KeyPath) -> Any:
        if isinstance(node, dict):
            return {key: walk(value, (*path, str(key))) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(value, (*path, index)) for index, value in enumerate(node)]
        if isinstance(node, str):
            return _resolve_string(node, path, env, base_dir, problems)
        return node

    return walk(data, ()), problems


def _resolve_string(
    value: str, path: KeyPath, env: Mapping[str, str], base_dir: Path, problems: list[Problem]
) -> str:
    if value.startswith(PLACEHOLDER_PREFIX):
        problems.append((path, "is the placeholder from config.example.yaml; set a secret"))
        return value
    origin = ""
    if value.startswith(FILE_PREFIX):
        file_path = Path(value[len(FILE_PREFIX) :].strip()).expanduser()
        if not file_path.is_absolute():
            file_path = base_dir / file_path
        try:
            resolved = file_path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            problems.append((path, f"cannot read secret file {file_path}: {reason}"))
            return value
        if not resolved:
            problems.append((path, f"secret file {file_path} is empty"))
            return value
        origin = f" (read from {file_path})"
    else:
        missing: list[str] = []

        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name = match.group(1)
            if not _ENV_NAME.fullmatch(name):
                missing.append(f"'${{{name}}}' is not a valid environment variable reference")
                return match.group(0)
            if name not in env:
                missing.append(f"environment variable {name} is not set")
                return match.group(0)
            return env[name]

        if "$" not in value:
            return value
        resolved = _ENV_REF.sub(substitute, value)
        if missing:
            problems.append((path, missing[0]))
            return value
        names = [m.group(1) for m in _ENV_REF.finditer(value) if m.group(1)]
        origin = f" (from ${names[0]})" if names else ""
    if resolved.startswith(PLACEHOLDER_PREFIX):
        problems.append(
            (path, f"is the placeholder from config.example.yaml{origin}; set a secret")
        )
        return value
    return resolved


def hash_token(token: str) -> str:
    """Return the form of an admin token kept in the config: `sha256:<hex>`.

    Admin tokens are long random strings, so a fast hash is enough: nobody can guess
    the preimage, and the config no longer holds anything that grants access.
    """
    if not token:
        raise ValueError("an admin token must not be empty")
    return TOKEN_HASH_PREFIX + hashlib.sha256(token.encode("utf-8")).hexdigest()


def is_token_hash(value: str) -> bool:
    """Tell whether `value` has the `sha256:<64 lowercase hex>` shape of `hash_token`."""
    return _TOKEN_HASH.fullmatch(value) is not None


def verify_token(token: str, hashes: Iterable[str]) -> bool:
    """Tell whether `token` matches one of `hashes`, comparing every one in constant time."""
    if not token:
        return False
    candidate = hash_token(token).encode("ascii")
    found = False
    for stored in hashes:
        # No early exit: the time taken does not tell which entry matched.
        found |= hmac.compare_digest(candidate, stored.encode("ascii", "replace"))
    return found
