"""The admin HTTP API, /health and /metrics against the running bridge and the real Synapse."""

from __future__ import annotations

import asyncio
import io
import secrets
import subprocess
import zipfile
from datetime import timedelta

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.app import App, default_features
from bridge.config import hash_token
from bridge.core.model import AppendAudit
from bridge.core.sla import Clock, ClockState
from bridge.features.http import http_installer, install_http
from bridge.features.voice import install_voice
from bridge.store import clocks, pairs
from bridge.web.openapi import OPENAPI
from bridge.web.server import HttpServer
from tests.features.test_pair_rooms import wait_until
from tests.support.bridge_app import bridge_config

pytestmark = pytest.mark.integration

TOKEN = "api-test-" + secrets.token_urlsafe(16)
METHODS = {"get", "post", "put", "patch", "delete"}


def _register(homeserver, prefix: str) -> str:
    user_id, _ = homeserver.register_user(
        f"{prefix}-{secrets.token_hex(4)}", secrets.token_urlsafe(12)
    )
    return user_id


def without_http() -> list:
    """The default features minus the configured HTTP server (tests bind a free port)."""
    return [f for f in default_features() if f is not install_http]


@pytest.fixture(scope="module")
async def api(homeserver, tmp_path_factory):
    """One running bridge with HTTP on a free port, shared by this module's tests."""
    password = secrets.token_urlsafe(12)
    bot, _ = homeserver.register_user(f"apibot-{secrets.token_hex(4)}", password)
    cfg = bridge_config(
        homeserver,
        bot,
        password,
        tmp_path_factory.mktemp("api") / "data",
        http={"enabled": True, "admin_tokens": [hash_token(TOKEN)]},
    )
    servers: list[HttpServer] = []
    features = [
        *(f for f in default_features() if f is not install_http),
        install_voice,
        http_installer(port=0, on_ready=servers.append),
    ]
    app = App(cfg, features=features)
    await app.start()
    try:
        assert servers and servers[0].port, "the HTTP server did not report its port"
        async with aiohttp.ClientSession(servers[0].base_url) as session:
            yield app, servers[0], session
    finally:
        await app.stop()


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _api_operations() -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, item in OPENAPI["paths"].items()
        for method in item
        if method in METHODS
    ]


async def test_openapi_describes_every_route(api):
    _app, server, session = api
    served = {
        (route.method, route.resource.canonical)
        for route in server.web_app.router.routes()
        if route.method != "HEAD"
        and route.resource is not None
        and not route.resource.canonical.startswith("/dashboard")
        and route.resource.canonical != "/"
    }
    assert served == set(_api_operations())
    async with session.get("/api/v1/openapi.json") as resp:
        assert resp.status == 200
        doc = await resp.json()
    assert doc["openapi"].startswith("3.") and doc["paths"].keys() == OPENAPI["paths"].keys()


