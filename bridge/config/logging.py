"""`logging:` log level and format (logs carry ids, kinds and counts, never content)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import field_validator

from bridge.config.section import Section


class LoggingSettings(Section):
    """Log level and format."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["json", "text"] = "text"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value
