"""Every feature the running bridge installs, in order (`bridge.app` installs them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.features.consent import install_consent
from bridge.features.dashboard import install_dashboard
from bridge.features.email import install_email
from bridge.features.export import install_export
from bridge.features.http import install_http
from bridge.features.language import install_language
from bridge.features.mailer import install_mailer
from bridge.features.onboarding import install_onboarding
from bridge.features.selfcheck import install_selfcheck
from bridge.features.sessions import install_sessions
from bridge.features.sla import install_sla_feature
from bridge.features.unread import install_unread_notice
from bridge.features.video import install_video
from bridge.features.voice import install_voice

if TYPE_CHECKING:
    from bridge.host import Installer


# HTTP last: /health and /metrics report on everything installed before it.
ALL: list[Installer] = [
    install_mailer,
    install_unread_notice,
    install_sla_feature,
    install_consent,
    install_language,
    install_onboarding,
    install_export,
    install_email,
    install_voice,
    install_video,
    install_sessions,
    install_selfcheck,
    install_dashboard,
    install_http,
]
