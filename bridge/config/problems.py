"""Validation errors turned into one-line problems at the key path a user would edit.

Pydantic's messages are reworded ("must be ..."), unknown keys get a close match or the
list of allowed ones, and values at secret keys are never repeated.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Annotated, Any

from pydantic import BaseModel, ValidationError

from bridge.config.errors import FieldProblem
from bridge.config.root import Config
from bridge.config.secrets import KeyPath

# Values at these keys are never repeated in error messages.
_SECRET_KEYS = frozenset(
    {"password", "access_token", "pickle_key", "secret", "content_keys", "signing_key",
     "auth_users", "admin_tokens", "url"}
)  # fmt: skip

_SHOULD = re.compile(r"^(?:Input|String|List|Value|Dictionary|Tuple|Set|Object|Data) should ")


def validation_problems(
    exc: ValidationError, prefix: KeyPath = (), kinds: frozenset[str] | None = None
) -> list[tuple[KeyPath, str]]:
    """Each error of `exc` (of the given `kinds`, or all) as a key path and a message.

    `prefix` is the path of the model that was validated, when it is not the whole `Config`.
    """
    out: list[tuple[KeyPath, str]] = []
    for error in exc.errors():
        if kinds is not None and error["type"] not in kinds:
            continue
        loc: KeyPath = (*prefix, *(part for part in error["loc"] if part != "[key]"))
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, FieldProblem):
            out.append(((*loc, *cause.key), cause.message))
            continue
        out.append((loc, _describe(error, loc)))
    return out


def _describe(error: Any, loc: KeyPath) -> str:
    kind, message, value = error["type"], error["msg"], error.get("input")
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    if kind == "missing":
        return "is required"
    if kind in ("value_error", "assertion_error"):
        return re.sub(r"^(?:Value error|Assertion failed), ", "", message)
    message = _SHOULD.sub("must ", message)
    message = message[:1].lower() + message[1:]
    secret = any(part in _SECRET_KEYS for part in loc if isinstance(part, str))
    if kind == "string_type" and isinstance(value, int | float | bool):
        message += "; put the value in quotes"
    if not secret and isinstance(value, str | int | float | bool) and len(repr(value)) <= 60:
        message += f" (got {value!r})"
    return message


def _unknown_key(loc: KeyPath) -> str:
    allowed = _fields_at(loc[:-1])
    if not allowed:
        return "unknown key"
    guess = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    if guess:
        return f"unknown key; did you mean {guess[0]!r}?"
    return f"unknown key (expected one of: {', '.join(allowed)})"


def _fields_at(loc: KeyPath) -> list[str] | None:
    """The keys the model at `loc` accepts, found by walking the model annotations."""
    current: Any = Config
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        elif typing.get_origin(current) in (list, tuple):
            current = typing.get_args(current)[0]
        else:
            return None
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation
