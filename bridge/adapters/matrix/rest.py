"""A thin client-server API client for the calls that need no end-to-end encryption.

Room creation, invites, kicks, state events, cross-signing uploads and the Synapse admin
API are plain HTTP. Keeping them out of nio lets the CLI provision rooms while the
bridge process owns the one E2EE device.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import quote

import aiohttp

log = logging.getLogger(__name__)


class MatrixError(Exception):
    """The homeserver answered with an error (errcode and HTTP status kept)."""

    def __init__(self, status: int, errcode: str, message: str, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {errcode}: {message}")
        self.status = status
        self.errcode = errcode
        self.body = body


class HomeserverUnavailable(Exception):
    """The homeserver could not be reached (connection refused, timeout, 5xx)."""


def q(part: str) -> str:
    """Quote one path segment (room ids, user ids, event types, transaction ids)."""
    return quote(part, safe="")


class MatrixRest:
    """Authenticated JSON calls against one homeserver."""

    def __init__(self, base_url: str, access_token: str | None, *, verify_tls: bool = True) -> None:
        self.base_url = base_url.rstrip("/")
        self.access_token = access_token
        self._verify_tls = verify_tls
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> MatrixRest:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=60),
                connector=aiohttp.TCPConnector(ssl=bool(self._verify_tls)),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        params: dict[str, str] | None = None,
        token: str | None = None,
        retries: int = 3,
    ) -> dict[str, Any]:
        """Send one request; 429 is waited out, connection failures and 5xx retried briefly."""
        headers = {}
        bearer = token or self.access_token
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        url = self.base_url + path
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._http().request(
                    method, url, json=body, params=params, headers=headers
                ) as resp:
                    data: dict[str, Any]
                    try:
                        data = await resp.json(content_type=None) or {}
                    except ValueError:
                        data = {}
                    if resp.status == 429 and attempt <= retries + 5:
                        wait_ms = data.get("retry_after_ms", 500)
                        await asyncio.sleep(min(float(wait_ms) / 1000, 10))
                        continue
                    if resp.status >= 500 and attempt <= retries:
                        await asyncio.sleep(0.5 * attempt)
                        continue
                    if resp.status >= 500:
                        raise HomeserverUnavailable(f"{method} {path}: HTTP {resp.status}")
                    if resp.status >= 400:
                        raise MatrixError(
                            resp.status,
                            str(data.get("errcode", "M_UNKNOWN")),
                            str(data.get("error", "")),
                            data,
                        )
                    return data
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                if attempt <= retries:
                    await asyncio.sleep(0.5 * attempt)
                    continue
                raise HomeserverUnavailable(f"{method} {path}: {type(exc).__name__}") from exc

    # ------------------------------------------------------------ account

    async def login_password(self, user: str, password: str, device_name: str) -> dict[str, Any]:
        return await self.request(
            "POST",
            "/_matrix/client/v3/login",
            {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": user},
                "password": password,
                "initial_device_display_name": device_name,
            },
        )

    async def whoami(self) -> dict[str, Any]:
        return await self.request("GET", "/_matrix/client/v3/account/whoami")

    # ------------------------------------------------------------ rooms

    async def create_room(self, body: dict[str, Any]) -> str:
        data = await self.request("POST", "/_matrix/client/v3/createRoom", body)
        return str(data["room_id"])

    async def invite(self, room_id: str, user_id: str, reason: str | None = None) -> None:
        body: dict[str, Any] = {"user_id": user_id}
        if reason:
            body["reason"] = reason
        await self.request("POST", f"/_matrix/client/v3/rooms/{q(room_id)}/invite", body)

    async def kick(self, room_id: str, user_id: str, reason: str | None = None) -> None:
        body: dict[str, Any] = {"user_id": user_id}
        if reason:
            body["reason"] = reason
        await self.request("POST", f"/_matrix/client/v3/rooms/{q(room_id)}/kick", body)

    async def leave(self, room_id: str) -> None:
        await self.request("POST", f"/_matrix/client/v3/rooms/{q(room_id)}/leave", {})

    async def join(self, room_id: str) -> None:
        await self.request("POST", f"/_matrix/client/v3/join/{q(room_id)}", {})

    async def put_state(
        self, room_id: str, event_type: str, state_key: str, content: dict[str, Any]
    ) -> str:
        data = await self.request(
            "PUT",
            f"/_matrix/client/v3/rooms/{q(room_id)}/state/{q(event_type)}/{q(state_key)}",
            content,
        )
        return str(data.get("event_id", ""))

    async def get_state(self, room_id: str, event_type: str, state_key: str = "") -> dict[str, Any]:
        return await self.request(
            "GET",
            f"/_matrix/client/v3/rooms/{q(room_id)}/state/{q(event_type)}/{q(state_key)}",
        )

    async def joined_members(self, room_id: str) -> dict[str, Any]:
        data = await self.request("GET", f"/_matrix/client/v3/rooms/{q(room_id)}/joined_members")
        joined: dict[str, Any] = data.get("joined", {})
        return joined

    async def members(self, room_id: str) -> dict[str, str]:
        """Every member's current membership (join, invite, leave, ban, knock)."""
        data = await self.request("GET", f"/_matrix/client/v3/rooms/{q(room_id)}/members")
        return {
            str(ev["state_key"]): str(ev["content"].get("membership", ""))
            for ev in data.get("chunk", [])
        }

    async def send_plain(
        self, room_id: str, event_type: str, content: dict[str, Any], txn_id: str
    ) -> str:
        """Send an unencrypted event (only for rooms that are not encrypted, e.g. none of ours)."""
        data = await self.request(
            "PUT",
            f"/_matrix/client/v3/rooms/{q(room_id)}/send/{q(event_type)}/{q(txn_id)}",
            content,
        )
        return str(data["event_id"])
