"""/api/v1/policies: the SLA policies from the configuration (durations in seconds)."""

from __future__ import annotations

from aiohttp import web

from bridge.web import API
from bridge.web.deps import deps
from bridge.web.views import policy_json

routes = web.RouteTableDef()


@routes.get(f"{API}/policies")
async def list_policies(request: web.Request) -> web.Response:
    policies = deps(request).policies
    return web.json_response(
        {"policies": {name: policy_json(values) for name, values in policies.items()}}
    )
