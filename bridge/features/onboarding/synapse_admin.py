"""The few Synapse admin calls onboarding needs: registration tokens and new accounts."""

from __future__ import annotations

import secrets
from typing import Any

from bridge.adapters.matrix.rest import MatrixError, MatrixRest, q
from bridge.ports import AdminUnavailable, OnboardingError

#: Characters of an invitation code: upper case and digits without look-alikes.
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_ADMIN = "/_synapse/admin"
_PAGE = 100


def new_code() -> str:
    """A registration token that is easy to type: XXXX-XXXX-XXXX-XXXX (80 bits)."""
    chars = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(16))
    return "-".join(chars[i : i + 4] for i in range(0, 16, 4))


class SynapseAdminApi:
    """The few Synapse admin calls onboarding needs (registration tokens, new users)."""

    def __init__(self, rest: MatrixRest, access_token: str | None) -> None:
        self.rest = rest
        self.access_token = access_token

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        if not self.access_token:
            raise AdminUnavailable(
                "set synapse_admin.access_token (an admin's access token) to invite by "
                "e-mail; without it, create a single-use registration token on the "
                "homeserver by hand, send it to the patient, then run `confidant pair add`"
            )
        try:
            return await self.rest.request(
                method, _ADMIN + path, body, params=params, token=self.access_token
            )
        except MatrixError as err:
            if err.errcode == "M_UNRECOGNIZED" or (err.status == 404 and not err.errcode):
                raise AdminUnavailable(
                    "the homeserver has no Synapse admin API: create a single-use "
                    "registration token there by hand, send it to the patient, then run "
                    "`confidant pair add` once the account exists"
                ) from None
            if err.status in (401, 403) and err.errcode in (
                "M_FORBIDDEN",
                "M_UNKNOWN_TOKEN",
                "M_MISSING_TOKEN",
            ):
                raise AdminUnavailable(
                    "synapse_admin.access_token is not a valid token of a server admin "
                    "(make one with an admin account's login)"
                ) from None
            raise

    async def create_token(self, expires_at_ms: int) -> str:
        """A new single-use token valid until `expires_at_ms`."""
        for _ in range(5):
            code = new_code()
            try:
                data = await self._call(
                    "POST",
                    "/v1/registration_tokens/new",
                    {"token": code, "uses_allowed": 1, "expiry_time": expires_at_ms},
                )
            except MatrixError as err:
                if err.status == 400 and "already exists" in str(err):
                    continue
                raise
            return str(data["token"])
        raise OnboardingError("could not find a free invitation code; try again")

    async def token_info(self, token: str) -> dict[str, Any] | None:
        """The token's counters and expiry, or None when the homeserver has no such token."""
        try:
            return await self._call("GET", f"/v1/registration_tokens/{q(token)}")
        except MatrixError as err:
            if err.errcode == "M_NOT_FOUND":
                return None
            raise

    async def all_tokens(self) -> dict[str, dict[str, Any]]:
        """Every registration token on the homeserver, by token (one request)."""
        data = await self._call("GET", "/v1/registration_tokens")
        return {str(t["token"]): t for t in data.get("registration_tokens", [])}

    async def delete_token(self, token: str) -> bool:
        """Delete the token; False when it was already gone."""
        try:
            await self._call("DELETE", f"/v1/registration_tokens/{q(token)}")
        except MatrixError as err:
            if err.errcode == "M_NOT_FOUND":
                return False
            raise
        return True

    async def users_created_since(self, since_ms: int) -> list[dict[str, Any]]:
        """Local, non-admin, non-guest, active accounts created at or after `since_ms`."""
        found: list[dict[str, Any]] = []
        start = 0
        while True:
            data = await self._call(
                "GET",
                "/v2/users",
                params={
                    "from": str(start),
                    "limit": str(_PAGE),
                    "order_by": "creation_ts",
                    "dir": "b",
                    "guests": "false",
                    "admins": "false",
                },
            )
            users = data.get("users", [])
            for user in users:
                created = user.get("creation_ts")
                if created is None or int(created) < since_ms:
                    return found
                found.append(user)
            if "next_token" not in data or not users:
                return found
            start = int(data["next_token"])
