"""The admin HTTP API (/api/v1), the practice dashboard (/dashboard), /health and /metrics.

One `RouteTableDef` per area; authentication and errors are middlewares. Every JSON
error comes from `ERRORS`, so a client sees one small, named set of errors. The API
takes a bearer token (checked by `cfg.http.token_ok`, hashed in the config, constant
time); the dashboard takes the same token once in a login form and then holds a
session cookie (HttpOnly, SameSite=Strict), and every POST it serves carries a CSRF
token (double submit: form field and cookie, plus an Origin check).

No handler returns or logs message content; pairs are shown by label and Matrix ids.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from bridge import metrics
from bridge.adapters.listen import ListenError
from bridge.adapters.mailer import Mailer, MailError
from bridge.adapters.voice import AudioError, convert_to_voice_async
from bridge.audit.export import export_pair
from bridge.audit.log import AuditLog
from bridge.audit.verify import verify
from bridge.config import parse_duration
from bridge.core.audit import public_key_bytes
from bridge.core.sla import Clock
from bridge.core.sla_report import summarize
from bridge.onboarding import DEFAULT_VALIDITY, AdminUnavailable, Onboarding, OnboardingError
from bridge.provision import PairError
from bridge.store import clocks, invitations, pairs
from bridge.store.base import from_ms
from bridge.store.invitations import InvitationRecord, InvitationStatus
from bridge.store.pairs import PairRecord, PairStatus
from bridge.voice_feature import VOICE_LIMITS, queue_voice

if TYPE_CHECKING:
    from bridge.host import Host

log = logging.getLogger(__name__)

API = "/api/v1"
SESSION_COOKIE = "confidant_session"
CSRF_COOKIE = "confidant_csrf"
CSRF_FIELD = "csrf_token"
SESSION_LIFETIME = 8 * 3600
#: Paths anyone may read: liveness for load balancers and the API's own description.
PUBLIC_PATHS = frozenset({"/health", f"{API}/openapi.json"})

# ---------------------------------------------------------------- errors

#: Every error the API answers with: code -> (HTTP status, what happened and what to do).
ERRORS: dict[str, tuple[int, str]] = {
    "unauthorized": (401, "Send a valid admin token as 'Authorization: Bearer <token>'."),
    "forbidden": (403, "This request was refused; reload the page and try again."),
    "not_found": (404, "There is nothing at this path; see /api/v1/openapi.json."),
    "pair_not_found": (404, "No such pair; give a pair id, label or room id."),
    "method_not_allowed": (405, "This path does not take that method."),
    "bad_request": (400, "The request is not valid."),
    "unknown_policy": (400, "No policy of that name; see /api/v1/policies."),
    "conflict": (409, "The pair is not in a state that allows this."),
    "too_large": (413, "The upload is larger than the bridge accepts."),
    "bad_audio": (422, "The audio cannot become a voice message."),
    "invitation_not_found": (404, "No such invitation; see /api/v1/invitations."),
    "invitation_refused": (409, "The invitation cannot be changed that way; detail says why."),
    "email_off": (409, "Outbound e-mail is not enabled; give the patient the code yourself."),
    "mail_failed": (502, "The mail relay did not take the e-mail; try again later."),
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


_STATUS_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}


def _is_json_path(path: str) -> bool:
    return path.startswith("/api/") or path in ("/metrics", "/health")


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Turn every failure into one of ERRORS (JSON paths) or a short text page."""
    try:
        return await handler(request)
    except ApiError as err:
        if not _is_json_path(request.path):
            return web.Response(status=ERRORS[err.code][0], text=ERRORS[err.code][1])
        return error_response(err.code, err.detail)
    except PairError as err:
        code = "pair_not_found" if str(err).startswith("no pair") else "conflict"
        return error_response(code, str(err))
    except AdminUnavailable as err:
        return error_response("admin_unavailable", str(err))
    except OnboardingError as err:
        return error_response("invitation_refused", str(err))
    except MailError as err:
        return error_response("mail_failed", str(err))
    except web.HTTPException as exc:
        if exc.status < 400 or not _is_json_path(request.path):
            raise
        return error_response(_STATUS_CODES.get(exc.status, "bad_request"))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
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


