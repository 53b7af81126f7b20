"""`homeserver:` the practice's Matrix homeserver, which Confidant connects to as a client."""

from __future__ import annotations

from bridge.config.section import Section
from bridge.config.values import HttpUrl, ServerName


class Homeserver(Section):
    """The practice's Matrix homeserver."""

    url: HttpUrl
    server_name: ServerName
    verify_tls: bool = True
