"""What the configuration says about the database's pairs: policies nothing uses, or that
pairs use but the configuration no longer defines.

Neither stops the bridge (an unknown policy falls back to "default" with a log line), so
both are warnings; the caller reads the policy names in use from the store.
"""

from __future__ import annotations

from collections.abc import Mapping

from bridge.config.errors import ConfigProblem
from bridge.config.root import Config


def policy_warnings(cfg: Config, in_use: Mapping[str, int] | None) -> list[ConfigProblem]:
    """Warnings about policies, given how many pairs and open invitations use each name.

    `in_use` is None when there is no database yet: then no pair can use a policy but
    "default", which pairs get unless told otherwise.
    """
    used = dict(in_use or {})
    out: list[ConfigProblem] = []
    for name in sorted(cfg.policies):
        if name != "default" and not used.get(name):
            out.append(
                ConfigProblem(
                    f"policies.{name}",
                    "no pair or invitation uses it; give it with `pair add --policy "
                    f"{name}` or `invite --policy {name}`, or remove it",
                )
            )
    for name in sorted(set(used) - set(cfg.policies)):
        out.append(
            ConfigProblem(
                "policies",
                f"{used[name]} pair(s) or invitation(s) use policy {name!r}, which is not "
                "defined, so they get 'default'; add it back under policies:",
            )
        )
    return out