def bearer_token(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Require the admin bearer token on the API and /metrics (the dashboard has sessions)."""
    path = request.path
    needs_token = (path.startswith("/api/") or path == "/metrics") and path not in PUBLIC_PATHS
    if needs_token and not request.app[SERVER_KEY].app.cfg.http.token_ok(bearer_token(request)):
        raise ApiError("unauthorized")
    return await handler(request)


# ---------------------------------------------------------------- helpers


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def _iso_ms(value: int | None) -> str | None:
    return _iso(from_ms(value)) if value is not None else None


def pair_json(record: PairRecord) -> dict[str, Any]:
    """A pair as the API shows it: ids and label; the patient's e-mail address stays out."""
    return {
        "pair_id": record.pair_id,
        "label": record.label,
        "patient_id": record.patient_id,
        "therapist_id": record.therapist_id,
        "room_id": record.room_id,
        "status": record.status.value,
        "policy": record.policy,
        "consent_state": record.consent_state,
        "has_patient_email": record.patient_email is not None,
        "created_at": _iso_ms(record.created_at),
        "removed_at": _iso_ms(record.removed_at),
    }


def invitation_json(record: InvitationRecord) -> dict[str, Any]:
    """An invitation as the API shows it: never its code (the registration token)."""
    return {
        "invitation_id": record.invitation_id,
        "email": record.email,
        "therapist_id": record.therapist_id,
        "policy": record.policy,
        "status": record.status.value,
        "created_at": _iso_ms(record.created_at),
        "expires_at": _iso_ms(record.expires_at),
        "sent_count": record.sent_count,
        "last_sent_at": _iso_ms(record.last_sent_at),
        "patient_id": record.patient_id,
        "pair_id": record.pair_id,
        "closed_at": _iso_ms(record.closed_at),
    }


def clock_json(clock: Clock, label: str | None, now: datetime) -> dict[str, Any]:
    return {
        "clock_id": clock.clock_id,
        "pair_id": clock.pair_id,
        "label": label,
        "therapist_id": clock.therapist_id,
        "policy": clock.policy,
        "opened_at": _iso(clock.opened_at),
        "due_at": _iso(clock.due_at),
        "heads_up_at": _iso(clock.heads_up_at),
        "escalate_at": _iso(clock.escalate_at),
        "overdue": clock.due_at < now,
        "paused": clock.paused_since is not None,
        "first_kind": clock.first_kind,
    }


_USER_ID = re.compile(r"@[\x21-\x39\x3b-\x7e]+:[A-Za-z0-9.\-\[\]:]+")


def _user_id(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not _USER_ID.fullmatch(value):
        raise ApiError("bad_request", f"{key} must be a Matrix user id like '@name:example.org'")
    return value


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise ApiError("bad_request", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError("bad_request", "the body must be a JSON object")
    return body


def _date_param(request: web.Request, key: str, default: date) -> date:
    text = request.query.get(key)
    if text is None:
        return default
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ApiError("bad_request", f"{key} must be a date YYYY-MM-DD") from None


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


# ---------------------------------------------------------------- the server


@dataclass
class HealthCheck:
    name: str
    ok: bool
    detail: str = ""


class HttpServer:
    """The aiohttp application bound to one host and port; `port` is the bound one."""

    def __init__(self, app: Host, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self.web_app = build_web_app(self)
        self._runner: web.AppRunner | None = None
        self.tally = metrics.AuditTally()
        #: Dashboard sessions: SHA-256 of the cookie -> expiry (monotonic seconds).
        self.sessions: dict[str, float] = {}

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        runner = web.AppRunner(self.web_app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.requested_port)
        try:
            await site.start()
        except OSError as err:
            await runner.cleanup()
            raise ListenError("http", self.host, self.requested_port, err) from err
        self._runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1]) if sockets else self.requested_port
        log.info("admin http listening", extra={"host": self.host, "port": self.port})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------ sessions

    def new_session(self) -> str:
        self._expire()
        cookie = secrets.token_urlsafe(32)
        self.sessions[_digest(cookie)] = time.monotonic() + SESSION_LIFETIME
        return cookie

    def session_ok(self, cookie: str | None) -> bool:
        if not cookie:
            return False
        expiry = self.sessions.get(_digest(cookie))
        return expiry is not None and expiry > time.monotonic()

    def end_session(self, cookie: str | None) -> None:
        if cookie:
            self.sessions.pop(_digest(cookie), None)

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, expiry in self.sessions.items() if expiry <= now]:
            del self.sessions[key]

    # ------------------------------------------------------------ health

    async def health(self) -> list[HealthCheck]:
        """Homeserver reachable, bot ready on it, database answering, SMTP listening (if
        enabled), sync lag."""
        app = self.app
        checks: list[HealthCheck] = []
        parts = app.parts
        if parts is None:
            return [HealthCheck("bridge", False, "not started")]
        try:
            await asyncio.wait_for(
                parts.rest.request("GET", "/_matrix/client/versions", retries=1), 5
            )
            checks.append(HealthCheck("homeserver", True))
        except Exception as exc:
            checks.append(HealthCheck("homeserver", False, type(exc).__name__))
        if app.matrix is not None:
            # Logged in, keys up, syncing and cross-signed; until then nothing is posted.
            checks.append(HealthCheck("matrix", app.matrix.ready.is_set(), app.matrix.detail))
        try:
            await asyncio.wait_for(parts.db.fetchval("SELECT 1"), 5)
            checks.append(HealthCheck("database", True, parts.db.dialect))
        except Exception as exc:
            checks.append(HealthCheck("database", False, type(exc).__name__))
        smtp = app.cfg.smtp
        if smtp.enabled:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(smtp.host, smtp.port), 5)
                writer.close()
                await writer.wait_closed()
                checks.append(HealthCheck("smtp", True))
            except (OSError, TimeoutError) as exc:
                checks.append(HealthCheck("smtp", False, type(exc).__name__))
        bot = app.bot
        if bot is not None:
            stats = bot.stats
            if not stats.last_sync_ok_at:
                checks.append(HealthCheck("sync", False, "no sync yet"))
            else:
                age = max(0.0, time.time() - stats.last_sync_ok_at)
                # A long-poll sync returns at least every 30 s; two missed rounds is a problem.
                checks.append(
                    HealthCheck(
                        "sync", age < 90, f"lag {stats.lag_seconds:.1f}s, last {age:.0f}s ago"
                    )
                )
        if app.selfcheck is not None:
            # Degraded while an unreadable post waits for its repair, or could not be repaired.
            ok, detail, _ = await app.selfcheck.health()
            checks.append(HealthCheck("witness", ok, detail))
        return checks


