"""The admin HTTP API's invitation calls against the running bridge, the real Synapse and a
real SMTP server: the e-mail arrives, the code stays out of every answer but one, and a
revoked code is gone from the homeserver."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiosmtpd.smtp import SMTP

from bridge.app import App, default_features
from bridge.config import hash_token
from bridge.features.http import http_installer, install_http
from bridge.features.onboarding.synapse_admin import SynapseAdminApi
from bridge.store import languages
from bridge.web.server import HttpServer
from dev.devhs import DevHomeserver
from tests.adapters.test_mailer import Sink, body_of, outbound
from tests.conftest import TestUser
from tests.features.test_onboarding import CODE, register
from tests.support.bridge_app import bridge_config

pytestmark = pytest.mark.integration

TOKEN = "invite-api-" + secrets.token_urlsafe(16)
AUTH = {"Authorization": f"Bearer {TOKEN}"}

Bridge = tuple[App, aiohttp.ClientSession, str]
MakeUser = Callable[..., TestUser]


def _register(
    homeserver: DevHomeserver, prefix: str, *, admin: bool = False
) -> tuple[str, str, str]:
    """A fresh account: (user id, password, access token)."""
    password = secrets.token_urlsafe(12)
    user_id, token = homeserver.register_user(
        f"{prefix}-{secrets.token_hex(4)}", password, admin=admin
    )
    return user_id, password, token


async def _running_bridge(
    homeserver: DevHomeserver, data_dir: Path, **overrides: Any
) -> tuple[App, str]:
    """A bridge serving HTTP on a free port; returns it and its base URL."""
    bot, password, _ = _register(homeserver, "invbot")
    cfg = bridge_config(
        homeserver,
        bot,
        password,
        data_dir,
        http={"enabled": True, "admin_tokens": [hash_token(TOKEN)]},
        **overrides,
    )
    servers: list[HttpServer] = []
    features = [
        *(f for f in default_features() if f is not install_http),
        http_installer(port=0, on_ready=servers.append),
    ]
    app = App(cfg, features=features)
    await app.start()
    if not servers or not servers[0].port:
        await app.stop()
        pytest.fail("the HTTP server did not report its port")
    return app, servers[0].base_url


@pytest.fixture(scope="module")
async def sink() -> AsyncIterator[Sink]:
    """An aiosmtpd server on 127.0.0.1 that keeps what it is given."""
    kept = Sink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(kept, hostname="localhost"), "127.0.0.1", 0)
    kept.port = server.sockets[0].getsockname()[1]
    try:
        yield kept
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture(scope="module")
async def bridge(
    homeserver: DevHomeserver, sink: Sink, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Bridge]:
    """One bridge with an admin token for Synapse and e-mail to the sink, shared here."""
    _admin, _, admin_token = _register(homeserver, "invadmin", admin=True)
    app, base_url = await _running_bridge(
        homeserver,
        tmp_path_factory.mktemp("invitations") / "data",
        synapse_admin={"access_token": admin_token},
        outbound_email=outbound(sink.port),
    )
    try:
        async with aiohttp.ClientSession(base_url) as session:
            yield app, session, admin_token
    finally:
        await app.stop()


def _admin_api(app: App, token: str) -> SynapseAdminApi:
    """The test's own look at the homeserver's registration tokens."""
    assert app.parts is not None
    return SynapseAdminApi(app.parts.rest, token)


def later(app: App, step: timedelta, monkeypatch: pytest.MonkeyPatch) -> None:
    """Move the bridge's clock on by `step` until the test ends (the resend limit counts in
    the bridge's time)."""
    assert app.service is not None
    now = app.service.clock() + step
    monkeypatch.setattr(app.service, "clock", lambda: now)


async def _therapist(app: App, make_user: MakeUser) -> str:
    assert app.parts is not None and app.service is not None
    user_id: str = make_user("invtherapist").user_id
    await app.parts.pairs.ensure_therapist(user_id, app.service.clock())
    return user_id


async def test_without_a_bearer_token_nothing_is_shown_or_made(bridge: Bridge) -> None:
    _app, session, _admin = bridge
    for method, path in [
        ("GET", "/api/v1/invitations"),
        ("POST", "/api/v1/invitations"),
        ("GET", "/api/v1/invitations/abcd1234"),
        ("POST", "/api/v1/invitations/abcd1234/revoke"),
    ]:
        async with session.request(
            method, path, json={"email": "x@example.org", "therapist": "@t:x"}
        ) as resp:
            assert resp.status == 401, (method, path)
            assert (await resp.json())["error"] == "unauthorized"


