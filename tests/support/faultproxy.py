"""A fault-injecting HTTP reverse proxy to put between a Matrix client and the test homeserver.

It forwards everything to the upstream (method, raw path and query, headers, body) and,
on request, misbehaves the way a real reverse proxy does during trouble: a 502 page
instead of an answer, a 502 after the homeserver already acted, a reset connection, or
every request refused while the homeserver restarts.

    async with FaultProxy(homeserver.url) as proxy:
        client = AsyncClient(proxy.url, user_id)
        rule = proxy.fail(r"/sendToDevice/m\\.room\\.encrypted/", status=502)
        ...
        assert rule.hits == 1
        assert proxy.seen(r"/sendToDevice/", method="PUT")[0].status == 502

It runs in the caller's event loop. Rules are checked when a request arrives, in the
order they were added; the first live rule that matches takes effect and counts one hit.

aiohttp, and so nio, resends a GET, PUT or DELETE once by itself when its connection is
reset or closed without an answer: `reset(times=1)` on such a request goes unnoticed by
the client (the rule still counts its hit). Use `times=2` to make the client see it.
"""

from __future__ import annotations

import enum
import http
import io
import json
import logging
import re
import socket
import struct
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

log = logging.getLogger(__name__)

#: Headers that describe one connection, not the message (RFC 9110 section 7.6.1), plus
#: those the proxy recomputes itself. Host is set by the upstream session from its URL.
_NOT_FORWARDED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "expect",
    }
)

#: How long the upstream may stay silent while answering. Synapse holds a /sync open for
#: the client's own `timeout` (30 s for nio), so this must be well above any long-poll.
DEFAULT_READ_TIMEOUT_S = 300.0
#: Connecting to a homeserver on loopback either works at once or is refused.
CONNECT_TIMEOUT_S = 10.0


class FaultKind(enum.Enum):
    """What a rule does to the requests it matches."""

    FAIL = "fail"
    FAIL_AFTER_UPSTREAM = "fail_after_upstream"
    RESET = "reset"
    DOWN = "down"


@dataclass(eq=False)
class FaultRule:
    """One fault rule; the handle returned by `FaultProxy.fail()` and friends.

    `hits` counts the requests the rule affected. `remaining` is how many more it will
    affect (None: until removed). A used-up rule stays readable but no longer matches.
    """

    kind: FaultKind
    pattern: re.Pattern[str]
    method: str | None
    status: int | None
    remaining: int | None
    body: bytes | None = None
    content_type: str | None = None
    hits: int = field(default=0)

    @property
    def active(self) -> bool:
        """Whether the rule still affects matching requests."""
        return self.remaining is None or self.remaining > 0

    def matches(self, method: str, path: str) -> bool:
        """Whether a request with this method and (decoded, query-less) path is affected."""
        if not self.active:
            return False
        if self.method is not None and self.method != method:
            return False
        return self.pattern.search(path) is not None

    def consume(self) -> None:
        """Count one affected request."""
        self.hits += 1
        if self.remaining is not None:
            self.remaining -= 1


class SeenRequest(NamedTuple):
    """A request the proxy finished with.

    `status` is what the client got (None: the connection was closed without an answer).
    `upstream_status` is what the homeserver answered (None: it was never asked, or it
    did not answer), so a 502 made by a fault rule can be told apart from a real one.
    """

    method: str
    path: str
    status: int | None
    upstream_status: int | None