@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_every_protected_route_refuses_a_missing_or_wrong_token(api, token):
    _app, _server, session = api
    protected = [
        (method, path)
        for method, path in _api_operations()
        if OPENAPI["paths"][path][method.lower()].get("security") != []
    ]
    assert len(protected) >= 10
    headers = _auth(token) if token else {}
    for method, path in protected:
        url = path.replace("{ref}", "NOPE")
        async with session.request(method, url, headers=headers, json={}) as resp:
            assert resp.status == 401, (method, path)
            body = await resp.json()
            assert body["error"] == "unauthorized"
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_pairs_create_list_show_reassign_export_remove(api, homeserver):
    app, _server, session = api
    patient = _register(homeserver, "apipatient")
    therapist = _register(homeserver, "apitherapist")
    other = _register(homeserver, "apitherapist2")
    body = {"patient": patient, "therapist": therapist}

    async with session.post("/api/v1/pairs", json=body, headers=_auth()) as resp:
        assert resp.status == 201
        created = await resp.json()
    pair = created["pair"]
    assert created["created"] is True and pair["status"] == "active" and pair["room_id"]
    async with session.post("/api/v1/pairs", json=body, headers=_auth()) as resp:
        assert resp.status == 200 and (await resp.json())["created"] is False

    async with session.get("/api/v1/pairs?status=active", headers=_auth()) as resp:
        listed = (await resp.json())["pairs"]
    assert pair["pair_id"] in [p["pair_id"] for p in listed]

    async with session.get(f"/api/v1/pairs/{pair['label']}", headers=_auth()) as resp:
        shown = await resp.json()
    assert shown["pair"]["pair_id"] == pair["pair_id"] and shown["open_clock"] is None

    async with session.post(
        f"/api/v1/pairs/{pair['label']}/reassign", json={"therapist": other}, headers=_auth()
    ) as resp:
        assert resp.status == 200
        assert (await resp.json())["pair"]["therapist_id"] == other

    async with session.get(f"/api/v1/pairs/{pair['pair_id']}/export", headers=_auth()) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/zip"
        data = await resp.read()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert {"transcript.html", "transcript.json", "manifest.json"} <= set(zf.namelist())

    async with session.delete(f"/api/v1/pairs/{pair['label']}", headers=_auth()) as resp:
        assert resp.status == 200 and (await resp.json())["pair"]["status"] == "removed"
    actions = [
        r["action"]
        for r in await app.parts.db.fetch(
            "SELECT action, actor FROM audit_entries WHERE pair_id = ? AND actor = 'api'",
            pair["pair_id"],
        )
    ]
    assert {"pair.created", "pair.reassigned", "pair.removed"} <= set(actions)

    # Reassigning a closed pair is a conflict, not a crash.
    async with session.post(
        f"/api/v1/pairs/{pair['label']}/reassign", json={"therapist": therapist}, headers=_auth()
    ) as resp:
        assert resp.status == 409 and (await resp.json())["error"] == "conflict"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error"),
    [
        ("POST", "/api/v1/pairs", {"patient": "bob", "therapist": "@t:x"}, 400, "bad_request"),
        ("POST", "/api/v1/pairs", [1, 2], 400, "bad_request"),
        (
            "POST",
            "/api/v1/pairs",
            {"patient": "@p:localhost", "therapist": "@t:localhost", "policy": "nope"},
            400,
            "unknown_policy",
        ),
        ("GET", "/api/v1/pairs/ZZZZ", None, 404, "pair_not_found"),
        ("DELETE", "/api/v1/pairs/ZZZZ", None, 404, "pair_not_found"),
        ("GET", "/api/v1/pairs?status=sleeping", None, 400, "bad_request"),
        ("GET", "/api/v1/sla/report?from=yesterday", None, 400, "bad_request"),
        ("GET", "/api/v1/nothing-here", None, 404, "not_found"),
        ("PUT", "/api/v1/pairs", {}, 405, "method_not_allowed"),
    ],
)
async def test_errors_are_named_json(api, method, path, body, status, error):
    _app, _server, session = api
    async with session.request(method, path, json=body, headers=_auth()) as resp:
        assert resp.status == status
        payload = await resp.json()
    assert payload["error"] == error and payload["message"]


