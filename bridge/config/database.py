"""`database:` where pairs, SLA clocks, sessions, the outbox and the audit log are kept."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator

from bridge.config.section import Section
from bridge.config.values import resolve_path


class Database(Section):
    """Where state lives: SQLite (default: a file in data_dir) or PostgreSQL."""

    # Not shown in repr: a PostgreSQL URL may carry a password.
    url: str | None = Field(default=None, repr=False)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if value.startswith(("postgresql://", "postgres://")):
            if not urlsplit(value).netloc:
                raise ValueError("a PostgreSQL URL looks like postgresql://user@host/dbname")
            # Both schemes name the same thing (libpq and asyncpg take either); keep one.
            return "postgresql://" + value.split("://", 1)[1]
        path_text = value.removeprefix("sqlite://") if value.startswith("sqlite://") else value
        if "://" in path_text or not path_text or path_text == ":memory:":
            raise ValueError(
                "must be a SQLite file path (relative to the config file) or postgresql://..."
            )
        # Normal form: sqlite:// followed by an absolute path.
        return "sqlite://" + str(resolve_path(Path(path_text), info))
