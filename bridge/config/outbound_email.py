"""`outbound_email:` the practice's relay for invitations and notices without clinical content."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from bridge.config.errors import FieldProblem
from bridge.config.section import Section
from bridge.config.values import EmailAddress, OptionalDuration


class OutboundEmail(Section):
    """The practice's SMTP relay for invitations and notices (never clinical content)."""

    enabled: bool = False
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    from_address: EmailAddress | None = None
    notify_unread_after: OptionalDuration = None

    @model_validator(mode="after")
    def _consistent(self) -> OutboundEmail:
        if (self.username is None) != (self.password is None):
            missing = "password" if self.password is None else "username"
            raise FieldProblem(missing, "username and password must be set together")
        if self.password is not None and self.security == "none":
            raise FieldProblem("security", "is 'none', which would send the password in clear")
        if self.enabled:
            if not self.host:
                raise FieldProblem("host", "is required when outbound_email is enabled")
            if self.from_address is None:
                raise FieldProblem("from_address", "is required when outbound_email is enabled")
        return self

    @property
    def effective_port(self) -> int:
        """The port to use: the configured one, else the usual one for `security`."""
        if self.port is not None:
            return self.port
        return {"starttls": 587, "tls": 465, "none": 25}[self.security]