def _digest(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


SERVER_KEY = web.AppKey("server", HttpServer)


def _server(request: web.Request) -> HttpServer:
    return request.app[SERVER_KEY]


def _running(request: web.Request) -> Host:
    app = _server(request).app
    if app.parts is None:
        raise ApiError("unavailable")
    return app


def _now(app: Host) -> datetime:
    return app.service.clock() if app.service is not None else datetime.now(UTC)


# ---------------------------------------------------------------- ops: health, metrics

ops = web.RouteTableDef()


@ops.get("/health")
async def get_health(request: web.Request) -> web.Response:
    checks = await _server(request).health()
    ok = all(c.ok for c in checks)
    body: dict[str, Any] = {
        "status": "ok" if ok else "degraded",
        "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in checks},
    }
    app = _server(request).app
    if app.bot is not None:
        body["sync_lag_seconds"] = round(app.bot.stats.lag_seconds, 3)
    if app.selfcheck is not None:
        body["witness"] = (await app.selfcheck.health())[2]
    return web.json_response(body, status=200 if ok else 503)


@ops.get("/metrics")
async def get_metrics(request: web.Request) -> web.Response:
    app = _server(request).app
    snap = await metrics.gather(app, _now(app), _server(request).tally)
    return web.Response(body=metrics.render(snap), headers={"Content-Type": metrics.CONTENT_TYPE})


@ops.get(f"{API}/openapi.json")
async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(OPENAPI)


# ---------------------------------------------------------------- pairs

pair_routes = web.RouteTableDef()


@pair_routes.get(f"{API}/pairs")
async def list_pairs(request: web.Request) -> web.Response:
    app = _running(request)
    assert app.parts is not None
    status_text = request.query.get("status")
    try:
        status = PairStatus(status_text) if status_text else None
    except ValueError:
        raise ApiError("bad_request", "status must be provisioning, active or removed") from None
    records = await pairs.list_pairs(
        app.parts.db, status=status, therapist_id=request.query.get("therapist")
    )
    return web.json_response({"pairs": [pair_json(r) for r in records]})


@pair_routes.post(f"{API}/pairs")
async def create_pair(request: web.Request) -> web.Response:
    app = _running(request)
    assert app.parts is not None
    body = await _json_body(request)
    patient = _user_id(body, "patient")
    therapist = _user_id(body, "therapist")
    policy = body.get("policy", "default")
    if not isinstance(policy, str) or policy not in app.cfg.policies:
        raise ApiError("unknown_policy")
    email = body.get("patient_email")
    if email is not None and (not isinstance(email, str) or "@" not in email):
        raise ApiError("bad_request", "patient_email must be an e-mail address")
    record, created = await app.parts.pairs.add_pair(
        patient, therapist, _now(app), policy=policy, patient_email=email, actor="api"
    )
    if app.outbox is not None:
        app.outbox.kick()
    return web.json_response(
        {"pair": pair_json(record), "created": created}, status=201 if created else 200
    )


@pair_routes.get(f"{API}/pairs/{{ref}}")
async def show_pair(request: web.Request) -> web.Response:
    app = _running(request)
    assert app.parts is not None
    record = await app.parts.pairs.resolve(request.match_info["ref"])
    clock = await clocks.get_open(app.parts.db, record.pair_id)
    return web.json_response(
        {
            "pair": pair_json(record),
            "open_clock": clock_json(clock, record.label, _now(app)) if clock else None,
        }
    )


@pair_routes.post(f"{API}/pairs/{{ref}}/reassign")
async def reassign_pair(request: web.Request) -> web.Response:
    app = _running(request)
    assert app.parts is not None
    body = await _json_body(request)
    therapist = _user_id(body, "therapist")
    record = await app.parts.pairs.reassign(
        request.match_info["ref"], therapist, _now(app), actor="api"
    )
    if app.outbox is not None:
        app.outbox.kick()
    return web.json_response({"pair": pair_json(record)})


@pair_routes.delete(f"{API}/pairs/{{ref}}")
async def remove_pair(request: web.Request) -> web.Response:
    app = _running(request)
    assert app.parts is not None
    record = await app.parts.pairs.remove_pair(request.match_info["ref"], _now(app), actor="api")
    if app.outbox is not None:
        app.outbox.kick()
    return web.json_response({"pair": pair_json(record)})


@pair_routes.post(f"{API}/pairs/{{ref}}/voice")
async def upload_voice(request: web.Request) -> web.Response:
    app = _running(request)
    parts = app.parts
    assert parts is not None
    record = await parts.pairs.resolve(request.match_info["ref"])
    if record.status is not PairStatus.ACTIVE:
        raise ApiError("conflict", f"pair {record.label} is {record.status.value}")
    limit = VOICE_LIMITS.max_input_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError("too_large", f"at most {limit // (1024 * 1024)} MiB")
    data = bytearray()
    async for chunk in request.content.iter_chunked(256 * 1024):
        data.extend(chunk)
        if len(data) > limit:
            raise ApiError("too_large", f"at most {limit // (1024 * 1024)} MiB")
    if not data:
        raise ApiError("bad_request", "send the audio file as the request body")
    filename = request.query.get("filename")
    try:
        clip = await convert_to_voice_async(
            bytes(data), filename_hint=filename, limits=VOICE_LIMITS
        )
    except AudioError as err:
        raise ApiError("bad_audio", str(err)) from None
    now = _now(app)
    async with parts.db.transaction() as tx:
        job_id = await queue_voice(tx, parts.audit, record.pair_id, clip, "api", now)
    log.info("voice queued", extra={"pair_id": record.pair_id, "job_id": job_id})
    return web.json_response(
        {"job_id": job_id, "pair_id": record.pair_id, "duration_ms": clip.duration_ms},
        status=202,
    )


def _optional_day(request: web.Request, key: str) -> datetime | None:
    if key not in request.query:
        return None
    return _day_start(_date_param(request, key, date.today()))


@pair_routes.get(f"{API}/pairs/{{ref}}/export")
async def export_transcript(request: web.Request) -> web.StreamResponse:
    app = _running(request)
    parts = app.parts
    assert parts is not None
    record = await parts.pairs.resolve(request.match_info["ref"])
    start = _optional_day(request, "from")
    end = _optional_day(request, "to")
    with tempfile.TemporaryDirectory(prefix="confidant-export-") as tmp:
        out = Path(tmp) / f"transcript-{record.label}.zip"
        result = await export_pair(
            parts.db,
            parts.sealer,
            app.cfg.audit.signing_key.get_secret_value(),
            record.pair_id,
            start,
            end,
            out,
            parts.renderer.templates_dir,
            now=_now(app),
            actor="api",
            tz=app.cfg.practice.timezone,
            audit_log=parts.audit,
        )
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/zip",
                "Content-Disposition": f'attachment; filename="{out.name}"',
                "Content-Length": str(out.stat().st_size),
                "X-Confidant-Sha256": result.sha256,
                "Cache-Control": "no-store",
            }
        )
        await response.prepare(request)
        with out.open("rb") as fh:
            while chunk := await asyncio.to_thread(fh.read, 256 * 1024):
                await response.write(chunk)
        await response.write_eof()
    return response


