"""Onboarding: invite a patient by e-mail with a single-use registration token, and create
the pair once the account registered with it appears.

Synapse counts a token's completed registrations but keeps no record of *which* account
used it. The link is made from two server-side facts: the moment the token's `completed`
count went from 0 to 1 (between two polls) and the accounts the homeserver created in
that interval (`creation_ts`, whole seconds). Accounts the bridge already knows (the bot,
therapists, patients, accounts matched before), admins, guests and typed accounts are left
out. An invitation is matched only when exactly one account fits it and that account fits
no other used invitation; otherwise it becomes `unmatched` and the operator matches it by
hand (`confidant invite match ID @user:server`). Polls a few seconds apart make the
ambiguous case rare: it needs two invitations used, or an account created by an
administrator, within the same few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from bridge.adapters.mailer import Mailer
from bridge.features.onboarding.invitations import Onboarding, invite_patient
from bridge.features.onboarding.room_powers import install_room_powers
from bridge.ports import Invited
from bridge.store.invitations import InvitationRecord

if TYPE_CHECKING:
    from bridge.host import Host
    from bridge.parts import Parts
    from bridge.service import Service

log = logging.getLogger(__name__)

#: How often the running bridge looks for new accounts.
POLL_INTERVAL_S = 10.0
#: Who the invitation desk acts as (the `invitations` port the HTTP API uses).
API_ACTOR = "api"


class ApiInvitations:
    """The invitation use cases with the bridge's mailer at the time of the call, as the API."""

    def __init__(self, app: Host, parts: Parts, service: Service) -> None:
        self.app = app
        self.parts = parts
        self.service = service

    def _onboarding(self) -> Onboarding:
        mailer = self.service.mailer
        return Onboarding(
            self.parts,
            mailer if isinstance(mailer, Mailer) else None,
            actor=API_ACTOR,
            clock=self.service.clock,
        )

    def mail_on(self) -> bool:
        return self._onboarding().mailer is not None

    async def invite(
        self,
        email: str,
        therapist: str,
        *,
        name: str | None,
        policy: str,
        valid_for: timedelta,
        language: str | None = None,
    ) -> Invited:
        return await invite_patient(
            self._onboarding(),
            email,
            therapist,
            self.service.clock(),
            name=name,
            policy=policy,
            valid_for=valid_for,
            language=language,
        )

    async def resend(self, invitation_id: str) -> InvitationRecord:
        return await self._onboarding().resend(invitation_id, self.service.clock())

    async def revoke(self, invitation_id: str) -> InvitationRecord:
        return await self._onboarding().revoke(invitation_id, self.service.clock())

    async def match(self, invitation_id: str, user_id: str) -> InvitationRecord:
        record = await self._onboarding().match(invitation_id, user_id, self.service.clock())
        # The pair was made outside an event: let the running bridge pick it up.
        await self.service.refresh_rooms()
        if self.app.outbox is not None:
            self.app.outbox.kick()
        return record


async def install_onboarding(app: Host, *, poll_interval: float = POLL_INTERVAL_S) -> None:
    """Offer the invitation use cases (`invitations` port), keep pair rooms' power levels the
    bot's own, and follow pending invitations while the bridge runs (that needs
    synapse_admin.access_token)."""
    # Whatever the admin API may do to a pair room's power levels is set back.
    install_room_powers(app)
    # Without a token the use cases still answer, with what to do instead.
    app.ports.invitations = ApiInvitations(app, app.parts, app.service)
    if app.cfg.synapse_admin.access_token is None:
        log.info("onboarding off: no synapse_admin.access_token")
        return
    service = app.service
    # The bridge only follows invitations up; the command line sends them.
    onboarding = Onboarding(app.parts, None, actor="onboarding", clock=service.clock)
    task: asyncio.Task[None] | None = None

    async def follow() -> None:
        while True:
            try:
                result = await onboarding.check()
            except Exception as exc:
                log.warning("invitation check failed", extra={"error": type(exc).__name__})
            else:
                if result.matched:
                    await service.refresh_rooms()
                    if service.outbox is not None:
                        service.outbox.kick()
            await asyncio.sleep(poll_interval)

    async def start() -> None:
        nonlocal task
        task = asyncio.create_task(follow(), name="onboarding")

    async def stop() -> None:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.on_start(start)
    app.on_stop(stop)
