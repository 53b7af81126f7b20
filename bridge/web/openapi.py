"""/api/v1/openapi.json: the API's description, `openapi.json` next to this module.

The file is written by hand and shipped as package data; a test holds it to the routes
the application serves (every route described with its methods, nothing described that
is not served) and to the error catalogue.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

from aiohttp import web

from bridge.web import API

routes = web.RouteTableDef()


def load() -> dict[str, Any]:
    """The OpenAPI 3 document as shipped."""
    document: dict[str, Any] = json.loads(
        files("bridge.web").joinpath("openapi.json").read_text(encoding="utf-8")
    )
    return document


#: The description as served; read once, when the web face is imported.
OPENAPI: dict[str, Any] = load()


@routes.get(f"{API}/openapi.json")
async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(OPENAPI)
