"""The dashboard's actions: reassign or close a pair, invite a patient, resend or revoke an
invitation, away/back.

Each is a form POST that must carry the CSRF token (double submit plus Origin, see `auth`)
and runs the same use case as the API and the command line: `PairManager.reassign` and
`remove_pair`, the onboarding feature's invitation desk, the SLA feature's away and back
operations (as `!away` and `!back` in a desk room). Each leaves an audit entry built in the
core: the pair and invitation entries by their use cases, the absence by
`dashboard_commands.absence_set`. The actor is `dashboard:admin` or the therapist's id.
A therapist may only mark themself away or back; everything else is the admin's.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from aiohttp import web

from bridge.adapters.mailer import MailError
from bridge.core import dashboard_commands
from bridge.core.language import parse_language
from bridge.core.model import Invoke
from bridge.core.sla_commands import AWAY_OPERATION, BACK_OPERATION
from bridge.ports import DEFAULT_VALIDITY, OnboardingError, PortMissing
from bridge.provision import PairError
from bridge.store import dashboard
from bridge.web.auth import CSRF_FIELD, csrf_ok
from bridge.web.dashboard_page import Viewer, page, require_viewer, see_other
from bridge.web.deps import deps

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


def actor(viewer: Viewer) -> str:
    return "dashboard:admin" if viewer.is_admin else viewer.who


class Refused(Exception):
    """The action is not done: no valid CSRF token, or not the viewer's to do."""

    def __init__(self, response: web.Response) -> None:
        super().__init__("refused")
        self.response = response


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def refusing(handler: Handler) -> Handler:
    """Answer a `Refused` with its page (a 403) instead of an error."""

    @functools.wraps(handler)
    async def run(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Refused as refused:
            return refused.response

    return run


async def checked_form(request: web.Request, *, admin: bool) -> tuple[Viewer, dict[str, str]]:
    """The viewer and the form, once the CSRF token and the viewer's right are checked."""
    form = await request.post()
    viewer = await require_viewer(request)
    if not csrf_ok(request, form.get(CSRF_FIELD)):
        log.info("dashboard action refused: csrf")
        raise _refused(request, viewer, "The form expired or came from elsewhere; reload it.")
    if admin and not viewer.is_admin:
        raise _refused(request, viewer, "Only the practice's administrator may do this.")
    return viewer, {k: v for k, v in form.items() if isinstance(v, str)}


def _refused(request: web.Request, viewer: Viewer, reason: str) -> Refused:
    return Refused(page(request, "refused", {"reason": reason}, viewer=viewer, status=403))


def failed_page(request: web.Request, viewer: Viewer, reason: str) -> web.Response:
    return page(request, "refused", {"reason": reason}, viewer=viewer, status=409)


@routes.post("/dashboard/pairs/{label}/reassign")
@refusing
async def reassign(request: web.Request) -> web.StreamResponse:
    viewer, form = await checked_form(request, admin=True)
    d = deps(request)
    label = request.match_info["label"]
    therapist = form.get("therapist", "").strip()
    known = await dashboard.therapist_ids(d.db)
    if therapist not in known:
        return failed_page(request, viewer, "Choose one of the practice's therapists.")
    try:
        await d.pairs.reassign(label, therapist, d.clock(), actor=actor(viewer))
    except PairError as err:
        return failed_page(request, viewer, str(err))
    return see_other(f"/dashboard/pairs/{label}?done=reassigned")


@routes.post("/dashboard/pairs/{label}/close")
@refusing
async def close(request: web.Request) -> web.StreamResponse:
    viewer, form = await checked_form(request, admin=True)
    d = deps(request)
    label = request.match_info["label"]
    if form.get("confirm") != label:
        return failed_page(request, viewer, "Type the pair's label to confirm closing it.")
    try:
        await d.pairs.remove_pair(label, d.clock(), actor=actor(viewer))
    except PairError as err:
        return failed_page(request, viewer, str(err))
    return see_other(f"/dashboard/pairs/{label}?done=closed")


@routes.post("/dashboard/invitations")
@refusing
async def invite(request: web.Request) -> web.StreamResponse:
    """Invite a patient by e-mail, as `confidant invite` and POST /api/v1/invitations do."""
    viewer, form = await checked_form(request, admin=True)
    d = deps(request)
    email = form.get("email", "").strip()
    therapist = form.get("therapist", "").strip()
    policy = form.get("policy", "default").strip() or "default"
    if "@" not in email or any(c.isspace() for c in email):
        return failed_page(request, viewer, "Give the patient's e-mail address.")
    if therapist not in await dashboard.therapist_ids(d.db):
        return failed_page(request, viewer, "Choose one of the practice's therapists.")
    if policy not in d.policies:
        return failed_page(request, viewer, "Choose one of the practice's reply-time policies.")
    chosen = form.get("language", "").strip()
    language = parse_language(chosen) if chosen else None
    if chosen and language is None:
        return failed_page(request, viewer, "Choose one of the languages offered.")
    if not d.invitations.mail_on():
        # The code is never shown on a page; `confidant invite` prints it for the operator.
        return failed_page(
            request, viewer, "Outbound e-mail is off: invite from the command line instead."
        )
    try:
        invited = await d.invitations.invite(
            email,
            therapist,
            name=form.get("name", "").strip() or None,
            policy=policy,
            valid_for=DEFAULT_VALIDITY,
            language=language,
        )
    except (OnboardingError, PortMissing, MailError) as err:
        return failed_page(request, viewer, str(err) or type(err).__name__)
    # A relay that failed keeps the invitation: it can be resent once the relay works.
    done = "invited" if invited.email_sent else "invited_not_mailed"
    return see_other(f"/dashboard/invitations?done={done}")


@routes.post("/dashboard/invitations/{invitation_id}/{action:resend|revoke}")
@refusing
async def invitation(request: web.Request) -> web.StreamResponse:
    viewer, _form = await checked_form(request, admin=True)
    desk = deps(request).invitations
    invitation_id = request.match_info["invitation_id"]
    action = request.match_info["action"]
    try:
        if action == "resend":
            if not desk.mail_on():
                return failed_page(
                    request, viewer, "Outbound e-mail is off: nothing can be resent."
                )
            await desk.resend(invitation_id)
        else:
            await desk.revoke(invitation_id)
    except (OnboardingError, PortMissing, LookupError) as err:
        return failed_page(request, viewer, str(err) or type(err).__name__)
    done = "resent" if action == "resend" else "revoked"
    return see_other(f"/dashboard/invitations?done={done}")


def _therapist_of(viewer: Viewer, form: dict[str, str]) -> str:
    return viewer.therapist or form.get("therapist", "").strip()


@routes.post("/dashboard/away")
@refusing
async def away(request: web.Request) -> web.StreamResponse:
    """Mark a therapist away until a time (practice time), with a colleague covering or not."""
    viewer, form = await checked_form(request, admin=False)
    d = deps(request)
    therapist = _therapist_of(viewer, form)
    known = await dashboard.therapist_ids(d.db)
    cover = form.get("cover", "").strip() or None
    try:
        until = datetime.fromisoformat(form.get("until", "")).replace(tzinfo=d.practice_tz)
    except ValueError:
        return failed_page(request, viewer, "Give the date and time the absence ends.")
    if therapist not in known:
        return failed_page(request, viewer, "Choose one of the practice's therapists.")
    if until <= d.clock():
        return failed_page(request, viewer, "The end of the absence must be in the future.")
    if cover is not None and (cover == therapist or cover not in known):
        return failed_page(
            request, viewer, "The cover must be another of the practice's therapists."
        )
    if d.invoke is None or d.record_audit is None:
        return failed_page(request, viewer, "Reply times are not switched on.")
    params = {"therapist": therapist, "until": until.isoformat(), "cover": cover}
    await d.invoke(Invoke(AWAY_OPERATION, "", params))
    await d.record_audit(dashboard_commands.absence_set(actor(viewer), therapist, until, cover))
    return see_other("/dashboard?done=away")


@routes.post("/dashboard/back")
@refusing
async def back(request: web.Request) -> web.StreamResponse:
    viewer, form = await checked_form(request, admin=False)
    d = deps(request)
    therapist = _therapist_of(viewer, form)
    if therapist not in await dashboard.therapist_ids(d.db):
        return failed_page(request, viewer, "Choose one of the practice's therapists.")
    if d.invoke is None or d.record_audit is None:
        return failed_page(request, viewer, "Reply times are not switched on.")
    await d.invoke(Invoke(BACK_OPERATION, "", {"therapist": therapist}))
    await d.record_audit(dashboard_commands.absence_set(actor(viewer), therapist, None, None))
    return see_other("/dashboard?done=back")
