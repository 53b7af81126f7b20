"""Logging for the whole process: one handler on the root logger, text or JSON lines.

Logs carry ids, kinds and counts. As a last guard, `ContentGuard` drops any record whose
`extra={...}` carries a field that would hold message content, a subject or a secret.
"""

from __future__ import annotations

import json
import logging
import sys
from collections import Counter
from datetime import UTC, datetime
from typing import IO, Any

#: Field names that must never reach a log line (compared case-insensitively).
FORBIDDEN_FIELDS = frozenset(
    {
        "body",
        "formatted_body",
        "content",
        "subject",
        "text",
        "html",
        "plaintext",
        "password",
        "access_token",
        "pickle_key",
        "secret",
        "token",
    }
)

#: Libraries capped at a level whatever the configured one: they are chatty, and nio,
#: peewee (nio's store), aiosqlite, dkim and aiosmtpd can log event content, SQL
#: parameters, message headers or addresses at DEBUG.
LIBRARY_LEVELS = {
    "nio": logging.WARNING,
    "peewee": logging.WARNING,
    "aiosqlite": logging.WARNING,
    "asyncpg": logging.WARNING,
    "mail.log": logging.WARNING,
    "dkim": logging.WARNING,
    "apscheduler": logging.WARNING,
    "aiohttp.access": logging.WARNING,
    "PIL": logging.WARNING,
    "pydub": logging.WARNING,
    "urllib3": logging.WARNING,
}

# Attributes every LogRecord has; anything else came in through `extra=`.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}


def record_extras(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a caller passed with `extra={...}`."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}


class ContentGuard(logging.Filter):
    """Drop records whose extras carry content-like or secret fields; count what was dropped."""

    def __init__(self, forbidden: frozenset[str] = FORBIDDEN_FIELDS) -> None:
        super().__init__()
        self.forbidden = frozenset(name.lower() for name in forbidden)
        #: Dropped records by logger name (the only trace they leave).
        self.dropped: Counter[str] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        if any(key.lower() in self.forbidden for key in record_extras(record)):
            self.dropped[record.name] += 1
            return False
        return True


def _iso(created: float) -> str:
    stamp = datetime.fromtimestamp(created, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, any extras, and exc if raised."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record_extras(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`ts LEVEL logger: msg key=value ...` for people reading a terminal or journal."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_iso(record.created)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        extras = record_extras(record)
        if extras:
            line += " " + " ".join(f"{key}={value}" for key, value in extras.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + record.stack_info
        return line


class _ConfidantHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler `setup_logging` installed, so a second call replaces it."""


def setup_logging(level: str, fmt: str, stream: IO[str] | None = None) -> ContentGuard:
    """Send all logging to `stream` (default stderr) at `level`, as `fmt` ("json" or "text").

    Calling it again replaces the previous setup. Returns the installed `ContentGuard`.
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    if fmt not in ("json", "text"):
        raise ValueError(f"unknown log format {fmt!r}: use json or text")
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _ConfidantHandler)]:
        root.removeHandler(old)
        old.close()
    handler = _ConfidantHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    guard = ContentGuard()
    # On the handler, not a logger: handler filters see records from every logger.
    handler.addFilter(guard)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name, cap in LIBRARY_LEVELS.items():
        logging.getLogger(name).setLevel(max(numeric, cap))
    logging.captureWarnings(True)
    return guard