# ---------------------------------------------------------------- invitations

invitation_routes = web.RouteTableDef()


def _onboarding(app: Host) -> Onboarding:
    """Onboarding as the API's actor, with the bridge's mailer (None: e-mail is off)."""
    assert app.parts is not None and app.service is not None
    mailer = app.service.mailer
    return Onboarding(
        app.parts,
        mailer if isinstance(mailer, Mailer) else None,
        actor="api",
        clock=app.service.clock,
    )


async def _invitation(app: Host, request: web.Request) -> InvitationRecord:
    assert app.parts is not None
    record = await invitations.get(app.parts.db, request.match_info["invitation_id"])
    if record is None:
        raise ApiError("invitation_not_found")
    return record


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise ApiError("bad_request", f"{key} must be a string")
    return value


def _valid_for(body: dict[str, Any]) -> timedelta:
    value = body.get("valid_for")
    if value is None:
        return DEFAULT_VALIDITY
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            valid_for = timedelta(seconds=value)
        else:
            valid_for = parse_duration(value)
    except ValueError:
        valid_for = timedelta(0)
    if valid_for <= timedelta(0):
        raise ApiError("bad_request", "valid_for must be seconds or a duration like '7d'")
    return valid_for


@invitation_routes.get(f"{API}/invitations")
async def list_invitations(request: web.Request) -> web.Response:
    app = _running(request)
    assert app.parts is not None
    status_text = request.query.get("status")
    try:
        status = InvitationStatus(status_text) if status_text else None
    except ValueError:
        known = ", ".join(s.value for s in InvitationStatus)
        raise ApiError("bad_request", f"status must be one of {known}") from None
    records = await invitations.list_invitations(app.parts.db, status=status)
    return web.json_response({"invitations": [invitation_json(r) for r in records]})


@invitation_routes.post(f"{API}/invitations")
async def create_invitation(request: web.Request) -> web.Response:
    app = _running(request)
    body = await _json_body(request)
    email = body.get("email")
    if not isinstance(email, str) or "@" not in email or any(c.isspace() for c in email):
        raise ApiError("bad_request", "email must be an e-mail address")
    therapist = _user_id(body, "therapist")
    name = _optional_str(body, "name")
    policy = body.get("policy", "default")
    if not isinstance(policy, str) or policy not in app.cfg.policies:
        raise ApiError("unknown_policy")
    valid_for = _valid_for(body)
    onboarding = _onboarding(app)
    mailer, onboarding.mailer = onboarding.mailer, None
    # Stored first, e-mailed second: a relay failure must not lose the invitation.
    record = await onboarding.invite(
        email, therapist, _now(app), name=name, policy=policy, valid_for=valid_for
    )
    result: dict[str, Any] = {"email_sent": False}
    if mailer is not None:
        onboarding.mailer = mailer
        try:
            await onboarding.send(record, _now(app))
        except MailError as err:
            result["email_error"] = str(err)
        else:
            result["email_sent"] = True
        record = await onboarding.get(record.invitation_id)
    if not result["email_sent"]:
        # Nobody else will tell the patient the code: the operator has to.
        result["code"] = record.token
    return web.json_response({"invitation": invitation_json(record), **result}, status=201)


@invitation_routes.get(f"{API}/invitations/{{invitation_id}}")
async def show_invitation(request: web.Request) -> web.Response:
    record = await _invitation(_running(request), request)
    return web.json_response({"invitation": invitation_json(record)})


@invitation_routes.post(f"{API}/invitations/{{invitation_id}}/resend")
async def resend_invitation(request: web.Request) -> web.Response:
    app = _running(request)
    record = await _invitation(app, request)
    onboarding = _onboarding(app)
    if onboarding.mailer is None:
        raise ApiError("email_off")
    record = await onboarding.resend(record.invitation_id, _now(app))
    return web.json_response({"invitation": invitation_json(record)})


@invitation_routes.post(f"{API}/invitations/{{invitation_id}}/revoke")
async def revoke_invitation(request: web.Request) -> web.Response:
    app = _running(request)
    record = await _invitation(app, request)
    record = await _onboarding(app).revoke(record.invitation_id, _now(app))
    return web.json_response({"invitation": invitation_json(record)})


@invitation_routes.post(f"{API}/invitations/{{invitation_id}}/match")
async def match_invitation(request: web.Request) -> web.Response:
    app = _running(request)
    record = await _invitation(app, request)
    user_id = _user_id(await _json_body(request), "user_id")
    record = await _onboarding(app).match(record.invitation_id, user_id, _now(app))
    await _refresh(app)
    return web.json_response({"invitation": invitation_json(record)})


async def _refresh(app: Host) -> None:
    """Let the running bridge pick up a pair created outside an event (as onboarding does)."""
    if app.service is not None:
        await app.service.refresh_rooms()
    if app.outbox is not None:
        app.outbox.kick()


# ---------------------------------------------------------------- policies, SLA, audit

sla_routes = web.RouteTableDef()


@sla_routes.get(f"{API}/policies")
async def list_policies(request: web.Request) -> web.Response:
    cfg = _server(request).app.cfg
    return web.json_response(
        {"policies": {name: policy_json(p.model_dump()) for name, p in cfg.policies.items()}}
    )


def policy_json(values: dict[str, Any]) -> dict[str, Any]:
    """A policy's settings as JSON: durations in seconds, tuples as lists."""

    def plain(value: Any) -> Any:
        if isinstance(value, timedelta):
            return int(value.total_seconds())
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        return value

    return {key: plain(value) for key, value in values.items()}


async def _labels(app: Host) -> dict[str, str]:
    assert app.parts is not None
    return {r.pair_id: r.label for r in await pairs.list_pairs(app.parts.db)}


