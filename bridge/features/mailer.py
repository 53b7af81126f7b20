"""Outbound e-mail in the running bridge: the service gets a mailer when it is enabled.

The SMTP client itself (`bridge.adapters.mailer.Mailer`) renders and sends; this installer
only decides whether the running bridge has one.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bridge.adapters.mailer import build_mailer

if TYPE_CHECKING:
    from bridge.host import Host

log = logging.getLogger(__name__)


async def install_mailer(app: Host) -> None:
    """Give the service a mailer when `outbound_email.enabled` (else e-mails are skipped)."""
    mailer = build_mailer(app.cfg, app.parts.renderer)
    if mailer is not None:
        app.service.mailer = mailer
        log.info("outbound e-mail on", extra={"security": app.cfg.outbound_email.security})
