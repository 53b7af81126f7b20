"""/api/v1/clocks: the open SLA clocks, soonest due first."""

from __future__ import annotations

from aiohttp import web

from bridge.store import clocks, pairs
from bridge.web import API
from bridge.web.deps import deps
from bridge.web.views import clock_json

routes = web.RouteTableDef()


@routes.get(f"{API}/clocks")
async def list_clocks(request: web.Request) -> web.Response:
    d = deps(request)
    found = await clocks.list_open(d.db, therapist_id=request.query.get("therapist"))
    labels = {r.pair_id: r.label for r in await pairs.list_pairs(d.db)}
    now = d.clock()
    return web.json_response({"clocks": [clock_json(c, labels.get(c.pair_id), now) for c in found]})
