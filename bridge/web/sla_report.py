"""/api/v1/sla/report: response times per therapist or policy for [from, to) (whole UTC days)."""

from __future__ import annotations

from datetime import UTC, timedelta

from aiohttp import web

from bridge.core.sla_report import GroupBy
from bridge.features.sla import sla_report
from bridge.web import API
from bridge.web.deps import deps
from bridge.web.errors import ApiError
from bridge.web.inputs import date_param, day_start
from bridge.web.views import seconds

routes = web.RouteTableDef()


@routes.get(f"{API}/sla/report")
async def get_sla_report(request: web.Request) -> web.Response:
    d = deps(request)
    now = d.clock()
    today = now.astimezone(UTC).date()
    first = date_param(request, "from", today - timedelta(days=30))
    last = date_param(request, "to", today + timedelta(days=1))
    if last <= first:
        raise ApiError("bad_request", "'to' must be after 'from'")
    by = request.query.get("by", "therapist")
    if by not in ("therapist", "policy"):
        raise ApiError("bad_request", "'by' is 'therapist' or 'policy'")
    group: GroupBy = "policy" if by == "policy" else "therapist"
    rows = await sla_report(d.db, d.parts.cfg, day_start(first), day_start(last), now, by=group)
    return web.json_response(
        {
            "from": first.isoformat(),
            "to": last.isoformat(),
            "by": group,
            "rows": [
                {
                    ("policy" if group == "policy" else "therapist_id"): r.therapist_id,
                    "replies": r.replies,
                    "median_seconds": seconds(r.median),
                    "p90_seconds": seconds(r.p90),
                    "met_share": r.met_share,
                    "breaches": r.breaches,
                    "open_overdue": r.open_overdue,
                    "clock": r.clock,
                    "late_seconds": [round(t.total_seconds()) for t in r.lateness],
                }
                for r in rows
            ],
        }
    )
