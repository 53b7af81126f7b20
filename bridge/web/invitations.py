"""/api/v1/invitations: invite a patient by e-mail with a single-use code; resend, revoke, match.

The code (the registration token) is in one answer only: the creation's, when no e-mail
went out, for the operator to hand over.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bridge.ports import ResendLimited
from bridge.store import invitations
from bridge.store.invitations import InvitationRecord, InvitationStatus
from bridge.web import API
from bridge.web.deps import deps
from bridge.web.errors import ApiError, error_response
from bridge.web.inputs import (
    json_body,
    language_choice,
    optional_str,
    policy_name,
    user_id,
    valid_for,
)
from bridge.web.views import invitation_json

routes = web.RouteTableDef()


async def _invitation(request: web.Request) -> InvitationRecord:
    d = deps(request)
    record = await invitations.get(d.db, request.match_info["invitation_id"], d.parts.sealer)
    if record is None:
        raise ApiError("invitation_not_found")
    return record


def _answer(record: InvitationRecord) -> web.Response:
    return web.json_response({"invitation": invitation_json(record)})


@routes.get(f"{API}/invitations")
async def list_invitations(request: web.Request) -> web.Response:
    status_text = request.query.get("status")
    try:
        status = InvitationStatus(status_text) if status_text else None
    except ValueError:
        known = ", ".join(s.value for s in InvitationStatus)
        raise ApiError("bad_request", f"status must be one of {known}") from None
    d = deps(request)
    records = await invitations.list_invitations(d.db, status=status, sealer=d.parts.sealer)
    return web.json_response({"invitations": [invitation_json(r) for r in records]})


@routes.post(f"{API}/invitations")
async def create_invitation(request: web.Request) -> web.Response:
    d = deps(request)
    body = await json_body(request)
    email = body.get("email")
    if not isinstance(email, str) or "@" not in email or any(c.isspace() for c in email):
        raise ApiError("bad_request", "email must be an e-mail address")
    therapist = user_id(body, "therapist")
    name = optional_str(body, "name")
    policy = policy_name(body, d.policies)
    language = language_choice(body)
    invited = await d.invitations.invite(
        email, therapist, name=name, policy=policy, valid_for=valid_for(body), language=language
    )
    result: dict[str, Any] = {"email_sent": invited.email_sent}
    if invited.email_error is not None:
        result["email_error"] = invited.email_error
    if not invited.email_sent:
        # Nobody else will tell the patient the code: the operator has to.
        result["code"] = invited.record.token
    return web.json_response({"invitation": invitation_json(invited.record), **result}, status=201)


@routes.get(f"{API}/invitations/{{invitation_id}}")
async def show_invitation(request: web.Request) -> web.Response:
    return _answer(await _invitation(request))


@routes.post(f"{API}/invitations/{{invitation_id}}/resend")
async def resend_invitation(request: web.Request) -> web.Response:
    record = await _invitation(request)
    desk = deps(request).invitations
    if not desk.mail_on():
        raise ApiError("email_off")
    try:
        resent = await desk.resend(record.invitation_id)
    except ResendLimited as err:
        response = error_response("too_many_requests", str(err))
        response.headers["Retry-After"] = str(err.retry_after_s)
        return response
    return _answer(resent)


@routes.post(f"{API}/invitations/{{invitation_id}}/revoke")
async def revoke_invitation(request: web.Request) -> web.Response:
    record = await _invitation(request)
    return _answer(await deps(request).invitations.revoke(record.invitation_id))


@routes.post(f"{API}/invitations/{{invitation_id}}/match")
async def match_invitation(request: web.Request) -> web.Response:
    record = await _invitation(request)
    account = user_id(await json_body(request), "user_id")
    return _answer(await deps(request).invitations.match(record.invitation_id, account))
