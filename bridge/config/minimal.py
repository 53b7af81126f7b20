"""The smallest valid configuration, for tests of other modules.

`minimal_config(**overrides)` builds a valid `Config`; `minimal_config_dict` gives the
same tree as a plain dict, to change further or to write out as YAML.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping
from typing import Any

from bridge.config.loading import parse_config
from bridge.config.root import Config
from bridge.config.secrets import hash_token

#: The admin token whose hash MINIMAL_CONFIG holds (the HTTP API is on by default, and an API
#: without a token is refused).
MINIMAL_ADMIN_TOKEN = "test-admin-token-0123456789abcdefghij"

#: The smallest valid configuration, as a dict. Its keys are fixed and public: for tests only.
MINIMAL_CONFIG: dict[str, Any] = {
    "homeserver": {"url": "http://127.0.0.1:8008", "server_name": "localhost"},
    "bot": {
        "user_id": "@confidant:localhost",
        "password": "test-bot-password",
        "pickle_key": "test-pickle-key-0123456789",
    },
    "audit": {
        "content_keys": {"k1": base64.b64encode(bytes(range(32))).decode()},
        "signing_key": base64.b64encode(bytes(range(32, 64))).decode(),
    },
    "http": {"admin_tokens": [hash_token(MINIMAL_ADMIN_TOKEN)]},
}


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def minimal_config_dict(**overrides: Any) -> dict[str, Any]:
    """A fresh copy of `MINIMAL_CONFIG` with `overrides` merged in, section by section."""
    return _merge(copy.deepcopy(MINIMAL_CONFIG), overrides)


def minimal_config(**overrides: Any) -> Config:
    """A valid `Config` for tests: `MINIMAL_CONFIG` with `overrides` merged in.

    For example `minimal_config(data_dir=tmp_path, practice={"timezone": "Europe/Berlin"})`.
    Nested mappings merge; other values replace. Raises `ConfigError` like `parse_config`.
    """
    return parse_config(minimal_config_dict(**overrides), "minimal_config", env={})
