"""Reading what a request sends: JSON bodies, Matrix user ids, dates, durations.

Anything malformed is a `bad_request` whose detail names the field and the form it takes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Container
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp import web

from bridge.config import parse_duration
from bridge.core.language import LANGUAGES, parse_language
from bridge.ports import DEFAULT_VALIDITY
from bridge.web.errors import ApiError

_USER_ID = re.compile(r"@[\x21-\x39\x3b-\x7e]+:[A-Za-z0-9.\-\[\]:]+")


#: Deepest nesting of arrays and objects a JSON body may have; no request needs more than a few.
MAX_JSON_DEPTH = 32


def json_depth_exceeds(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Tell whether JSON `text` nests arrays/objects deeper than `limit` (strings skipped).

    Checked before parsing: the parser recurses once per level and fails with a
    RecursionError, not a ValueError, on a body nested thousands deep.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; `bad_request` when it is not one or nests too deeply."""
    try:
        text = await request.text()
    except UnicodeDecodeError:
        raise ApiError("bad_request", "the body must be a JSON object in UTF-8") from None
    if json_depth_exceeds(text):
        raise ApiError("bad_request", f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        raise ApiError("bad_request", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError("bad_request", "the body must be a JSON object")
    return body


def user_id(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not _USER_ID.fullmatch(value):
        raise ApiError("bad_request", f"{key} must be a Matrix user id like '@name:example.org'")
    return value


def local_user_id(body: dict[str, Any], key: str, server_name: str, federate: bool) -> str:
    """A user id that must be on the practice's homeserver unless the practice federates.

    Pair rooms are created with `m.federate: false` by default: an account of another
    server could be invited but never join, so it is refused here with a clear answer.
    """
    value = user_id(body, key)
    if not federate and value.split(":", 1)[1].lower() != server_name.lower():
        raise ApiError(
            "foreign_user", f"{key} must be an account on {server_name} (practice.federate is off)"
        )
    return value


def optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise ApiError("bad_request", f"{key} must be a string")
    return value


def language_choice(body: dict[str, Any]) -> str | None:
    """The body's optional `language` (one the texts exist in); None: the practice's."""
    value = body.get("language")
    if value is None:
        return None
    language = parse_language(value) if isinstance(value, str) else None
    if language is None:
        raise ApiError("bad_request", f"language must be one of {', '.join(LANGUAGES)}, or null")
    return language


def policy_name(body: dict[str, Any], known: Container[str]) -> str:
    """The body's `policy` (default "default"); `unknown_policy` unless it is in `known`."""
    policy = body.get("policy", "default")
    if not isinstance(policy, str) or policy not in known:
        raise ApiError("unknown_policy")
    return policy


def valid_for(body: dict[str, Any]) -> timedelta:
    """An invitation's validity: seconds or a duration like '7d' (default 7 days)."""
    value = body.get("valid_for")
    if value is None:
        return DEFAULT_VALIDITY
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            result = timedelta(seconds=value)
        else:
            result = parse_duration(value)
    except ValueError:
        result = timedelta(0)
    if result <= timedelta(0):
        raise ApiError("bad_request", "valid_for must be seconds or a duration like '7d'")
    return result


def date_param(request: web.Request, key: str, default: date) -> date:
    text = request.query.get(key)
    if text is None:
        return default
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ApiError("bad_request", f"{key} must be a date YYYY-MM-DD") from None


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def optional_day(request: web.Request, key: str) -> datetime | None:
    """The start (UTC) of the day in query parameter `key`, or None without it."""
    if key not in request.query:
        return None
    return day_start(date_param(request, key, date.today()))
