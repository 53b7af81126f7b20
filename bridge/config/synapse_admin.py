"""`synapse_admin:` the Synapse admin API, used by onboarding to make registration tokens."""

from __future__ import annotations

from pydantic import SecretStr

from bridge.config.section import Section


class SynapseAdmin(Section):
    """Synapse admin API access, used by onboarding (registration tokens)."""

    access_token: SecretStr | None = None
