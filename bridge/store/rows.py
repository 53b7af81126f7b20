"""Typed reads of what a backend returns: each column as its declared type.

A backend hands back what its driver decoded, typed `object`. For the column types
the migrations use that is `str` (TEXT), `int` (INTEGER, BIGINT), `bytes` (BLOB,
BYTEA) or None (NULL), on SQLite and PostgreSQL alike. These functions check a value
against the column's type and return it as that type; any other value means the schema
and the code disagree, and raises StoreError naming the column and the type found,
never the value (it may be clinical).

    PairRecord(pair_id=text(row, "pair_id"), removed_at=integer_or_none(row, "removed_at"))
    count = to_int_or_none(await ex.fetchval("SELECT COUNT(*) FROM outbox")) or 0
"""

from __future__ import annotations

import json
from typing import Any

from bridge.store.base import Row, StoreError

__all__ = [
    "Row",
    "blob",
    "blob_or_none",
    "integer",
    "integer_or_none",
    "json_list",
    "json_object",
    "text",
    "text_or_none",
    "to_bytes",
    "to_bytes_or_none",
    "to_int",
    "to_int_or_none",
    "to_str",
    "to_str_or_none",
]


def _mismatch(expected: str, value: object, column: str | None) -> StoreError:
    where = "value" if column is None else f"column {column!r}"
    return StoreError(f"{where}: expected {expected}, found {type(value).__name__}")


# ---------------------------------------------------------------- single values


def to_int(value: object, column: str | None = None) -> int:
    """An INTEGER or BIGINT value that is never NULL."""
    if isinstance(value, int):
        return value
    raise _mismatch("an integer", value, column)


def to_int_or_none(value: object, column: str | None = None) -> int | None:
    """An INTEGER or BIGINT value, or None for NULL (or for no row, from `fetchval`)."""
    return None if value is None else to_int(value, column)


def to_str(value: object, column: str | None = None) -> str:
    """A TEXT value that is never NULL."""
    if isinstance(value, str):
        return value
    raise _mismatch("text", value, column)


def to_str_or_none(value: object, column: str | None = None) -> str | None:
    """A TEXT value, or None for NULL (or for no row, from `fetchval`)."""
    return None if value is None else to_str(value, column)


def to_bytes(value: object, column: str | None = None) -> bytes:
    """A BLOB (BYTEA) value that is never NULL, as immutable bytes."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise _mismatch("bytes", value, column)


def to_bytes_or_none(value: object, column: str | None = None) -> bytes | None:
    """A BLOB (BYTEA) value, or None for NULL (or for no row, from `fetchval`)."""
    return None if value is None else to_bytes(value, column)


# ---------------------------------------------------------------- columns of a row


def integer(row: Row, column: str) -> int:
    """The row's NOT NULL INTEGER or BIGINT column."""
    return to_int(row[column], column)


def integer_or_none(row: Row, column: str) -> int | None:
    """The row's nullable INTEGER or BIGINT column."""
    return to_int_or_none(row[column], column)


def text(row: Row, column: str) -> str:
    """The row's NOT NULL TEXT column."""
    return to_str(row[column], column)


def text_or_none(row: Row, column: str) -> str | None:
    """The row's nullable TEXT column."""
    return to_str_or_none(row[column], column)


def blob(row: Row, column: str) -> bytes:
    """The row's NOT NULL BLOB column."""
    return to_bytes(row[column], column)


def blob_or_none(row: Row, column: str) -> bytes | None:
    """The row's nullable BLOB column."""
    return to_bytes_or_none(row[column], column)


# ---------------------------------------------------------------- JSON text


def json_object(document: str | bytes, column: str | None = None) -> dict[str, Any]:
    """A JSON object stored as TEXT (or inside a sealed BLOB), decoded.

    The values stay `Any`: they are whatever the document holds (strings, numbers,
    nested objects), as `json.loads` returns them; only the outer object is checked.
    """
    decoded: object = json.loads(document)
    if not isinstance(decoded, dict):
        raise _mismatch("a JSON object", decoded, column)
    # json.loads gives str keys to every object it decodes.
    return decoded


def json_list(document: str, column: str | None = None) -> list[object]:
    """A JSON array stored as TEXT, decoded; its items are checked by the caller."""
    decoded: object = json.loads(document)
    if not isinstance(decoded, list):
        raise _mismatch("a JSON array", decoded, column)
    return decoded
