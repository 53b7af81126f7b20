"""The fault proxy in front of the real test Synapse: it forwards faithfully and fails on cue."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from dev.devhs import DevHomeserver
from tests.conftest import TestUser
from tests.support.faultproxy import FaultProxy, SeenRequest

pytestmark = pytest.mark.integration

VERSIONS = "/_matrix/client/versions"
WHOAMI = "/_matrix/client/v3/account/whoami"


@pytest.fixture
async def proxy(homeserver: DevHomeserver) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(homeserver.url) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def user(make_user: Callable[..., TestUser]) -> TestUser:
    return make_user("proxied")


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    token: str | None = None,
    body: dict[str, Any] | None = None,
) -> tuple[int, bytes]:
    headers = _auth(token) if token else {}
    async with http.request(method, url, headers=headers, json=body) as resp:
        return resp.status, await resp.read()


async def _json(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    token: str | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    status, raw = await _call(http, method, url, token, body)
    assert status == 200, raw
    result: dict[str, Any] = json.loads(raw)
    return result


async def _create_room(http: aiohttp.ClientSession, base: str, token: str) -> str:
    created = await _json(http, "POST", f"{base}/_matrix/client/v3/createRoom", token, {})
    room_id: str = created["room_id"]
    return room_id


def _send_path(room_id: str, txn_id: str) -> str:
    return f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/{txn_id}"


async def _room_texts(
    http: aiohttp.ClientSession, homeserver: DevHomeserver, room_id: str, token: str
) -> list[tuple[str, str]]:
    """(event id, body) of every message in the room, asked of Synapse directly."""
    url = f"{homeserver.url}/_matrix/client/v3/rooms/{quote(room_id)}/messages?dir=f&limit=100"
    chunk = (await _json(http, "GET", url, token))["chunk"]
    return [(e["event_id"], e["content"]["body"]) for e in chunk if e["type"] == "m.room.message"]


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- forwarding --------------------------------------------------------------


async def test_forwards_a_plain_get(proxy: FaultProxy, http: aiohttp.ClientSession) -> None:
    async with http.get(proxy.url + VERSIONS) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        assert "v1.1" in (await resp.json())["versions"]
    assert proxy.requests == [SeenRequest("GET", VERSIONS, 200, 200)]


async def test_forwards_token_body_query_and_errors(
    proxy: FaultProxy,
    http: aiohttp.ClientSession,
    homeserver: DevHomeserver,
    user: TestUser,
) -> None:
    assert (await _json(http, "GET", proxy.url + WHOAMI, user.access_token))[
        "user_id"
    ] == user.user_id
    room_id = await _create_room(http, proxy.url, user.access_token)
    for n in range(3):
        await _json(
            http,
            "PUT",
            proxy.url + _send_path(room_id, f"t{n}"),
            user.access_token,
            {"msgtype": "m.text", "body": f"through the proxy {n}"},
        )
    assert [
        body for _, body in await _room_texts(http, homeserver, room_id, user.access_token)
    ] == [f"through the proxy {n}" for n in range(3)]

    # The query string reaches Synapse: limit=1 gives exactly the newest event.
    messages = f"/_matrix/client/v3/rooms/{quote(room_id)}/messages"
    page = await _json(http, "GET", f"{proxy.url}{messages}?dir=b&limit=1", user.access_token)
    assert [e["content"].get("body") for e in page["chunk"]] == ["through the proxy 2"]

    # Synapse's own errors pass unchanged.
    status, raw = await _call(http, "GET", proxy.url + WHOAMI)
    assert status == 401
    assert json.loads(raw)["errcode"] == "M_MISSING_TOKEN"
    # Paths are recorded decoded and without their query.
    decoded = f"/_matrix/client/v3/rooms/{room_id}/messages"
    assert proxy.seen(r"/messages$") == [SeenRequest("GET", decoded, 200, 200)]


async def test_long_poll_sync_stays_open_among_concurrent_requests(
    proxy: FaultProxy,
    http: aiohttp.ClientSession,
    homeserver: DevHomeserver,
    user: TestUser,
) -> None:
    room_id = await _create_room(http, homeserver.url, user.access_token)
    sync = f"{proxy.url}/_matrix/client/v3/sync"
    first = await _json(http, "GET", f"{sync}?timeout=0", user.access_token)

    long_poll = asyncio.create_task(
        _json(
            http,
            "GET",
            f"{sync}?timeout=30000&since={first['next_batch']}",
            user.access_token,
        )
    )
    statuses = await asyncio.gather(*(_call(http, "GET", proxy.url + VERSIONS) for _ in range(40)))
    assert [status for status, _ in statuses] == [200] * 40
    assert not long_poll.done()

    # Sent straight to Synapse: only the held /sync can bring it back through the proxy.
    await _json(
        http,
        "PUT",
        homeserver.url + _send_path(room_id, "wake"),
        user.access_token,
        {"msgtype": "m.text", "body": "wake up"},
    )
    woken = await asyncio.wait_for(long_poll, timeout=20)
    timeline = woken["rooms"]["join"][room_id]["timeline"]["events"]
    assert "wake up" in [e["content"].get("body") for e in timeline]


async def test_media_of_a_few_megabytes_round_trips(
    proxy: FaultProxy, http: aiohttp.ClientSession, user: TestUser
) -> None:
    blob = secrets.token_bytes(3 * 1024 * 1024)
    async with http.post(
        f"{proxy.url}/_matrix/media/v3/upload?filename=blob.bin",
        data=io.BytesIO(blob),
        headers={**_auth(user.access_token), "Content-Type": "application/octet-stream"},
    ) as resp:
        assert resp.status == 200, await resp.text()
        mxc = (await resp.json())["content_uri"]
    server, media_id = mxc.removeprefix("mxc://").split("/")
    download = f"{proxy.url}/_matrix/client/v1/media/download/{server}/{media_id}"
    async with http.get(download, headers=_auth(user.access_token)) as resp:
        assert resp.status == 200
        assert await resp.read() == blob


async def test_forwards_headers_and_raw_paths_exactly(http: aiohttp.ClientSession) -> None:
    """Against a local echo server, which shows what an upstream receives."""

    async def echo(request: web.Request) -> web.Response:
        headers: CIMultiDict[str] = CIMultiDict()
        headers.add("Set-Cookie", "a=1")
        headers.add("Set-Cookie", "b=2")
        headers["Keep-Alive"] = "timeout=5"
        headers["Connection"] = "keep-alive, X-Upstream-Hop"
        headers["X-Upstream-Hop"] = "drop me"
        headers["Content-Encoding"] = "gzip"
        seen = {
            "raw_path": request.raw_path,
            "headers": [[k.lower(), v] for k, v in request.headers.items()],
            "body": (await request.read()).hex(),
        }
        return web.Response(body=gzip.compress(json.dumps(seen).encode()), headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    # Without decompression, so the echo shows the body exactly as it arrived.
    runner = web.AppRunner(app, access_log=None, auto_decompress=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    upstream = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with FaultProxy(upstream) as proxy:
            raw_path = "/_matrix/client/v3/rooms/%21r%3Ahs/state/x.y/a%2Fb?since=s%2072&f=%7B%7D"
            body = gzip.compress(b'{"hello": "world"}')
            async with http.put(
                # encoded=True: the client itself must not normalise %21 to "!".
                URL(proxy.url + raw_path, encoded=True),
                data=body,
                headers=[
                    ("Content-Type", "application/json"),
                    ("Content-Encoding", "gzip"),
                    ("X-Repeated", "one"),
                    ("X-Repeated", "two"),
                    ("Connection", "keep-alive, X-Client-Hop"),
                    ("X-Client-Hop", "drop me"),
                    ("Proxy-Authorization", "Basic c2VjcmV0"),
                ],
                auto_decompress=False,
                # Whatever User-Agent arrives upstream would then be the proxy's own.
                skip_auto_headers=("User-Agent",),
            ) as resp:
                assert resp.status == 200
                assert resp.headers.getall("Set-Cookie") == ["a=1", "b=2"]
                assert "X-Upstream-Hop" not in resp.headers
                assert "Keep-Alive" not in resp.headers
                assert resp.headers["Content-Encoding"] == "gzip"
                seen = json.loads(gzip.decompress(await resp.read()))
    finally:
        await runner.cleanup()

    assert seen["raw_path"] == raw_path
    assert bytes.fromhex(seen["body"]) == body
    received = seen["headers"]
    names = {name for name, _ in received}
    assert ["x-repeated", "one"] in received and ["x-repeated", "two"] in received
    assert ["content-encoding", "gzip"] in received
    assert ["content-type", "application/json"] in received
    assert ["content-length", str(len(body))] in received
    assert ["host", upstream.removeprefix("http://")] in received
    assert not names & {"x-client-hop", "proxy-authorization", "keep-alive", "user-agent"}
    assert proxy.requests == [
        SeenRequest("PUT", "/_matrix/client/v3/rooms/!r:hs/state/x.y/a/b", 200, 200)
    ]


# -- fault rules -------------------------------------------------------------


async def test_fail_answers_without_asking_synapse_then_passes(
    proxy: FaultProxy,
    http: aiohttp.ClientSession,
    homeserver: DevHomeserver,
    user: TestUser,
) -> None:
    room_id = await _create_room(http, homeserver.url, user.access_token)
    rule = proxy.fail(r"/send/m\.room\.message/", status=502, times=2, method="PUT")
    other_method = proxy.fail(r"/versions$", method="POST")

    results = []
    for n in range(3):
        results.append(
            await _call(
                http,
                "PUT",
                proxy.url + _send_path(room_id, f"f{n}"),
                user.access_token,
                {"msgtype": "m.text", "body": f"attempt {n}"},
            )
        )
        # A request the rule does not match is never affected, nor counted.
        assert (await _call(http, "GET", proxy.url + VERSIONS))[0] == 200

    assert [status for status, _ in results] == [502, 502, 200]
    assert b"<title>502 Bad Gateway</title>" in results[0][1]
    assert rule.hits == 2 and not rule.active
    assert other_method.hits == 0
    assert [(r.status, r.upstream_status) for r in proxy.seen("/send/", method="PUT")] == [
        (502, None),
        (502, None),
        (200, 200),
    ]
    # The failed attempts never reached Synapse.
    assert [
        body for _, body in await _room_texts(http, homeserver, room_id, user.access_token)
    ] == ["attempt 2"]


async def test_fail_with_a_json_body_until_cleared(
    proxy: FaultProxy, http: aiohttp.ClientSession
) -> None:
    limited = {"errcode": "M_LIMIT_EXCEEDED", "error": "Too many", "retry_after_ms": 10}
    rule = proxy.fail(VERSIONS, status=429, times=None, body=limited)
    for _ in range(4):
        async with http.get(proxy.url + VERSIONS) as resp:
            assert resp.status == 429
            assert await resp.json() == limited
    assert rule.hits == 4 and rule.active
    proxy.clear()
    assert (await _call(http, "GET", proxy.url + VERSIONS))[0] == 200
    assert rule.hits == 4


async def test_fail_after_upstream_lets_synapse_act(
    proxy: FaultProxy,
    http: aiohttp.ClientSession,
    homeserver: DevHomeserver,
    user: TestUser,
) -> None:
    room_id = await _create_room(http, homeserver.url, user.access_token)
    rule = proxy.fail_after_upstream(r"/send/m\.room\.message/", status=504)
    url = proxy.url + _send_path(room_id, "once")
    content = {"msgtype": "m.text", "body": "sent once"}

    status, raw = await _call(http, "PUT", url, user.access_token, content)
    assert status == 504
    assert b"504 Gateway Timeout" in raw
    [(event_id, body)] = await _room_texts(http, homeserver, room_id, user.access_token)
    assert body == "sent once"

    # The client's retry with the same transaction id gets the event that already exists.
    retried = await _json(http, "PUT", url, user.access_token, content)
    assert retried["event_id"] == event_id
    assert len(await _room_texts(http, homeserver, room_id, user.access_token)) == 1
    assert rule.hits == 1
    assert [(r.status, r.upstream_status) for r in proxy.seen("/send/")] == [(504, 200), (200, 200)]


async def test_reset_gives_a_connection_error_then_passes(
    proxy: FaultProxy, http: aiohttp.ClientSession, user: TestUser
) -> None:
    login = "/_matrix/client/v3/login"
    rule = proxy.reset(login, method="POST")
    with pytest.raises(aiohttp.ClientConnectionError):
        await _call(http, "POST", proxy.url + login, body={"type": "m.login.password"})
    status, _ = await _call(http, "POST", proxy.url + login, body={"type": "m.login.password"})
    assert status == 400  # Synapse's own answer to an incomplete login
    assert rule.hits == 1
    assert [r.status for r in proxy.seen(login)] == [None, 400]


async def test_reset_is_a_tcp_reset_not_an_orderly_close(proxy: FaultProxy) -> None:
    proxy.reset(VERSIONS)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(f"GET {VERSIONS} HTTP/1.1\r\nHost: hs\r\n\r\n".encode())
        await writer.drain()
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()


async def test_aiohttp_retries_a_reset_idempotent_request_once(
    proxy: FaultProxy, http: aiohttp.ClientSession, user: TestUser
) -> None:
    """GET, PUT and DELETE are resent once by aiohttp (so by nio): one reset goes unseen."""
    once = proxy.reset(r"/whoami$", times=1)
    whoami = await _json(http, "GET", proxy.url + WHOAMI, user.access_token)
    assert whoami["user_id"] == user.user_id
    assert once.hits == 1

    twice = proxy.reset(r"/whoami$", times=2)
    with pytest.raises(aiohttp.ClientConnectionError):
        await _call(http, "GET", proxy.url + WHOAMI, user.access_token)
    assert twice.hits == 2
    assert [r.status for r in proxy.seen(WHOAMI)] == [None, 200, None, None]


async def test_down_answers_everything_until_up(
    proxy: FaultProxy, http: aiohttp.ClientSession, user: TestUser
) -> None:
    waiting = proxy.fail(VERSIONS)
    outage = proxy.down(status=503)
    for path in (VERSIONS, WHOAMI, "/_matrix/client/v3/sync"):
        status, raw = await _call(http, "GET", proxy.url + path, user.access_token)
        assert status == 503
        assert b"503 Service Unavailable" in raw
    assert outage.hits == 3
    # While down, no other rule is used up.
    assert waiting.hits == 0

    proxy.up()
    assert (await _call(http, "GET", proxy.url + WHOAMI, user.access_token))[0] == 200
    assert (await _call(http, "GET", proxy.url + VERSIONS))[0] == 502
    assert (await _call(http, "GET", proxy.url + VERSIONS))[0] == 200
    assert outage.hits == 3 and waiting.hits == 1


async def test_down_without_a_status_closes_connections(
    proxy: FaultProxy, http: aiohttp.ClientSession
) -> None:
    outage = proxy.down(status=None)
    for _ in range(2):
        with pytest.raises(aiohttp.ClientConnectionError):
            await _call(http, "GET", proxy.url + VERSIONS)
    proxy.up()
    assert (await _call(http, "GET", proxy.url + VERSIONS))[0] == 200
    # Each GET was tried twice: aiohttp resends an idempotent request once on a reset.
    assert outage.hits == 4
    assert [r.status for r in proxy.requests] == [None, None, None, None, 200]


async def test_unreachable_upstream_is_a_bad_gateway(http: aiohttp.ClientSession) -> None:
    async with FaultProxy(f"http://127.0.0.1:{_unused_port()}") as proxy:
        status, raw = await _call(http, "GET", proxy.url + VERSIONS)
    assert status == 502
    assert b"502 Bad Gateway" in raw
    assert proxy.requests == [SeenRequest("GET", VERSIONS, 502, None)]


async def test_stop_ends_a_long_poll_in_flight(
    homeserver: DevHomeserver, http: aiohttp.ClientSession, user: TestUser
) -> None:
    proxy = await FaultProxy(homeserver.url).start()
    sync = f"{proxy.url}/_matrix/client/v3/sync"
    first = await _json(http, "GET", f"{sync}?timeout=0", user.access_token)
    long_poll = asyncio.create_task(
        _call(http, "GET", f"{sync}?timeout=30000&since={first['next_batch']}", user.access_token)
    )
    await asyncio.sleep(0.2)
    assert not long_poll.done()
    await asyncio.wait_for(proxy.stop(), timeout=10)
    try:
        status, _ = await asyncio.wait_for(long_poll, timeout=10)
    except aiohttp.ClientConnectionError:
        pass
    else:
        assert status == 502


# -- a real homeserver restart -----------------------------------------------


@pytest.fixture
async def restartable(homeserver: DevHomeserver) -> AsyncIterator[DevHomeserver]:
    """The session's Synapse, running again after the test whatever the test did to it."""
    try:
        yield homeserver
    finally:
        if not homeserver.is_running():
            await asyncio.to_thread(homeserver.start)