@sla_routes.get(f"{API}/clocks")
async def list_clocks(request: web.Request) -> web.Response:
    app = _running(request)
    assert app.parts is not None
    found = await clocks.list_open(app.parts.db, therapist_id=request.query.get("therapist"))
    labels = await _labels(app)
    now = _now(app)
    return web.json_response({"clocks": [clock_json(c, labels.get(c.pair_id), now) for c in found]})


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


@sla_routes.get(f"{API}/sla/report")
async def sla_report(request: web.Request) -> web.Response:
    app = _running(request)
    assert app.parts is not None
    now = _now(app)
    today = now.astimezone(UTC).date()
    first = _date_param(request, "from", today - timedelta(days=30))
    last = _date_param(request, "to", today + timedelta(days=1))
    if last <= first:
        raise ApiError("bad_request", "'to' must be after 'from'")
    closed = await clocks.list_closed(app.parts.db, _day_start(first), _day_start(last))
    still_open = await clocks.list_open(app.parts.db)
    rows = summarize([*closed, *still_open], now=now)
    return web.json_response(
        {
            "from": first.isoformat(),
            "to": last.isoformat(),
            "rows": [
                {
                    "therapist_id": r.therapist_id,
                    "replies": r.replies,
                    "median_seconds": _seconds(r.median),
                    "p90_seconds": _seconds(r.p90),
                    "met_share": r.met_share,
                    "breaches": r.breaches,
                    "open_overdue": r.open_overdue,
                }
                for r in rows
            ],
        }
    )


audit_routes = web.RouteTableDef()


@audit_routes.post(f"{API}/audit/verify")
async def audit_verify(request: web.Request) -> web.Response:
    app = _running(request)
    parts = app.parts
    assert parts is not None
    body = await _json_body(request) if request.can_read_body else {}
    pair_id: str | None = None
    if body.get("pair"):
        pair_id = (await parts.pairs.resolve(str(body["pair"]))).pair_id
    audit: AuditLog = parts.audit
    result = await verify(
        parts.db,
        pair_id,
        trusted_key=public_key_bytes(audit.signing_key.public_key()),
        sealer=parts.sealer if body.get("check_content") else None,
    )
    details: dict[str, Any] = {"count": result.count, "head": result.head_hash.hex()}
    if not result.ok:
        details.update({"broken_seq": result.broken_seq, "kind": str(result.kind)})
    # The check itself goes into the chain, as `confidant audit verify` does.
    await audit.record(
        {
            "pair_id": pair_id,
            "action": "audit.verify",
            "actor": "api",
            "details": details,
            "outcome": "ok" if result.ok else "failed",
        },
        _now(app),
    )
    return web.json_response(
        {
            "ok": result.ok,
            "count": result.count,
            "head": result.head_hash.hex(),
            "broken_seq": result.broken_seq,
            "kind": str(result.kind) if result.kind else None,
            "checkpoints_verified": result.checkpoints_verified,
            "pair_id": pair_id,
            "pair_count": result.pair_count,
            "content_checked": result.content_checked,
            "summary": result.summary(),
        }
    )


# ---------------------------------------------------------------- dashboard

dashboard = web.RouteTableDef()


def _csrf_ok(request: web.Request, form_value: object) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not isinstance(form_value, str):
        return False
    origin = request.headers.get("Origin")
    # Browsers send Origin on every POST; one from another site is refused outright.
    if origin and origin != "null" and urlsplit(origin).netloc != request.host:
        return False
    return hmac.compare_digest(cookie.encode(), form_value.encode())


def _page(
    request: web.Request, name: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    app = _server(request).app
    csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
    renderer = app.parts.renderer if app.parts is not None else None
    if renderer is None:
        from bridge.adapters.render import Renderer

        renderer = Renderer(app.templates_dir)
    html = renderer.page(
        f"admin/{name}.html.j2",
        {"practice_name": app.cfg.practice.name, "csrf_token": csrf, **context},
    )
    response = web.Response(text=html, content_type="text/html", status=status)
    _harden(response)
    if CSRF_COOKIE not in request.cookies:
        _set_cookie(request, response, CSRF_COOKIE, csrf)
    return response


def _harden(response: web.StreamResponse) -> None:
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    )


def _set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        path="/dashboard",
        httponly=True,
        samesite="Strict",
        # Behind a TLS reverse proxy aiohttp sees plain HTTP; the proxy says it was HTTPS.
        secure=request.secure or request.headers.get("X-Forwarded-Proto") == "https",
        max_age=SESSION_LIFETIME,
    )


def _see_other(location: str) -> web.Response:
    response = web.Response(status=303, headers={"Location": location})
    _harden(response)
    return response


def _logged_in(request: web.Request) -> bool:
    return _server(request).session_ok(request.cookies.get(SESSION_COOKIE))


@dashboard.get("/dashboard/login")
async def login_form(request: web.Request) -> web.Response:
    return _page(request, "login", {"error": None})


@dashboard.post("/dashboard/login")
async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    if not _csrf_ok(request, form.get(CSRF_FIELD)):
        return _page(request, "login", {"error": "The form expired; please try again."}, 403)
    token = form.get("token")
    if not isinstance(token, str) or not _server(request).app.cfg.http.token_ok(token):
        log.info("dashboard login refused")
        return _page(request, "login", {"error": "That token is not valid."}, 401)
    response = _see_other("/dashboard")
    _set_cookie(request, response, SESSION_COOKIE, _server(request).new_session())
    # A fresh CSRF token for the session: the one seen before login is not reused.
    _set_cookie(request, response, CSRF_COOKIE, secrets.token_urlsafe(32))
    return response


