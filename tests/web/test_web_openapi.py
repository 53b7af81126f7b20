"""The shipped OpenAPI file against the routes the web face serves, without a running bridge."""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridge.store.invitations import InvitationStatus
from bridge.store.pairs import PairStatus
from bridge.web.auth import PUBLIC_PATHS
from bridge.web.deps import HealthSources, MetricsSource, WebDeps
from bridge.web.errors import ERRORS
from bridge.web.openapi import OPENAPI, load
from bridge.web.server import build_web_app

METHODS = {"get", "post", "put", "patch", "delete"}
#: The dashboard's HTML pages: a browser's face, not part of the API the file describes.
HTML_PAGES = {"/", "/dashboard", "/dashboard/login", "/dashboard/logout"}
TOKEN = "unit-test-token"


def _html_page(path: str) -> bool:
    """The root and every dashboard page (sign-in, lists, actions, its one script)."""
    return path == "/" or path.startswith("/dashboard")


async def _nothing() -> bytes:
    return b""


def _deps() -> WebDeps:
    """A WebDeps that serves routes but must never be asked for data."""
    unused = cast(Any, None)
    return WebDeps(
        parts=unused,
        db=unused,
        pairs=unused,
        clock=lambda: datetime.now(UTC),
        token_ok=lambda token: token == TOKEN,
        practice_name="Unit Practice",
        practice_tz=UTC,
        policies={},
        render_page=lambda name, context: name,
        health=HealthSources(
            homeserver=_nothing,
            matrix=lambda: None,
            sync=lambda: None,
            witness=lambda: None,
        ),
        metrics=MetricsSource(scrape=_nothing, content_type="text/plain"),
        invitations=unused,
        voice=unused,
        verify_audit=unused,
    )


def _served() -> set[tuple[str, str]]:
    return {
        (route.method.lower(), route.resource.canonical)
        for route in build_web_app(_deps()).router.routes()
        if route.method != "HEAD" and route.resource is not None
    }


def _described() -> set[tuple[str, str]]:
    return {
        (method, path)
        for path, item in OPENAPI["paths"].items()
        for method in item
        if method in METHODS
    }


def test_every_route_is_described_with_its_methods() -> None:
    api_routes = {(m, p) for m, p in _served() if not _html_page(p)}
    assert api_routes - _described() == set(), "served but missing from openapi.json"


def test_every_described_operation_is_served() -> None:
    assert _described() - _served() == set(), "in openapi.json but not served"


def test_only_the_dashboard_pages_are_left_out() -> None:
    left_out = {p for _m, p in _served()} - set(OPENAPI["paths"])
    assert left_out >= HTML_PAGES and all(_html_page(p) for p in left_out)


def test_path_parameters_match_the_route_placeholders() -> None:
    for path, item in OPENAPI["paths"].items():
        declared = {p["name"] for p in item.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"{(\w+)}", path)), path


def test_the_public_operations_are_the_ones_the_auth_middleware_lets_through() -> None:
    public = {
        path
        for path, item in OPENAPI["paths"].items()
        for method, operation in item.items()
        if method in METHODS and operation.get("security") == []
    }
    assert public == PUBLIC_PATHS


def test_enums_follow_the_code() -> None:
    schemas = OPENAPI["components"]["schemas"]
    assert schemas["Error"]["properties"]["error"]["enum"] == sorted(ERRORS)
    statuses = [s.value for s in PairStatus]
    assert schemas["Pair"]["properties"]["status"]["enum"] == statuses
    pair_query = OPENAPI["paths"]["/api/v1/pairs"]["get"]["parameters"][0]
    assert pair_query["name"] == "status" and pair_query["schema"]["enum"] == statuses
    invitation_statuses = [s.value for s in InvitationStatus]
    assert schemas["Invitation"]["properties"]["status"]["enum"] == invitation_statuses
    query = OPENAPI["paths"]["/api/v1/invitations"]["get"]["parameters"][0]
    assert query["name"] == "status" and query["schema"]["enum"] == invitation_statuses


def test_the_file_ships_with_the_package() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert "openapi.json" in pyproject["tool"]["setuptools"]["package-data"]["bridge.web"]


@pytest.fixture
async def client() -> Any:
    async with TestClient(TestServer(build_web_app(_deps()))) as test_client:
        yield test_client


async def test_the_file_is_served_to_anyone(client: TestClient[web.Request, web.Application]):
    resp = await client.get("/api/v1/openapi.json")
    assert resp.status == 200
    assert await resp.json() == load()


async def test_an_operation_without_the_token_is_a_named_401(
    client: TestClient[web.Request, web.Application],
) -> None:
    resp = await client.get("/api/v1/pairs")
    assert resp.status == 401
    assert (await resp.json())["error"] == "unauthorized"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_unknown_paths_and_methods_are_named_errors(
    client: TestClient[web.Request, web.Application],
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    resp = await client.get("/api/v1/nothing-here", headers=auth)
    assert resp.status == 404 and (await resp.json())["error"] == "not_found"
    resp = await client.put("/api/v1/pairs", headers=auth, json={})
    assert resp.status == 405 and (await resp.json())["error"] == "method_not_allowed"


def test_json_depth_check_skips_brackets_inside_strings() -> None:
    from bridge.web.inputs import json_depth_exceeds

    assert not json_depth_exceeds('{"a": "' + "[" * 500 + '"}')
    # An escaped quote does not end the string: the brackets after it are still text.
    assert not json_depth_exceeds('{"a": "\\"' + "[" * 500 + '"}')
    assert json_depth_exceeds('{"a": "\\\\"' + ", " + '"b": ' + "[" * 40 + "]" * 40 + "}")
    assert json_depth_exceeds("[" * 33 + "]" * 33)
    assert not json_depth_exceeds("[" * 32 + "]" * 32)
    assert not json_depth_exceeds("[" + "[]," * 100 + "[]]", limit=2)