async def test_create_list_resend_revoke(
    bridge: Bridge,
    make_user: MakeUser,
    sink: Sink,
    homeserver: DevHomeserver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, session, admin_token = bridge
    therapist = await _therapist(app, make_user)
    before = len(sink.messages)

    body = {"email": "nora@example.org", "therapist": therapist, "name": "Nora", "valid_for": "2d"}
    async with session.post("/api/v1/invitations", json=body, headers=AUTH) as resp:
        assert resp.status == 201, await resp.text()
        created = await resp.json()
    assert created["email_sent"] is True and "code" not in created
    invitation = created["invitation"]
    assert invitation["status"] == "pending" and invitation["sent_count"] == 1
    assert (invitation["email"], invitation["therapist_id"]) == ("nora@example.org", therapist)

    messages = await sink.wait(before + 1)
    assert messages[before]["To"] == "nora@example.org"
    found = CODE.search(body_of(messages[before]))
    assert found is not None
    code = found.group()
    admin_api = _admin_api(app, admin_token)
    assert await admin_api.token_info(code) is not None

    async with session.get("/api/v1/invitations?status=pending", headers=AUTH) as resp:
        listed = await resp.json()
    assert invitation["invitation_id"] in [i["invitation_id"] for i in listed["invitations"]]
    async with session.get(
        f"/api/v1/invitations/{invitation['invitation_id']}", headers=AUTH
    ) as resp:
        assert (await resp.json())["invitation"] == invitation
    # The code is in none of the answers above.
    assert code not in str(listed) and code not in str(created)

    invitation_path = f"/api/v1/invitations/{invitation['invitation_id']}"
    later(app, timedelta(seconds=61), monkeypatch)  # past the resend limit's minute
    async with session.post(f"{invitation_path}/resend", headers=AUTH) as resp:
        assert resp.status == 200 and (await resp.json())["invitation"]["sent_count"] == 2
    reminder = (await sink.wait(before + 2))[before + 1]
    assert code in body_of(reminder)

    async with session.post(f"{invitation_path}/revoke", headers=AUTH) as resp:
        assert resp.status == 200
        assert (await resp.json())["invitation"]["status"] == "revoked"
    assert await admin_api.token_info(code) is None
    status, _ = await register(homeserver.url, f"nora{secrets.token_hex(3)}", "nora-pass-1", code)
    assert status != 200

    # A revoked invitation can be neither revoked nor resent again.
    for action in ("revoke", "resend"):
        async with session.post(f"{invitation_path}/{action}", headers=AUTH) as resp:
            assert resp.status == 409
            assert (await resp.json())["error"] == "invitation_refused"


async def test_an_invitation_in_the_patients_language(
    bridge: Bridge, make_user: MakeUser, sink: Sink
) -> None:
    app, session, _ = bridge
    therapist = await _therapist(app, make_user)
    before = len(sink.messages)
    body = {"email": "lena@example.org", "therapist": therapist, "language": "de"}
    async with session.post("/api/v1/invitations", json=body, headers=AUTH) as resp:
        assert resp.status == 201, await resp.text()
        invitation = (await resp.json())["invitation"]
    messages = await sink.wait(before + 1)
    assert str(messages[before]["Subject"]).startswith("Ihre Einladung")
    assert app.parts is not None
    assert await languages.of_invitation(app.parts.db, invitation["invitation_id"]) == "de"

    for wrong in ("klingon", 7):
        body = {"email": "lena2@example.org", "therapist": therapist, "language": wrong}
        async with session.post("/api/v1/invitations", json=body, headers=AUTH) as resp:
            assert resp.status == 400
            answer = await resp.json()
        assert answer["error"] == "bad_request" and "language" in answer["detail"]
    assert len(sink.messages) == before + 1  # nothing made or sent for the refused ones


async def test_resends_are_limited_with_a_429_and_retry_after(
    bridge: Bridge, make_user: MakeUser, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, session, _admin = bridge
    therapist = await _therapist(app, make_user)
    before = len(sink.messages)
    body = {"email": "rhea@example.org", "therapist": therapist}
    async with session.post("/api/v1/invitations", json=body, headers=AUTH) as resp:
        assert resp.status == 201
        invitation_id = (await resp.json())["invitation"]["invitation_id"]
    invitation_path = f"/api/v1/invitations/{invitation_id}"

    async def resend() -> tuple[int, str | None, dict[str, Any]]:
        async with session.post(f"{invitation_path}/resend", headers=AUTH) as resp:
            return resp.status, resp.headers.get("Retry-After"), await resp.json()

    # Within the first e-mail's minute: refused, with the seconds left.
    status, retry_after, payload = await resend()
    assert (status, payload["error"]) == (429, "too_many_requests")
    assert retry_after is not None and 1 <= int(retry_after) <= 60
    assert "try again in" in payload["detail"]

    # 25 at once a minute later: exactly one e-mail goes out.
    later(app, timedelta(seconds=61), monkeypatch)
    answers = await asyncio.gather(*(resend() for _ in range(25)))
    assert sorted(status for status, _, _ in answers) == [200] + [429] * 24
    assert all(int(r) == 60 for s, r, _ in answers if s == 429 and r is not None)

    # Five e-mails in a day at most, however the minutes are spaced.
    for _ in range(3):
        later(app, timedelta(minutes=2), monkeypatch)
        assert (await resend())[0] == 200
    later(app, timedelta(minutes=2), monkeypatch)
    status, retry_after, payload = await resend()
    assert status == 429 and "5 e-mails a day" in payload["detail"]
    assert retry_after is not None and int(retry_after) > 23 * 3600
    # Each accepted resend had its e-mail taken by the relay before it answered.
    assert [m["To"] for m in sink.messages[before:]] == ["rhea@example.org"] * 5
    async with session.get(invitation_path, headers=AUTH) as resp:
        assert (await resp.json())["invitation"]["sent_count"] == 5

    # A day after the first one, a slot is free again.
    later(app, timedelta(hours=24), monkeypatch)
    assert (await resend())[0] == 200


async def test_without_email_the_code_is_in_the_create_answer_only(
    bridge: Bridge, make_user: MakeUser, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, session, admin_token = bridge
    therapist = await _therapist(app, make_user)
    monkeypatch.setattr(app.service, "mailer", None)  # outbound e-mail off
    before = len(sink.messages)
    body = {"email": "omar@example.org", "therapist": therapist}
    async with session.post("/api/v1/invitations", json=body, headers=AUTH) as resp:
        assert resp.status == 201
        created = await resp.json()
    assert created["email_sent"] is False and CODE.fullmatch(created["code"])
    assert created["invitation"]["sent_count"] == 0
    info = await _admin_api(app, admin_token).token_info(created["code"])
    assert info is not None and info["uses_allowed"] == 1
    invitation_path = f"/api/v1/invitations/{created['invitation']['invitation_id']}"
    async with session.get(invitation_path, headers=AUTH) as resp:
        assert created["code"] not in await resp.text()
    async with session.post(f"{invitation_path}/resend", headers=AUTH) as resp:
        assert resp.status == 409 and (await resp.json())["error"] == "email_off"
    assert len(sink.messages) == before


async def test_match_creates_the_pair(bridge: Bridge, make_user: MakeUser) -> None:
    app, session, _admin = bridge
    therapist = await _therapist(app, make_user)
    async with session.post(
        "/api/v1/invitations",
        json={"email": "pia@example.org", "therapist": therapist},
        headers=AUTH,
    ) as resp:
        invitation = (await resp.json())["invitation"]
    patient = make_user("invpatient").user_id
    invitation_path = f"/api/v1/invitations/{invitation['invitation_id']}"
    async with session.post(
        f"{invitation_path}/match", json={"user_id": "pia"}, headers=AUTH
    ) as resp:
        assert resp.status == 400 and (await resp.json())["error"] == "bad_request"
    async with session.post(
        f"{invitation_path}/match", json={"user_id": patient}, headers=AUTH
    ) as resp:
        assert resp.status == 200, await resp.text()
        used = (await resp.json())["invitation"]
    assert used["status"] == "used" and used["patient_id"] == patient and used["pair_id"]
    async with session.get(f"/api/v1/pairs/{used['pair_id']}", headers=AUTH) as resp:
        pair = (await resp.json())["pair"]
    assert (pair["patient_id"], pair["therapist_id"]) == (patient, therapist)
    assert pair["has_patient_email"] is True


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error"),
    [
        ("GET", "/api/v1/invitations/00000000", None, 404, "invitation_not_found"),
        ("POST", "/api/v1/invitations/00000000/revoke", None, 404, "invitation_not_found"),
        ("GET", "/api/v1/invitations?status=lost", None, 400, "bad_request"),
        (
            "POST",
            "/api/v1/invitations",
            {"email": "nobody", "therapist": "@t:x"},
            400,
            "bad_request",
        ),
        (
            "POST",
            "/api/v1/invitations",
            {"email": "a@example.org", "therapist": "@t:x", "policy": "nope"},
            400,
            "unknown_policy",
        ),
        (
            "POST",
            "/api/v1/invitations",
            {"email": "a@example.org", "therapist": "@t:x", "valid_for": "soon"},
            400,
            "bad_request",
        ),
        (
            "POST",
            "/api/v1/invitations",
            {"email": "a@example.org", "therapist": "@not-a-therapist:x"},
            409,
            "invitation_refused",
        ),
    ],
)
async def test_errors_are_named_json(
    bridge: Bridge, method: str, path: str, body: Any, status: int, error: str
) -> None:
    _app, session, _admin = bridge
    async with session.request(method, path, json=body, headers=AUTH) as resp:
        assert resp.status == status
        payload = await resp.json()
    assert payload["error"] == error and payload["message"]


async def test_without_an_admin_token_the_answer_says_what_to_do(
    homeserver: DevHomeserver, make_user: MakeUser, tmp_path: Path
) -> None:
    app, base_url = await _running_bridge(homeserver, tmp_path / "data")
    try:
        therapist = await _therapist(app, make_user)
        async with (
            aiohttp.ClientSession(base_url) as session,
            session.post(
                "/api/v1/invitations",
                json={"email": "quinn@example.org", "therapist": therapist},
                headers=AUTH,
            ) as resp,
        ):
            assert resp.status == 503
            payload = await resp.json()
        assert payload["error"] == "admin_unavailable"
        assert "synapse_admin.access_token" in payload["detail"]
    finally:
        await app.stop()