@dashboard.post("/dashboard/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    if not _csrf_ok(request, form.get(CSRF_FIELD)):
        raise ApiError("forbidden")
    _server(request).end_session(request.cookies.get(SESSION_COOKIE))
    response = _see_other("/dashboard/login")
    response.del_cookie(SESSION_COOKIE, path="/dashboard")
    return response


def _local(value: datetime | None, app: Host) -> str:
    if value is None:
        return ""
    return value.astimezone(app.cfg.practice.tzinfo).strftime("%a %d %b %H:%M")


@dashboard.get("/dashboard")
async def overview(request: web.Request) -> web.StreamResponse:
    if not _logged_in(request):
        raise web.HTTPSeeOther("/dashboard/login")
    app = _running(request)
    assert app.parts is not None
    db = app.parts.db
    now = _now(app)
    records = await pairs.list_pairs(db)
    labels = {r.pair_id: r.label for r in records}
    open_clocks = await clocks.list_open(db)
    by_therapist: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for clock in open_clocks:
        by_therapist[clock.therapist_id].append(
            {
                "label": labels.get(clock.pair_id, "?"),
                "opened": _local(clock.opened_at, app),
                "due": _local(clock.due_at, app),
                "overdue": clock.due_at < now,
                "paused": clock.paused_since is not None,
            }
        )
    tz = app.cfg.practice.tzinfo
    local_now = now.astimezone(tz)
    week_start = datetime.combine(
        local_now.date() - timedelta(days=local_now.weekday()), datetime.min.time(), tz
    )
    closed = await clocks.list_closed(db, week_start, now + timedelta(seconds=1))
    breaches = [
        {
            "label": labels.get(c.pair_id, "?"),
            "therapist_id": c.therapist_id,
            "due": _local(c.due_at, app),
            "answered": _local(c.closed_at, app),
        }
        for c in closed
        if c.met is False
    ] + [
        {
            "label": labels.get(c.pair_id, "?"),
            "therapist_id": c.therapist_id,
            "due": _local(c.due_at, app),
            "answered": "",
        }
        for c in open_clocks
        if week_start <= c.due_at < now
    ]
    checks = await _server(request).health()
    return _page(
        request,
        "dashboard",
        {
            "now": _local(now, app),
            "by_therapist": sorted(by_therapist.items()),
            "open_count": len(open_clocks),
            "breaches": breaches,
            "pairs": [
                {
                    "label": r.label,
                    "therapist_id": r.therapist_id,
                    "status": r.status.value,
                    "policy": r.policy,
                    "consent": r.consent_state,
                }
                for r in records
            ],
            "checks": checks,
        },
    )


@dashboard.get("/")
async def root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/dashboard")


ROUTE_TABLES = (ops, pair_routes, invitation_routes, sla_routes, audit_routes, dashboard)


def build_web_app(server: HttpServer) -> web.Application:
    """The aiohttp application with every route and both middlewares."""
    web_app = web.Application(
        middlewares=[error_middleware, auth_middleware], client_max_size=1 << 20
    )
    web_app[SERVER_KEY] = server
    for table in ROUTE_TABLES:
        web_app.add_routes(table)
    return web_app


# ---------------------------------------------------------------- OpenAPI


def _err(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_REF_PARAM = {
    "name": "ref",
    "in": "path",
    "required": True,
    "description": "A pair id, label or room id.",
    "schema": {"type": "string"},
}
_PAIR = {"$ref": "#/components/schemas/Pair"}
_PAIR_RESULT = {"type": "object", "properties": {"pair": _PAIR}}
_AUTH_ERRORS = {"401": _err("Missing or wrong admin token.")}
_PAIR_ERRORS = {**_AUTH_ERRORS, "404": _err("No such pair.")}
_INVITATION_PARAM = {
    "name": "invitation_id",
    "in": "path",
    "required": True,
    "description": "The invitation's id (8 hex digits).",
    "schema": {"type": "string"},
}
_INVITATION = {"$ref": "#/components/schemas/Invitation"}
_INVITATION_RESULT = {"type": "object", "properties": {"invitation": _INVITATION}}
_INVITATION_ERRORS = {**_AUTH_ERRORS, "404": _err("No such invitation.")}
_ADMIN_ERRORS = {
    "502": _err("The homeserver or the mail relay failed."),
    "503": _err(
        "No usable synapse_admin.access_token (admin_unavailable); detail says what to do."
    ),
}


def _json_request(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object", "required": required, "properties": properties}
            }
        },
    }