async def test_policies_clocks_and_sla_report(api, homeserver):
    app, _server, session = api
    patient = _register(homeserver, "clockpatient")
    therapist = _register(homeserver, "clocktherapist")
    record, _ = await app.parts.pairs.add_pair(patient, therapist, app.service.clock())
    now = app.service.clock()
    late = Clock(
        pair_id=record.pair_id,
        clock_id=f"late-{secrets.token_hex(4)}",
        therapist_id=therapist,
        policy="default",
        opened_at=now - timedelta(hours=30),
        first_event_id="$first-late",
        first_kind="text",
        due_at=now - timedelta(hours=6),
        state=ClockState.CLOSED,
        closed_at=now - timedelta(hours=1),
        closed_by=therapist,
        response_working=timedelta(hours=9),
        response_calendar=timedelta(hours=29),
        met=False,
    )
    waiting = Clock(
        pair_id=record.pair_id,
        clock_id=f"open-{secrets.token_hex(4)}",
        therapist_id=therapist,
        policy="default",
        opened_at=now - timedelta(minutes=30),
        first_event_id="$first-open",
        first_kind="text",
        due_at=now + timedelta(hours=3),
    )
    await clocks.save(app.parts.db, late)
    await clocks.save(app.parts.db, waiting)

    async with session.get("/api/v1/policies", headers=_auth()) as resp:
        policies = (await resp.json())["policies"]
    assert policies["default"]["window"] == app.cfg.policies["default"].window.total_seconds()

    async with session.get(f"/api/v1/clocks?therapist={therapist}", headers=_auth()) as resp:
        open_clocks = (await resp.json())["clocks"]
    assert [(c["clock_id"], c["label"], c["overdue"]) for c in open_clocks] == [
        (waiting.clock_id, record.label, False)
    ]

    async with session.get(f"/api/v1/pairs/{record.label}", headers=_auth()) as resp:
        assert (await resp.json())["open_clock"]["clock_id"] == waiting.clock_id

    async with session.get("/api/v1/sla/report", headers=_auth()) as resp:
        report = await resp.json()
    row = next(r for r in report["rows"] if r["therapist_id"] == therapist)
    assert row["replies"] == 1 and row["breaches"] == 1 and row["median_seconds"] == 9 * 3600


async def test_audit_verify_checks_without_writing_to_the_chain(api):
    app, _server, session = api
    await app.parts.audit.record({"action": "test.entry", "actor": "test"}, app.service.clock())
    before = await app.parts.db.fetchrow("SELECT seq, head_hash FROM audit_head")
    for body in ({}, {"check_content": True}):
        async with session.post("/api/v1/audit/verify", json=body, headers=_auth()) as resp:
            assert resp.status == 200
            result = await resp.json()
        assert result["ok"] is True and result["count"] > 0
    # The bridge may append entries of its own meanwhile; none is the check's.
    assert not await app.parts.db.fetchval(
        "SELECT COUNT(*) FROM audit_entries WHERE action = 'audit.verify'"
    )
    assert result["count"] >= before["seq"]


async def test_health_and_metrics(api):
    app, _server, session = api
    await wait_until(
        lambda: _async_true(app.bot.stats.synced_batches > 0), timeout=30, what="first sync"
    )
    async with session.get("/health") as resp:
        health = await resp.json()
        assert resp.status == 200, health
    assert health["status"] == "ok"
    assert {"homeserver", "database", "sync"} <= health["checks"].keys()
    assert health["attention"] == {"escalations_waiting": 0}

    async with session.get("/metrics", headers=_auth()) as resp:
        assert resp.status == 200
        text = await resp.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["confidant_sync_lag_seconds"].samples[0].value >= 0

    # Rejections and breaches counted from the audit log, incrementally between scrapes.
    async def rejected() -> dict[str, float]:
        async with session.get("/metrics", headers=_auth()) as resp:
            scraped = {f.name: f for f in text_string_to_metric_families(await resp.text())}
        return {
            s.labels["reason"]: s.value
            for s in scraped["confidant_emails_rejected"].samples
            if s.name.endswith("_total")
        }

    before = (await rejected()).get("dkim_fail", 0)
    for _ in range(2):
        async with app.parts.db.transaction() as tx:
            await app.parts.audit.append(
                tx,
                AppendAudit(
                    None, "email.rejected", "smtp", {"reason": "dkim_fail"}, outcome="refused"
                ),
                app.service.clock(),
            )
        before += 1
        assert (await rejected())["dkim_fail"] == before
    for name in (
        "confidant_messages",
        "confidant_outbox_depth",
        "confidant_decryption_failures",
        "confidant_sla_breaches",
        "confidant_sla_reminders",
        "confidant_emails_rejected",
        "confidant_sync_lag_seconds",
    ):
        assert name in families, name
    pairs = {s.labels["status"]: s.value for s in families["confidant_pairs"].samples}
    assert pairs.get("active", 0) >= 1
    for family in families.values():
        for sample in family.samples:
            for value in sample.labels.values():
                # No user id, room id, address or free text ever becomes a label.
                assert not set(value) & set("@!:$ <>"), (sample.name, value)


