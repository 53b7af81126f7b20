"""`jitsi:` video meetings for `!video`, with optional JWT authentication."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, SecretStr, model_validator

from bridge.config.errors import FieldProblem
from bridge.config.section import Section
from bridge.config.values import DomainName, Duration


class JitsiJwt(Section):
    """Token authentication for a Jitsi that requires it (prosody `token_verification`)."""

    app_id: str = Field(min_length=1)
    secret: SecretStr = Field(min_length=16)
    audience: str = "jitsi"
    lifetime: Duration = timedelta(hours=2)


class Jitsi(Section):
    """Video meetings; without a domain `!video` is off."""

    domain: DomainName | None = None
    jwt: JitsiJwt | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Jitsi:
        if self.jwt is not None and self.domain is None:
            raise FieldProblem("domain", "is required when jwt is set")
        return self