async def test_homeserver_restart_is_502_then_works_again(
    restartable: DevHomeserver, http: aiohttp.ClientSession, user: TestUser
) -> None:
    hs = restartable
    port = hs.port
    async with FaultProxy(hs.url) as proxy:
        whoami = await _json(http, "GET", proxy.url + WHOAMI, user.access_token)
        assert whoami["user_id"] == user.user_id

        # In a thread: the proxy keeps answering in this loop while Synapse stops and starts.
        await asyncio.to_thread(hs.stop)
        status, raw = await _call(http, "GET", proxy.url + WHOAMI, user.access_token)
        assert status == 502
        assert b"502 Bad Gateway" in raw

        # Poll through the proxy while Synapse starts, as a client retrying would.
        starting = asyncio.create_task(asyncio.to_thread(hs.start))
        polled: list[int] = []
        while True:
            # start() returns once Synapse answers, so a poll begun after it must pass.
            started = starting.done()
            status, _ = await _call(http, "GET", proxy.url + WHOAMI, user.access_token)
            polled.append(status)
            if status == 200 or started:
                break
            await asyncio.sleep(0.05)
        await starting

    # Same port, same database: the token from before the restart still works.
    assert hs.port == port
    assert polled[-1] == 200
    assert set(polled[:-1]) <= {502}
    assert [r.upstream_status for r in proxy.seen(WHOAMI)][:2] == [200, None]
