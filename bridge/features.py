"""The features the running bridge installs, in order.

Each entry takes the built App (parts, service, bot, outbox and scheduler exist but
nothing has started) and registers its hooks, handlers, commands and start/stop callbacks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.adapters.mailer import install_mailer
from bridge.consent import install_consent
from bridge.desk_export import install_desk_export
from bridge.email.feature import install_email
from bridge.http_feature import install_http
from bridge.onboarding import install_onboarding
from bridge.selfcheck import install_selfcheck
from bridge.sessions_feature import install_sessions
from bridge.sla_service import install_sla
from bridge.unread_notice import install_unread_notice
from bridge.video_feature import install_video
from bridge.voice_feature import install_voice

if TYPE_CHECKING:
    from bridge.host import Host, Installer


async def sla(app: Host) -> None:
    assert app.service is not None
    runtime = install_sla(app.service, app.cfg)
    if runtime is not None:
        app.ports.reply_clock = runtime


async def desk_export(app: Host) -> None:
    assert app.service is not None and app.parts is not None and app.bot is not None
    install_desk_export(app.service, app.parts, app.bot, app.service.clock)


# HTTP last: /health and /metrics report on everything installed before it.
ALL: list[Installer] = [
    install_mailer,
    install_unread_notice,
    sla,
    install_consent,
    install_onboarding,
    desk_export,
    install_email,
    install_voice,
    install_video,
    install_sessions,
    install_selfcheck,
    install_http,
]