#: The API's description, written by hand; tests check it names every route.
OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "Confidant admin API",
        "version": "1",
        "description": "Pairs, invitations, policies, SLA clocks and reports, audit checks and "
        "exports. "
        "Every error is JSON: {error, message, detail?}.",
    },
    "servers": [{"url": "/"}],
    "security": [{"bearer": []}],
    "paths": {
        "/health": {
            "get": {
                "summary": "Homeserver, bot readiness, database, SMTP, sync and self-check health.",
                "security": [],
                "responses": {
                    "200": _ok("Everything is healthy.", {"$ref": "#/components/schemas/Health"}),
                    "503": _ok(
                        "Something is not healthy.", {"$ref": "#/components/schemas/Health"}
                    ),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (counts only, no personal data in labels).",
                "responses": {
                    "200": {
                        "description": "Prometheus text format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_AUTH_ERRORS,
                },
            }
        },
        f"{API}/openapi.json": {
            "get": {
                "summary": "This description.",
                "security": [],
                "responses": {"200": _ok("OpenAPI 3 document.", {"type": "object"})},
            }
        },
        f"{API}/pairs": {
            "get": {
                "summary": "List pairs.",
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"type": "string", "enum": [s.value for s in PairStatus]},
                    },
                    {"name": "therapist", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": _ok(
                        "The pairs, oldest first.",
                        {
                            "type": "object",
                            "properties": {"pairs": {"type": "array", "items": _PAIR}},
                        },
                    ),
                    **_AUTH_ERRORS,
                },
            },
            "post": {
                "summary": "Create a pair and its E2EE room (idempotent).",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["patient", "therapist"],
                                "properties": {
                                    "patient": {"type": "string", "example": "@pat:example.org"},
                                    "therapist": {"type": "string", "example": "@dr:example.org"},
                                    "policy": {"type": "string", "default": "default"},
                                    "patient_email": {"type": "string", "format": "email"},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "201": _ok("Created.", {"$ref": "#/components/schemas/PairCreated"}),
                    "200": _ok("Already existed.", {"$ref": "#/components/schemas/PairCreated"}),
                    "400": _err("Bad user id, e-mail address or policy."),
                    **_AUTH_ERRORS,
                    "409": _err("Patient and therapist are the same user."),
                },
            },
        },
        f"{API}/pairs/{{ref}}": {
            "parameters": [_REF_PARAM],
            "get": {
                "summary": "Show a pair and its open SLA clock.",
                "responses": {
                    "200": _ok(
                        "The pair.",
                        {
                            "type": "object",
                            "properties": {
                                "pair": _PAIR,
                                "open_clock": {
                                    "allOf": [{"$ref": "#/components/schemas/Clock"}],
                                    "nullable": True,
                                },
                            },
                        },
                    ),
                    **_PAIR_ERRORS,
                },
            },
            "delete": {
                "summary": "Close the pair: closing notice, room read-only, audit kept.",
                "responses": {"200": _ok("The closed pair.", _PAIR_RESULT), **_PAIR_ERRORS},
            },
        },
        f"{API}/pairs/{{ref}}/reassign": {
            "parameters": [_REF_PARAM],
            "post": {
                "summary": "Hand the pair over to another therapist.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["therapist"],
                                "properties": {"therapist": {"type": "string"}},
                            }
                        }
                    },
                },
                "responses": {
                    "200": _ok("The pair with its new therapist.", _PAIR_RESULT),
                    "400": _err("Bad user id."),
                    **_PAIR_ERRORS,
                    "409": _err("The pair is not active, or the therapist is the patient."),
                },
            },
        },
        f"{API}/pairs/{{ref}}/voice": {
            "parameters": [
                _REF_PARAM,
                {
                    "name": "filename",
                    "in": "query",
                    "description": "The file's name, a hint for the audio format.",
                    "schema": {"type": "string"},
                },
            ],
            "post": {
                "summary": "Convert audio to a voice message and queue it for the pair room.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        },
                        "audio/*": {"schema": {"type": "string", "format": "binary"}},
                    },
                },
                "responses": {
                    "202": _ok(
                        "Queued; the bridge posts it shortly.",
                        {
                            "type": "object",
                            "properties": {
                                "job_id": {"type": "string"},
                                "pair_id": {"type": "string"},
                                "duration_ms": {"type": "integer"},
                            },
                        },
                    ),
                    "400": _err("No body."),
                    **_PAIR_ERRORS,
                    "409": _err("The pair is not active."),
                    "413": _err("Too large."),
                    "422": _err("Not audio, too long, or ffmpeg failed."),
                },
            },
        },
        f"{API}/pairs/{{ref}}/export": {
            "parameters": [
                _REF_PARAM,
                {"name": "from", "in": "query", "schema": {"type": "string", "format": "date"}},
                {"name": "to", "in": "query", "schema": {"type": "string", "format": "date"}},
            ],
            "get": {
                "summary": "Download the pair's transcript (zip, recorded in the audit chain).",
                "responses": {
                    "200": {
                        "description": "The transcript zip; X-Confidant-Sha256 is its hash.",
                        "content": {
                            "application/zip": {"schema": {"type": "string", "format": "binary"}}
                        },
                    },
                    "400": _err("Bad date."),
                    **_PAIR_ERRORS,
                },
            },
        },
        f"{API}/invitations": {
            "get": {
                "summary": "List invitations, oldest first (never their codes).",
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"type": "string", "enum": [s.value for s in InvitationStatus]},
                    }
                ],
                "responses": {
                    "200": _ok(
                        "The invitations.",
                        {
                            "type": "object",
                            "properties": {"invitations": {"type": "array", "items": _INVITATION}},
                        },
                    ),
                    "400": _err("Bad status."),
                    **_AUTH_ERRORS,
                },
            },
            "post": {
                "summary": "Invite a patient: a single-use registration code, e-mailed.",
                "description": "Creates a single-use registration token on the homeserver "
                "(needs synapse_admin.access_token) and e-mails it when outbound e-mail is on. "
                "The code is in the response only when no e-mail was sent (e-mail off, or the "
                "relay failed: see email_error), for the operator to hand over; no other "
                "response ever shows it. The running bridge pairs the new account with the "
                "therapist once it registers.",
                "requestBody": _json_request(
                    ["email", "therapist"],
                    {
                        "email": {"type": "string", "format": "email"},
                        "therapist": {"type": "string", "example": "@dr:example.org"},
                        "name": {"type": "string", "description": "How the e-mail greets them."},
                        "policy": {"type": "string", "default": "default"},
                        "valid_for": {
                            "oneOf": [{"type": "integer"}, {"type": "string"}],
                            "description": "Seconds, or a duration like '7d' (default 7 days).",
                        },
                    },
                ),
                "responses": {
                    "201": _ok(
                        "Created.",
                        {
                            "type": "object",
                            "properties": {
                                "invitation": _INVITATION,
                                "email_sent": {"type": "boolean"},
                                "email_error": {"type": "string"},
                                "code": {
                                    "type": "string",
                                    "description": "Only when email_sent is false.",
                                },
                            },
                        },
                    ),
                    "400": _err("Bad e-mail address, user id, policy or valid_for."),
                    **_AUTH_ERRORS,
                    "409": _err("The therapist is not registered (invitation_refused)."),
                    **_ADMIN_ERRORS,
                },
            },
        },
        f"{API}/invitations/{{invitation_id}}": {
            "parameters": [_INVITATION_PARAM],
            "get": {
                "summary": "Show an invitation.",
                "responses": {
                    "200": _ok("The invitation.", _INVITATION_RESULT),
                    **_INVITATION_ERRORS,
                },
            },
        },
        f"{API}/invitations/{{invitation_id}}/resend": {
            "parameters": [_INVITATION_PARAM],
            "post": {
                "summary": "E-mail a pending invitation again (same code, same expiry).",
                "responses": {
                    "200": _ok("The invitation.", _INVITATION_RESULT),
                    **_INVITATION_ERRORS,
                    "409": _err("Not pending, expired, or e-mail is off (email_off)."),
                    "502": _err("The mail relay failed."),
                },
            },
        },
        f"{API}/invitations/{{invitation_id}}/revoke": {
            "parameters": [_INVITATION_PARAM],
            "post": {
                "summary": "Withdraw a pending invitation: its code is deleted on the homeserver.",
                "responses": {
                    "200": _ok("The revoked invitation.", _INVITATION_RESULT),
                    **_INVITATION_ERRORS,
                    "409": _err("The invitation is not pending."),
                    **_ADMIN_ERRORS,
                },
            },
        },
        f"{API}/invitations/{{invitation_id}}/match": {
            "parameters": [_INVITATION_PARAM],
            "post": {
                "summary": "Say which account used an invitation; its pair is created.",
                "requestBody": _json_request(
                    ["user_id"], {"user_id": {"type": "string", "example": "@pat:example.org"}}
                ),
                "responses": {
                    "200": _ok("The used invitation.", _INVITATION_RESULT),
                    "400": _err("Bad user id."),
                    **_INVITATION_ERRORS,
                    "409": _err("The invitation is used, revoked or expired, or no pair fits."),
                    **_ADMIN_ERRORS,
                },
            },
        },
        f"{API}/policies": {
            "get": {
                "summary": "The SLA policies from the configuration (durations in seconds).",
                "responses": {
                    "200": _ok(
                        "Policies by name.",
                        {"type": "object", "properties": {"policies": {"type": "object"}}},
                    ),
                    **_AUTH_ERRORS,
                },
            }
        },
        f"{API}/clocks": {
            "get": {
                "summary": "Open SLA clocks, soonest due first.",
                "parameters": [{"name": "therapist", "in": "query", "schema": {"type": "string"}}],
                "responses": {
                    "200": _ok(
                        "The open clocks.",
                        {
                            "type": "object",
                            "properties": {
                                "clocks": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Clock"},
                                }
                            },
                        },
                    ),
                    **_AUTH_ERRORS,
                },
            }
        },
        f"{API}/sla/report": {
            "get": {
                "summary": "Response times per therapist for clocks closed in [from, to).",
                "parameters": [
                    {"name": "from", "in": "query", "schema": {"type": "string", "format": "date"}},
                    {"name": "to", "in": "query", "schema": {"type": "string", "format": "date"}},
                ],
                "responses": {
                    "200": _ok("One row per therapist and an '(all)' row.", {"type": "object"}),
                    "400": _err("Bad dates."),
                    **_AUTH_ERRORS,
                },
            }
        },
        f"{API}/audit/verify": {
            "post": {
                "summary": "Verify the audit chain (and record the check in it).",
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "pair": {"type": "string"},
                                    "check_content": {"type": "boolean", "default": False},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _ok(
                        "The result; ok is false when the chain is broken.", {"type": "object"}
                    ),
                    **_PAIR_ERRORS,
                },
            }
        },
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error", "message"],
                "properties": {
                    "error": {"type": "string", "enum": sorted(ERRORS)},
                    "message": {"type": "string"},
                    "detail": {"type": "string"},
                },
            },
            "Pair": {
                "type": "object",
                "properties": {
                    "pair_id": {"type": "string"},
                    "label": {"type": "string"},
                    "patient_id": {"type": "string"},
                    "therapist_id": {"type": "string"},
                    "room_id": {"type": "string", "nullable": True},
                    "status": {"type": "string", "enum": [s.value for s in PairStatus]},
                    "policy": {"type": "string"},
                    "consent_state": {"type": "string"},
                    "has_patient_email": {"type": "boolean"},
                    "created_at": {"type": "string", "format": "date-time"},
                    "removed_at": {"type": "string", "format": "date-time", "nullable": True},
                },
            },
            "PairCreated": {
                "type": "object",
                "properties": {"pair": _PAIR, "created": {"type": "boolean"}},
            },
            "Invitation": {
                "type": "object",
                "properties": {
                    "invitation_id": {"type": "string"},
                    "email": {"type": "string", "format": "email"},
                    "therapist_id": {"type": "string"},
                    "policy": {"type": "string"},
                    "status": {"type": "string", "enum": [s.value for s in InvitationStatus]},
                    "created_at": {"type": "string", "format": "date-time"},
                    "expires_at": {"type": "string", "format": "date-time"},
                    "sent_count": {"type": "integer"},
                    "last_sent_at": {"type": "string", "format": "date-time", "nullable": True},
                    "patient_id": {"type": "string", "nullable": True},
                    "pair_id": {"type": "string", "nullable": True},
                    "closed_at": {"type": "string", "format": "date-time", "nullable": True},
                },
            },
            "Clock": {
                "type": "object",
                "properties": {
                    "clock_id": {"type": "string"},
                    "pair_id": {"type": "string"},
                    "label": {"type": "string", "nullable": True},
                    "therapist_id": {"type": "string"},
                    "policy": {"type": "string"},
                    "opened_at": {"type": "string", "format": "date-time"},
                    "due_at": {"type": "string", "format": "date-time"},
                    "overdue": {"type": "boolean"},
                    "paused": {"type": "boolean"},
                },
            },
            "Health": {
                "type": "object",
                "properties": {
                    "status": {"type": "string", "enum": ["ok", "degraded"]},
                    "checks": {"type": "object"},
                    "sync_lag_seconds": {"type": "number"},
                    "witness": {
                        "type": "object",
                        "description": "The self-check of the bot's posts: state, posts "
                        "checked and unreadable in the last hour, repairs pending.",
                    },
                },
            },
        },
    },
}
