"""Whether the homeserver would take an invitation code: registration open, with tokens only.

A code e-mailed while registration is off meets the patient as "Registration has been
disabled"; one that registration does not ask for is never used, so the invitation is never
matched to her account. So `invite` asks first, and `doctor` reports the same verdict.
"""

from __future__ import annotations

from typing import Any

from bridge.adapters.matrix.rest import HomeserverUnavailable, MatrixError, MatrixRest

OK, WARN, ERROR = 0, 1, 2

REGISTRATION_FIX = (
    "set enable_registration: true and registration_requires_token: true in "
    "homeserver.yaml, then restart Synapse"
)
TOKEN_STAGE = "m.login.registration_token"


def registration_verdict(
    status: int, errcode: str, body: dict[str, Any]
) -> tuple[int, str, str, str]:
    """What an empty `POST /register` says about invitation codes: (severity, check, text, fix)."""
    flows = body.get("flows") if status == 401 else None
    if not isinstance(flows, list):
        return (
            ERROR,
            "registration",
            f"the homeserver refuses registration ({errcode or status}): "
            "patients could not use their invitation codes",
            REGISTRATION_FIX,
        )
    with_token = [TOKEN_STAGE in flow.get("stages", []) for flow in flows]
    if with_token and all(with_token):
        return (OK, "registration", "open with registration tokens only", "")
    if any(with_token):
        return (
            WARN,
            "registration",
            "tokens work, but some flows register without one",
            "set registration_requires_token: true in homeserver.yaml",
        )
    return (
        ERROR,
        "registration",
        "open without registration tokens: anyone can register",
        REGISTRATION_FIX,
    )


async def probe_registration(
    base_url: str, *, verify_tls: bool = True
) -> tuple[int, str, str, str]:
    """Ask the homeserver for its registration flows and judge them (`registration_verdict`).

    The request carries no access token (Synapse refuses /register with one) and registers
    nobody: an empty body is answered with the flows on offer.
    Raises HomeserverUnavailable when the homeserver does not answer.
    """
    async with MatrixRest(base_url, None, verify_tls=verify_tls) as rest:
        try:
            await rest.request("POST", "/_matrix/client/v3/register", {}, retries=0)
        except MatrixError as err:
            return registration_verdict(err.status, err.errcode, err.body)
    return registration_verdict(200, "", {})


async def invitation_refusal(base_url: str, *, verify_tls: bool = True) -> str | None:
    """Why an invitation code would not work on this homeserver, in one line; None if it
    would (or the homeserver does not answer: the invitation's own calls then say so)."""
    try:
        severity, _, text, fix = await probe_registration(base_url, verify_tls=verify_tls)
    except HomeserverUnavailable:
        return None
    if severity == OK:
        return None
    return f"no invitation made: {text}; {fix}"
