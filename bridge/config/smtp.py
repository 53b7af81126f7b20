"""`smtp:` inbound e-mail.

An SMTP server that turns mail to a pair's address into a message in the pair's room.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from bridge.config.email_replies import EmailReplies
from bridge.config.errors import FieldProblem
from bridge.config.section import Section
from bridge.config.values import ConfigPath, DomainName


class InboundSmtp(Section):
    """The SMTP server that accepts e-mail for pairs."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8025, ge=1, le=65535)
    inbound_domain: DomainName | None = None
    tls_cert: ConfigPath | None = None
    tls_key: ConfigPath | None = None
    require_starttls: bool = False
    auth_users: dict[str, SecretStr] = Field(default_factory=dict)
    max_message_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    sender_auth: Literal["direct", "behind_mta"] = "direct"
    authserv_id: str | None = None
    replies: EmailReplies = Field(default_factory=EmailReplies)

    @model_validator(mode="after")
    def _consistent(self) -> InboundSmtp:
        if (self.tls_cert is None) != (self.tls_key is None):
            missing = "tls_key" if self.tls_key is None else "tls_cert"
            raise FieldProblem(missing, "tls_cert and tls_key must be set together")
        if self.require_starttls and self.tls_cert is None:
            raise FieldProblem("require_starttls", "needs tls_cert and tls_key")
        if self.sender_auth == "behind_mta" and not self.authserv_id:
            raise FieldProblem(
                "authserv_id",
                "is required with sender_auth: behind_mta "
                "(the authserv-id your MTA writes in Authentication-Results)",
            )
        if self.replies.enabled and not self.enabled:
            raise FieldProblem("replies", "needs smtp.enabled: true (replies come back by mail)")
        if self.enabled:
            if self.auth_users and self.tls_cert is None:
                # aiosmtpd offers AUTH only after STARTTLS; the listener refuses to start.
                raise FieldProblem(
                    "auth_users",
                    "SMTP AUTH needs STARTTLS: set tls_cert and tls_key, or auth_users: {}",
                )
            if self.inbound_domain is None:
                raise FieldProblem("inbound_domain", "is required when smtp is enabled")
            for key in ("tls_cert", "tls_key"):
                path = getattr(self, key)
                if path is not None and not os.access(path, os.R_OK):
                    raise FieldProblem(key, f"cannot read {path}")
        return self
