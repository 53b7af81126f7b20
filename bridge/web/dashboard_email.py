"""/dashboard/email: inbound e-mails that could not be relayed, and retrying one.

The administrator's only: a row names the e-mail's id, the pair's label, when it was
accepted and why it failed (an error code, never a sender, subject or content). Retry runs
the e-mail feature's `retry_email`, as `confidant email retry ID` does, audited by it.
"""

from __future__ import annotations

from aiohttp import web

from bridge.email import inbox
from bridge.features.email.retry import retry_email
from bridge.store import pairs
from bridge.store.base import from_ms
from bridge.web.dashboard_actions import checked_form, failed_page, refusing
from bridge.web.dashboard_page import page, require_viewer, see_other
from bridge.web.deps import deps

routes = web.RouteTableDef()


@routes.get("/dashboard/email")
async def failed_email(request: web.Request) -> web.StreamResponse:
    viewer = await require_viewer(request)
    if not viewer.is_admin:
        raise web.HTTPSeeOther("/dashboard")
    d = deps(request)
    rows = []
    for item in await inbox.failed(d.db):
        record = await pairs.get(d.db, item.pair_id)
        rows.append(
            {
                "id": item.id,
                "pair": record.label if record is not None else item.pair_id,
                "received": from_ms(item.received_at)
                .astimezone(d.practice_tz)
                .strftime("%a %d %b %H:%M"),
                "reason": item.last_error or "-",
            }
        )
    return page(
        request,
        "email",
        {
            "failed": rows,
            "waiting": (await inbox.status_counts(d.db)).get(inbox.InboxStatus.ACCEPTED, 0),
            "notice": request.query.get("done"),
        },
        viewer=viewer,
    )


@routes.post("/dashboard/email/{email_id}/retry")
@refusing
async def retry(request: web.Request) -> web.StreamResponse:
    viewer, _form = await checked_form(request, admin=True)
    d = deps(request)
    email_id = request.match_info["email_id"]
    if not await retry_email(d.db, d.parts.audit, email_id, d.clock()):
        return failed_page(request, viewer, "That e-mail has not failed, or is not there any more.")
    # The audit entry (email.requeued) is the use case's, as for `confidant email retry`.
    return see_other("/dashboard/email?done=queued")
