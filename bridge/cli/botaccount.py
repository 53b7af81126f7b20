"""The bot's account on Synapse, as `init` and `doctor` see it: does it exist, can it log in,
is it exempt from rate limits, and the exact commands to do by hand what needs an admin.

Stock Synapse throttles a bot that creates rooms in a row (5-60 s per pair once its burst is
spent); only an admin can exempt an account, with `override_ratelimit`.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from bridge.adapters.matrix.rest import MatrixError, MatrixRest, q

#: What `override_ratelimit` takes to switch the limits off for one account.
NO_RATE_LIMIT = {"messages_per_second": 0, "burst_count": 0}


def users_path(user_id: str) -> str:
    return f"/_synapse/admin/v2/users/{q(user_id)}"


def ratelimit_path(user_id: str) -> str:
    return f"/_synapse/admin/v1/users/{q(user_id)}/override_ratelimit"


class SynapseBotAdmin:
    """The admin calls about the bot account, with a homeserver admin's access token."""

    def __init__(self, rest: MatrixRest, admin_token: str) -> None:
        self.rest = rest
        self.token = admin_token

    async def account(self, user_id: str) -> dict[str, Any] | None:
        """The account as the admin API shows it, or None when there is none."""
        try:
            return await self.rest.request("GET", users_path(user_id), token=self.token)
        except MatrixError as err:
            if err.status == 404:
                return None
            raise

    async def create(self, user_id: str, password: str, display_name: str) -> None:
        body = {"password": password, "admin": False, "displayname": display_name}
        await self.rest.request("PUT", users_path(user_id), body, token=self.token)

    async def rate_limit(self, user_id: str) -> dict[str, Any]:
        """The account's override ({} when it has none, so stock limits apply)."""
        return await self.rest.request("GET", ratelimit_path(user_id), token=self.token)

    async def exempt(self, user_id: str) -> None:
        await self.rest.request("POST", ratelimit_path(user_id), NO_RATE_LIMIT, token=self.token)


def is_exempt(override: dict[str, Any]) -> bool:
    """Whether an `override_ratelimit` answer switches the limits off."""
    return override.get("messages_per_second") == 0 and override.get("burst_count") == 0


async def password_works(rest: MatrixRest, user_id: str, password: str) -> bool:
    """Log in with the password and log that device out again: whether the password works."""
    try:
        login = await rest.login_password(user_id, password, "Confidant (password check)")
    except MatrixError as err:
        if err.status in (401, 403):
            return False
        raise
    await rest.request("POST", "/_matrix/client/v3/logout", {}, token=login["access_token"])
    return True


def curl_commands(homeserver_url: str, user_id: str, display_name: str) -> list[str]:
    """What an admin runs by hand: create the bot account, then exempt it from rate limits.

    The commands read the admin's token from $ADMIN_TOKEN and the bot's password from
    $BOT_PASSWORD, so no secret is printed.
    """
    auth = '-H "Authorization: Bearer $ADMIN_TOKEN" -H "Content-Type: application/json"'
    name = json.dumps(display_name).replace("'", "'\\''")
    create = f'{{"password": "\'"$BOT_PASSWORD"\'", "admin": false, "displayname": {name}}}'
    exempt = json.dumps(NO_RATE_LIMIT)
    return [
        f"curl -fsS -X PUT {auth} -d '{create}' "
        + shlex.quote(homeserver_url + users_path(user_id)),
        f"curl -fsS -X POST {auth} -d '{exempt}' "
        + shlex.quote(homeserver_url + ratelimit_path(user_id)),
    ]
