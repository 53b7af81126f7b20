"""What can be wrong with a configuration, and how it is reported.

A `ConfigError` carries `ConfigProblem`s, each at a key path; validators raise
`FieldProblem` to name a key below the one they validate.
"""

from __future__ import annotations

from typing import NamedTuple

from bridge.config.secrets import KeyPath


class ConfigProblem(NamedTuple):
    """One thing wrong in the configuration, at a key path (empty for the whole file)."""

    path: str
    message: str

    def line(self, source: str) -> str:
        """Render as `<file>: <key.path>: <what is wrong>`."""
        return (
            f"{source}: {self.path}: {self.message}" if self.path else f"{source}: {self.message}"
        )


class ConfigError(Exception):
    """The configuration cannot be used; `str()` is one line naming the first problem."""

    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        if not problems:
            raise ValueError("a ConfigError needs at least one problem")
        self.source = source
        self.problems = problems
        super().__init__(self.summary())

    def summary(self) -> str:
        """The first problem on one line, with a count of the others."""
        text = self.problems[0].line(self.source)
        more = len(self.problems) - 1
        return f"{text} (+{more} more)" if more else text

    def lines(self) -> list[str]:
        """Every problem, one line each (for a command that wants to show them all)."""
        return [problem.line(self.source) for problem in self.problems]

    def __str__(self) -> str:
        return self.summary()


class UnknownPolicyError(LookupError):
    """A pair refers to a policy name the configuration does not define."""


class FieldProblem(ValueError):
    """A validator's complaint about a key below the field being validated.

    Cross-field checks raise it so the error names the key at fault (for example
    `audit.current_key_id`) rather than the section that holds it.
    """

    def __init__(self, key: str | KeyPath, message: str) -> None:
        super().__init__(message)
        self.key: KeyPath = tuple(key.split(".")) if isinstance(key, str) else key
        self.message = message
