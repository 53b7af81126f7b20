"""What the configuration says about the database's pairs: policies nothing uses, or that
pairs use but the configuration no longer defines; escalations that could reach nobody.

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


def escalation_warnings(
    cfg: Config, therapists_without_supervisor: list[str] | None
) -> list[ConfigProblem]:
    """Warnings about escalations that could reach nobody or that nobody could receive.

    An escalating policy without supervisors of its own reaches each therapist's own
    (`therapist add --supervisor`): `therapists_without_supervisor` names the therapists
    with live pairs who have none (None without a database). A supervisor on another
    server cannot be invited to a desk room unless the practice federates.
    """
    out: list[ConfigProblem] = []
    server = cfg.homeserver.server_name
    for name in sorted(cfg.policies):
        policy = cfg.policies[name]
        if policy.escalate_after is None:
            continue
        if not policy.supervisors and therapists_without_supervisor:
            listed = ", ".join(therapists_without_supervisor)
            out.append(
                ConfigProblem(
                    f"policies.{name}.supervisors",
                    f"the policy escalates but names no supervisor, and {listed} have none "
                    "of their own: add supervisors here or `confidant therapist add USER "
                    "--supervisor @someone:server`",
                )
            )
        for index, user_id in enumerate(policy.supervisors):
            if not cfg.practice.federate and user_id.partition(":")[2] != server:
                out.append(
                    ConfigProblem(
                        f"policies.{name}.supervisors[{index}]",
                        f"{user_id} is not on {server} and practice.federate is off, so no "
                        "desk room can reach them; name an account on the practice's server",
                    )
                )
    return out
