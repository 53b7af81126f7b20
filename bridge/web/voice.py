"""/api/v1/pairs/{ref}/voice: audio uploaded, converted to a voice message, queued (202)."""

from __future__ import annotations

import logging

from aiohttp import web

from bridge.adapters.voice import AudioError
from bridge.store.pairs import PairStatus
from bridge.web import API
from bridge.web.deps import deps
from bridge.web.errors import ApiError

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

#: Read the upload in pieces this big, counting as it comes.
CHUNK = 256 * 1024


@routes.post(f"{API}/pairs/{{ref}}/voice")
async def upload_voice(request: web.Request) -> web.Response:
    d = deps(request)
    record = await d.pairs.resolve(request.match_info["ref"])
    if record.status is not PairStatus.ACTIVE:
        raise ApiError("conflict", f"pair {record.label} is {record.status.value}")
    limit = d.voice.max_bytes
    too_large = ApiError("too_large", f"at most {limit // (1024 * 1024)} MiB")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    data = bytearray()
    async for chunk in request.content.iter_chunked(CHUNK):
        data.extend(chunk)
        if len(data) > limit:
            raise too_large
    if not data:
        raise ApiError("bad_request", "send the audio file as the request body")
    try:
        queued = await d.voice(record.pair_id, bytes(data), request.query.get("filename"))
    except AudioError as err:
        raise ApiError("bad_audio", str(err)) from None
    log.info("voice queued", extra={"pair_id": record.pair_id, "job_id": queued.job_id})
    return web.json_response(
        {"job_id": queued.job_id, "pair_id": record.pair_id, "duration_ms": queued.duration_ms},
        status=202,
    )
