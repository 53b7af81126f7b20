"""`bot:` the Matrix account Confidant logs in as, and the witness device that checks its posts."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, SecretStr, model_validator

from bridge.config.errors import FieldProblem
from bridge.config.section import Section
from bridge.config.values import Duration, MatrixUserId


class Witness(Section):
    """The self-check: a second device of the bot account must read every post the bot makes."""

    #: None: on when the bot logs in with a password (only a password login makes a device).
    enabled: bool | None = None
    #: How long a post may take to become readable on the witness before it is repaired.
    deadline: Duration = timedelta(seconds=30)
    device_name: str = Field(default="Confidant witness", min_length=1)


class Bot(Section):
    """The bot account Confidant logs in as."""

    user_id: MatrixUserId
    password: SecretStr | None = None
    access_token: SecretStr | None = None
    device_name: str = Field(default="Confidant", min_length=1)
    display_name: str = Field(default="Confidant", min_length=1)
    pickle_key: SecretStr = Field(min_length=16)
    witness: Witness = Witness()

    @model_validator(mode="after")
    def _credentials(self) -> Bot:
        for key in ("password", "access_token"):
            secret = getattr(self, key)
            if secret is not None and not secret.get_secret_value().strip():
                # An empty string would fail only at the first login, inside `run`.
                raise FieldProblem(key, "is empty; set it, or null to leave it out")
        if self.password is None and self.access_token is None:
            raise FieldProblem("password", "is required unless bot.access_token is set")
        if self.witness.enabled and self.password is None:
            raise FieldProblem(
                "witness.enabled",
                "needs bot.password: the witness is a second login of the bot account",
            )
        return self

    @property
    def witness_on(self) -> bool:
        """Whether the self-check runs (explicitly on, or by default with a password)."""
        if self.witness.enabled is None:
            return self.password is not None
        return self.witness.enabled
