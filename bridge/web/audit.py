"""/api/v1/audit/verify: verify the audit chain; the check writes nothing to the database it
checks (its outcome goes to the log and the answer only)."""

from __future__ import annotations

from aiohttp import web

from bridge.web import API
from bridge.web.deps import deps
from bridge.web.inputs import json_body

routes = web.RouteTableDef()


@routes.post(f"{API}/audit/verify")
async def audit_verify(request: web.Request) -> web.Response:
    d = deps(request)
    body = await json_body(request) if request.can_read_body else {}
    pair_id: str | None = None
    if body.get("pair"):
        pair_id = (await d.pairs.resolve(str(body["pair"]))).pair_id
    result = await d.verify_audit(pair_id, bool(body.get("check_content")))
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
