"""The one catalogue of errors the web face answers with, and the middleware that uses it.

Every JSON error is `{error, message, detail?}` with `error` a key of `ERRORS`, so a client
sees one small, named set. Exceptions from the layers below (a pair that does not exist,
an invitation the homeserver refuses, a mail relay that fails) become one of them here,
and nowhere else. `detail` never carries message content.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bridge.adapters.mailer import MailError
from bridge.adapters.matrix.rest import MatrixError
from bridge.ports import AdminUnavailable, OnboardingError
from bridge.provision import PairError

log = logging.getLogger(__name__)

#: Every error the API answers with: code -> (HTTP status, what happened and what to do).
ERRORS: dict[str, tuple[int, str]] = {
    "unauthorized": (401, "Send a valid admin token as 'Authorization: Bearer <token>'."),
    "forbidden": (403, "This request was refused; reload the page and try again."),
    "not_found": (404, "There is nothing at this path; see /api/v1/openapi.json."),
    "pair_not_found": (404, "No such pair; give a pair id, label or room id."),
    "method_not_allowed": (405, "This path does not take that method."),
    "bad_request": (400, "The request is not valid."),
    "foreign_user": (
        422,
        "Patients and therapists need accounts on the practice's homeserver; detail says which.",
    ),
    "no_account": (
        422,
        "That account does not exist on the homeserver; invite a patient by e-mail instead "
        "(POST /api/v1/invitations); detail says which.",
    ),
    "unknown_policy": (400, "No policy of that name; see /api/v1/policies."),
    "conflict": (409, "The pair is not in a state that allows this."),
    "too_large": (413, "The upload is larger than the bridge accepts."),
    "bad_audio": (422, "The audio cannot become a voice message."),
    "invitation_not_found": (404, "No such invitation; see /api/v1/invitations."),
    "invitation_refused": (409, "The invitation cannot be changed that way; detail says why."),
    "too_many_requests": (
        429,
        "Sent too often lately; try again after the seconds in Retry-After.",
    ),
    "email_off": (409, "Outbound e-mail is not enabled; give the patient the code yourself."),
    "mail_failed": (502, "The mail relay did not take the e-mail; try again later."),
    "homeserver_refused": (
        502,
        "The homeserver refused what the bridge asked; detail gives its error code.",
    ),
    "unavailable": (503, "The bridge is not running yet; try again shortly."),
    "admin_unavailable": (
        503,
        "The homeserver's admin API cannot be used for invitations; detail says what to do.",
    ),
    "internal": (500, "Something failed inside the bridge; its log names the error."),
}


class ApiError(Exception):
    """An error answered as JSON: `code` is a key of ERRORS, `detail` says more (no PHI)."""

    def __init__(self, code: str, detail: str | None = None) -> None:
        assert code in ERRORS, code
        super().__init__(code)
        self.code = code
        self.detail = detail


def error_response(code: str, detail: str | None = None) -> web.Response:
    status, message = ERRORS[code]
    body: dict[str, Any] = {"error": code, "message": message}
    if detail:
        body["detail"] = detail
    headers = {"WWW-Authenticate": 'Bearer realm="confidant"'} if status == 401 else None
    return web.json_response(body, status=status, headers=headers)


def domain_error(err: Exception) -> str | None:
    """The code an exception from below the web face answers as (None: not one of them)."""
    if isinstance(err, PairError):
        return "pair_not_found" if str(err).startswith("no pair") else "conflict"
    # AdminUnavailable is an OnboardingError: the more precise one first.
    if isinstance(err, AdminUnavailable):
        return "admin_unavailable"
    if isinstance(err, OnboardingError):
        return "invitation_refused"
    if isinstance(err, MailError):
        return "mail_failed"
    if isinstance(err, MatrixError):
        return "homeserver_refused"
    return None


def domain_detail(err: Exception) -> str:
    """What an error from below may tell the client: no user ids or content from the homeserver."""
    if isinstance(err, MatrixError):
        return f"{err.status} {err.errcode}"
    return str(err)


_STATUS_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    400: "bad_request",
    413: "too_large",
}


def is_json_path(path: str) -> bool:
    """Paths whose errors are JSON; the dashboard's are short text pages."""
    return path.startswith("/api/") or path in ("/metrics", "/health")


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Turn every failure into one of ERRORS (JSON paths) or a short text page."""
    try:
        return await handler(request)
    except ApiError as err:
        if not is_json_path(request.path):
            return web.Response(status=ERRORS[err.code][0], text=ERRORS[err.code][1])
        return error_response(err.code, err.detail)
    except web.HTTPException as exc:
        if exc.status < 400 or not is_json_path(request.path):
            raise
        return error_response(_STATUS_CODES.get(exc.status, "bad_request"))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        code = domain_error(exc)
        if code is not None:
            return error_response(code, domain_detail(exc))
        route = request.match_info.route.resource
        log.error(
            "http handler failed",
            extra={
                "error": type(exc).__name__,
                "route": route.canonical if route else "?",
                "method": request.method,
            },
        )
        return error_response("internal")
