"""`audit:` keys for the audit log: content encryption (rotating) and checkpoint signing."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from bridge.config.errors import FieldProblem
from bridge.config.section import Section
from bridge.config.values import NAME_RE, Key32


class Audit(Section):
    """Keys for the audit log: content encryption (rotating) and checkpoint signing."""

    content_keys: dict[str, Key32] = Field(min_length=1)
    current_key_id: str | None = None
    signing_key: Key32
    checkpoint_every: int = Field(default=1000, ge=1)

    @field_validator("content_keys", mode="before")
    @classmethod
    def _key_ids(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for key_id in value:
                if not isinstance(key_id, str) or not NAME_RE.fullmatch(key_id):
                    raise ValueError(
                        f"key id {key_id!r} must be 1-64 letters, digits, '-', '_' or '.'"
                    )
        return value

    @model_validator(mode="before")
    @classmethod
    def _default_current(cls, data: Any) -> Any:
        # With a single key there is nothing to choose: it is the current one.
        if isinstance(data, dict) and data.get("current_key_id") is None:
            keys = data.get("content_keys")
            if isinstance(keys, dict) and len(keys) == 1:
                data = {**data, "current_key_id": next(iter(keys))}
        return data

    @model_validator(mode="after")
    def _current_known(self) -> Audit:
        if self.current_key_id is None:
            raise FieldProblem("current_key_id", "is required when there is more than one key")
        if self.current_key_id not in self.content_keys:
            known = ", ".join(sorted(self.content_keys))
            raise FieldProblem(
                "current_key_id", f"{self.current_key_id!r} is not in content_keys ({known})"
            )
        return self

    @property
    def keys(self) -> dict[str, bytes]:
        """Every content key by id, as raw bytes (old ones stay to open old entries)."""
        return {key_id: key.get_secret_value() for key_id, key in self.content_keys.items()}

    def current_key(self) -> tuple[str, bytes]:
        """The id and bytes of the key new content is sealed with."""
        assert self.current_key_id is not None
        return self.current_key_id, self.content_keys[self.current_key_id].get_secret_value()

    def signing_seed(self) -> bytes:
        """The 32-byte Ed25519 seed that signs checkpoints."""
        return self.signing_key.get_secret_value()