class FaultProxy:
    """A reverse proxy on 127.0.0.1 in front of `upstream_url`, with fault rules.

    `await start()` (or `async with`) binds a free port; `url` is then the base URL to
    give to clients instead of the homeserver's. `stop()` ends requests still in flight,
    long-polls included. Paths in rules and in `requests` are percent-decoded and carry
    no query string, e.g. `/_matrix/client/v3/rooms/!abc:localhost/send/m.room.message/t1`.
    Rule patterns are used with `re.search`: anchor them when a prefix is not enough.
    Upstream connections are never reused (as nginx does by default), so a homeserver
    restart never surfaces as a stale keep-alive connection. `requests` lists each
    request when the proxy finishes with it, so a long-poll still held is not in it yet.
    """

    def __init__(self, upstream_url: str, *, read_timeout: float = DEFAULT_READ_TIMEOUT_S):
        self.upstream_url = upstream_url.rstrip("/")
        self.requests: list[SeenRequest] = []
        self._read_timeout = read_timeout
        self._rules: list[FaultRule] = []
        self._down: FaultRule | None = None
        self._runner: web.ServerRunner | None = None
        self._site: web.TCPSite | None = None
        self._session: aiohttp.ClientSession | None = None
        self._port: int | None = None

    # -- life cycle -------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1 (known once started)."""
        if self._port is None:
            raise RuntimeError("the fault proxy is not started; call start()")
        return self._port

    @property
    def url(self) -> str:
        """Base URL of the proxy (known once started)."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FaultProxy:
        """Bind 127.0.0.1 on a free port and start forwarding."""
        if self._runner is not None:
            raise RuntimeError("the fault proxy is already started")
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=True),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=self._read_timeout
            ),
            # Pass bytes through untouched: the client asked for the encoding it can read.
            auto_decompress=False,
            # Upstream cookies belong to the clients, not to a jar shared by all of them.
            cookie_jar=aiohttp.DummyCookieJar(),
            # Send exactly the client's headers, not aiohttp's defaults in their place.
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )
        server = web.Server(
            self._handle,
            access_log=None,
            # Forward a compressed request body as the client sent it.
            auto_decompress=False,
            # Inline sync filters make long query strings; do not refuse them as 400.
            max_line_size=65536,
            max_field_size=65536,
        )
        self._runner = web.ServerRunner(server, shutdown_timeout=2.0)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await self._site.start()
        self._port = int(self._runner.addresses[0][1])
        log.debug("fault proxy %s -> %s", self.url, self.upstream_url)
        return self

    async def stop(self) -> None:
        """Stop listening, end requests in flight and close the upstream session."""
        runner, self._runner = self._runner, None
        site, self._site = self._site, None
        session, self._session = self._session, None
        if site is not None:
            await site.stop()
        # Closing the upstream session first ends long-polls at once (their clients get
        # a 502) instead of letting shutdown wait for Synapse's sync timeout.
        if session is not None:
            await session.close()
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- rules ------------------------------------------------------------

    def fail(
        self,
        path_regex: str | re.Pattern[str],
        status: int = 502,
        times: int | None = 1,
        method: str | None = None,
        *,
        body: bytes | str | dict[str, Any] | None = None,
    ) -> FaultRule:
        """Answer `status` to the next `times` matching requests without asking upstream.

        The default body is an nginx-style HTML error page; pass `body` (a dict is sent
        as JSON) for e.g. a Matrix `M_LIMIT_EXCEEDED`. `times=None`: until removed.
        """
        return self._add(FaultKind.FAIL, path_regex, status, times, method, body)

    def fail_after_upstream(
        self,
        path_regex: str | re.Pattern[str],
        status: int = 502,
        times: int | None = 1,
        method: str | None = None,
        *,
        body: bytes | str | dict[str, Any] | None = None,
    ) -> FaultRule:
        """Forward the next `times` matching requests, then answer `status` instead.

        The homeserver acts on the request (a message is sent, a key is uploaded) but the
        client only sees the error, as when a proxy times out after the upstream did
        its work. `SeenRequest.upstream_status` holds what the homeserver answered.
        """
        return self._add(FaultKind.FAIL_AFTER_UPSTREAM, path_regex, status, times, method, body)

    def reset(
        self,
        path_regex: str | re.Pattern[str],
        times: int | None = 1,
        method: str | None = None,
    ) -> FaultRule:
        """Reset the connection of the next `times` matching requests, before upstream.

        The client gets no answer, only a TCP reset: aiohttp raises a
        `ClientConnectionError` (`ClientOSError` "Connection reset by peer" or
        `ServerDisconnectedError`), but first resends a GET, PUT or DELETE once by itself,
        which the next hit of the rule (if any) resets too.
        """
        return self._add(FaultKind.RESET, path_regex, None, times, method, None)

    def down(self, status: int | None = 502) -> FaultRule:
        """Answer every request with `status` until `up()`, as while the homeserver restarts.

        `status=None` closes every connection without an answer instead (the proxy still
        accepts TCP connections; there is no "connection refused"). While down, no other
        rule is consulted or used up. Calling it again replaces the previous state.
        """
        kind = FaultKind.DOWN if status is not None else FaultKind.RESET
        rule = FaultRule(kind, re.compile(""), None, status, None)
        rule.body, rule.content_type = _error_body(status, None)
        self._down = rule
        return rule

    def up(self) -> None:
        """End `down()`: forward requests again (other rules apply as before)."""
        self._down = None

    def remove(self, rule: FaultRule) -> None:
        """Remove one rule (a `down()` handle ends the down state)."""
        if rule is self._down:
            self._down = None
        elif rule in self._rules:
            self._rules.remove(rule)

    def clear(self) -> None:
        """Remove every rule, `down()` included."""
        self._rules.clear()
        self._down = None

    def seen(
        self, path_regex: str | re.Pattern[str] | None = None, method: str | None = None
    ) -> list[SeenRequest]:
        """The finished requests whose path matches (`re.search`) and method is `method`."""
        pattern = re.compile(path_regex) if path_regex is not None else None
        return [
            seen
            for seen in self.requests
            if (method is None or seen.method == method)
            and (pattern is None or pattern.search(seen.path) is not None)
        ]

    def _add(
        self,
        kind: FaultKind,
        path_regex: str | re.Pattern[str],
        status: int | None,
        times: int | None,
        method: str | None,
        body: bytes | str | dict[str, Any] | None,
    ) -> FaultRule:
        if times is not None and times < 1:
            raise ValueError(f"times must be at least 1 or None, not {times}")
        rule = FaultRule(
            kind, re.compile(path_regex), method.upper() if method else None, status, times
        )
        rule.body, rule.content_type = _error_body(status, body)
        self._rules.append(rule)
        return rule

    def _match(self, method: str, path: str) -> FaultRule | None:
        # Chosen and used up before the first await, so concurrent requests take the
        # rule's `times` in the order they arrived.
        if self._down is not None:
            self._down.consume()
            return self._down
        for rule in self._rules:
            if rule.matches(method, path):
                rule.consume()
                return rule
        return None

    # -- requests ---------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        method, path = request.method, request.path
        rule = self._match(method, path)
        if rule is not None and rule.kind is FaultKind.RESET:
            log.debug("fault proxy: reset %s %s", method, path)
            return self._abort(request, method, path)
        # Read the whole body first, also when a rule will not forward it, as nginx does:
        # the client's keep-alive connection is then clean for its next request.
        # `content.read()` rather than `read()`: no 1 MiB cap, media uploads are bigger.
        body = await request.content.read()
        if rule is not None and rule.kind in (FaultKind.FAIL, FaultKind.DOWN):
            log.debug("fault proxy: %s %s answered %s", method, path, rule.status)
            return self._error(rule, method, path, None)

        try:
            upstream_status, reason, headers, payload = await self._forward(request, body)
        except TimeoutError:
            return self._gateway_error(504, method, path)
        except (aiohttp.ClientError, OSError, RuntimeError):
            # Refused, reset or closed by the homeserver (or the session closed by stop()):
            # what nginx answers as "502 Bad Gateway".
            if rule is not None and rule.kind is FaultKind.FAIL_AFTER_UPSTREAM:
                return self._error(rule, method, path, None)
            return self._gateway_error(502, method, path)
        if rule is not None:
            log.debug("fault proxy: %s %s answered %s after upstream", method, path, rule.status)
            return self._error(rule, method, path, upstream_status)
        if method == "HEAD":
            # No body to count: keep the length the homeserver announced.
            response = web.Response(status=upstream_status, reason=reason, headers=headers)
        else:
            response = web.Response(
                status=upstream_status, reason=reason, headers=headers, body=payload
            )
        self.requests.append(SeenRequest(method, path, upstream_status, upstream_status))
        return response

    async def _forward(
        self, request: web.BaseRequest, body: bytes
    ) -> tuple[int, str | None, CIMultiDict[str], bytes]:
        session = self._session
        if session is None:
            raise RuntimeError("the fault proxy is stopped")
        # The raw path keeps the client's percent-encoding and query string exactly.
        url = URL(self.upstream_url + request.raw_path, encoded=True)
        async with session.request(
            request.method,
            url,
            headers=_forwardable(request.headers),
            # A file-like body: aiohttp writes it in chunks (and warns about big bytes).
            data=io.BytesIO(body) if request.body_exists else None,
            allow_redirects=False,
        ) as resp:
            payload = await resp.read()
            headers = _forwardable(resp.headers)
            if request.method == "HEAD" and "Content-Length" in resp.headers:
                headers["Content-Length"] = resp.headers["Content-Length"]
            return resp.status, resp.reason, headers, payload

    def _error(
        self, rule: FaultRule, method: str, path: str, upstream_status: int | None
    ) -> web.Response:
        assert rule.status is not None
        self.requests.append(SeenRequest(method, path, rule.status, upstream_status))
        return web.Response(
            status=rule.status,
            body=rule.body,
            content_type=rule.content_type,
        )

    def _gateway_error(self, status: int, method: str, path: str) -> web.Response:
        body, content_type = _error_body(status, None)
        self.requests.append(SeenRequest(method, path, status, None))
        return web.Response(status=status, body=body, content_type=content_type)

    def _abort(self, request: web.BaseRequest, method: str, path: str) -> web.Response:
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                # Linger 0 turns the close into a TCP RST, so the client sees a reset,
                # not an orderly end of stream it might take for an empty answer.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        self.requests.append(SeenRequest(method, path, None, None))
        # Nothing is sent: writing to the aborted transport fails and aiohttp treats
        # that as a client that went away.
        return web.Response(status=500)


def _forwardable(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> CIMultiDict[str]:
    """The end-to-end headers of a message, repeated ones kept.

    Hop-by-hop headers go, and so do those the message's `Connection` header names.
    """
    named = {
        token.strip().lower()
        for value in headers.getall("Connection", [])
        for token in value.split(",")
    }
    return CIMultiDict(
        (name, value)
        for name, value in headers.items()
        if name.lower() not in _NOT_FORWARDED and name.lower() not in named
    )


def _error_body(
    status: int | None, body: bytes | str | dict[str, Any] | None
) -> tuple[bytes | None, str | None]:
    """The body and content type of an injected answer."""
    if status is None:
        return None, None
    if isinstance(body, dict):
        return json.dumps(body).encode(), "application/json"
    if isinstance(body, str):
        return body.encode(), "text/plain"
    if isinstance(body, bytes):
        return body, "application/octet-stream"
    # HTML, as nginx sends: clients must cope with an error body that is not JSON.
    try:
        title = f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        title = str(status)
    page = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    return page.encode(), "text/html"