async def _async_true(value: bool) -> bool:
    return value


async def test_voice_upload_is_converted_queued_and_posted(api, homeserver, tmp_path):
    app, _server, session = api
    patient = _register(homeserver, "voicepatient")
    therapist = _register(homeserver, "voicetherapist")
    record, _ = await app.parts.pairs.add_pair(patient, therapist, app.service.clock())
    wav = tmp_path / "note.wav"
    await asyncio.to_thread(
        subprocess.run,
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=2", wav],
        check=True,
        timeout=60,
    )
    async with session.post(
        f"/api/v1/pairs/{record.label}/voice?filename=note.wav",
        data=wav.read_bytes(),
        headers={**_auth(), "Content-Type": "audio/wav"},
    ) as resp:
        assert resp.status == 202, await resp.text()
        queued = await resp.json()
    assert queued["duration_ms"] == pytest.approx(2000, abs=500)

    async def posted():
        return (
            await app.parts.db.fetchval(
                "SELECT status FROM voice_jobs WHERE job_id = ?", queued["job_id"]
            )
            == "sent"
        )

    await wait_until(posted, timeout=30, what="the queued voice message posted")

    async with session.post(
        f"/api/v1/pairs/{record.label}/voice", data=b"not audio at all", headers=_auth()
    ) as resp:
        assert resp.status == 422 and (await resp.json())["error"] == "bad_audio"


async def test_a_patient_on_another_server_is_refused_with_422(api, homeserver):
    _app, _server, session = api
    therapist = _register(homeserver, "th")
    body = {"patient": "@pat:elsewhere.example", "therapist": therapist}
    async with session.post("/api/v1/pairs", json=body, headers=_auth()) as resp:
        assert resp.status == 422
        answer = await resp.json()
    assert answer["error"] == "foreign_user"
    assert answer["detail"].startswith("patient must be an account on ")
    local = _register(homeserver, "pat")
    body = {"patient": local, "therapist": "@dr:elsewhere.example"}
    async with session.post("/api/v1/pairs", json=body, headers=_auth()) as resp:
        assert resp.status == 422
        assert (await resp.json())["detail"].startswith("therapist must be")


async def test_an_account_the_homeserver_does_not_have_is_refused_before_any_room(api, homeserver):
    app, _server, session = api
    therapist = _register(homeserver, "th")
    ghost = f"@ghost-{secrets.token_hex(3)}:{homeserver.server_name}"
    before = len(await pairs.list_pairs(app.parts.db))
    body = {"patient": ghost, "therapist": therapist}
    async with session.post("/api/v1/pairs", json=body, headers=_auth()) as resp:
        assert resp.status == 422
        answer = await resp.json()
    assert answer["error"] == "no_account" and ghost in answer["detail"]
    assert len(await pairs.list_pairs(app.parts.db)) == before


@pytest.mark.parametrize("depth", [33, 100_000])
async def test_a_deeply_nested_body_is_a_400_not_a_500(api, depth):
    _app, _server, session = api
    for text in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
        headers = {**_auth(), "Content-Type": "application/json"}
        async with session.post("/api/v1/pairs", data=text, headers=headers) as resp:
            assert resp.status == 400
            answer = await resp.json()
        assert answer["error"] == "bad_request"
        assert "nests deeper than 32" in answer["detail"]


async def test_a_body_over_the_size_limit_is_413(api):
    _app, _server, session = api
    text = '{"patient": "' + "x" * (2 << 20) + '"}'
    headers = {**_auth(), "Content-Type": "application/json"}
    async with session.post("/api/v1/pairs", data=text, headers=headers) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"] == "too_large"
