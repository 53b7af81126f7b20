"""`http:` the admin HTTP API and metrics: where it listens and the hashes of its admin tokens."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, PlainValidator

from bridge.config.secrets import is_token_hash, verify_token
from bridge.config.section import Section


def _admin_token(value: Any) -> str:
    if not isinstance(value, str) or not is_token_hash(value):
        # Never echo the value: it may be a real token.
        raise ValueError(
            "is not a token hash; store 'sha256:<hex>' as printed by `confidant hash-token`, "
            "never the token itself"
        )
    return value


def _public_url(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise ValueError("give the address people open, e.g. https://confidant.example.org")
    return value.rstrip("/")


class Http(Section):
    """The admin HTTP API (and metrics)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=1, le=65535)
    admin_tokens: tuple[Annotated[str, PlainValidator(_admin_token)], ...] = ()
    #: The address people open the dashboard at (behind a reverse proxy, its https URL);
    #: unset, http://host:port. Sign-in links from `!dashboard` are built on it.
    public_url: Annotated[str | None, PlainValidator(_public_url)] = None

    def token_ok(self, token: str) -> bool:
        """Tell whether a presented bearer token is one of the admin tokens."""
        return verify_token(token, self.admin_tokens)
