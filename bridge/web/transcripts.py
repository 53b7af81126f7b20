"""/api/v1/pairs/{ref}/export: the pair's transcript as a zip, streamed, recorded in the audit."""

from __future__ import annotations

import asyncio

from aiohttp import web

from bridge.features.export import exported_transcript
from bridge.web import API
from bridge.web.deps import deps
from bridge.web.inputs import optional_day

routes = web.RouteTableDef()

CHUNK = 256 * 1024


@routes.get(f"{API}/pairs/{{ref}}/export")
async def export_transcript(request: web.Request) -> web.StreamResponse:
    d = deps(request)
    record = await d.pairs.resolve(request.match_info["ref"])
    start = optional_day(request, "from")
    end = optional_day(request, "to")
    async with exported_transcript(
        d.parts, record, actor="api", now=d.clock(), start=start, end=end
    ) as result:
        out = result.path
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
            while chunk := await asyncio.to_thread(fh.read, CHUNK):
                await response.write(chunk)
        await response.write_eof()
    return response
