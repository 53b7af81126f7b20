"""`!dashboard`: a single-use sign-in link for a therapist, posted into their E2EE desk room.

The core decides that a link is made (`bridge.core.dashboard_commands`); this feature makes
a random token, keeps only its SHA-256 with the therapist and an expiry a few minutes ahead
(`bridge.store.dashboard`), and queues the desk notice with the link and the audit entry in
one transaction. Opening the link (`bridge.web.dashboard_session`) uses it up and starts a
session that sees only that therapist's pairs and queue.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING

from bridge import hooks
from bridge.core.dashboard_commands import LINK_OPERATION, link_issued, link_message
from bridge.core.model import Effect, Invoke
from bridge.store import dashboard
from bridge.store.base import to_ms

if TYPE_CHECKING:
    from bridge.host import Host

log = logging.getLogger(__name__)

#: How long a link from the desk room opens a session.
LINK_LIFETIME = timedelta(minutes=5)


def link_digest(token: str) -> str:
    """What is stored of a link's token (and looked up when it is opened)."""
    return hashlib.sha256(token.encode()).hexdigest()


class DashboardLinks:
    """Answers `!dashboard` with a link, or says that the dashboard is off."""

    def __init__(self, app: Host) -> None:
        self.app = app

    def base_url(self) -> str | None:
        http = self.app.cfg.http
        if not http.enabled:
            return None
        if http.public_url is not None:
            return http.public_url
        host = f"[{http.host}]" if ":" in http.host else http.host
        return f"http://{host}:{http.port}"

    @hooks.on_invoke(LINK_OPERATION)
    async def send_link(self, invoke: Invoke) -> None:
        service = self.app.service
        therapist = str(invoke.params["therapist"])
        event_id = str(invoke.params["event_id"])
        now = service.clock()
        expires = now + LINK_LIFETIME
        minutes = int(LINK_LIFETIME.total_seconds() // 60)
        base = self.base_url()
        effects: list[Effect]
        async with service.db.transaction() as tx:
            if base is None:
                effects = [link_message(invoke.room_id, event_id, None, expires, minutes)]
            else:
                token = secrets.token_urlsafe(32)
                await dashboard.add_link(
                    tx, link_digest(token), therapist, to_ms(now), to_ms(expires)
                )
                url = f"{base}/dashboard/link/{token}"
                effects = [
                    link_message(invoke.room_id, event_id, url, expires, minutes),
                    link_issued(therapist, expires),
                ]
            await service.apply_durable(tx, effects, now)
        log.info("dashboard link", extra={"user_id": therapist, "sent": base is not None})
        await service.apply_after(effects)


async def install_dashboard(app: Host) -> None:
    """Answer the desk's `!dashboard` (the "dashboard.link" operation)."""
    app.service.install(DashboardLinks(app))
