"""The base of every configuration section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A configuration section: immutable, and unknown keys are errors (typos are caught)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
