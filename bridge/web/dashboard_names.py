"""Therapists' display names from the homeserver, fetched once per user and kept.

The dashboard shows a therapist's display name where it has one; the profile is asked for
once (all missing names of a page at the same time, each with a short timeout) and kept for
an hour, so a page of 5,000 pairs does not wait on the homeserver. A failed lookup shows the
Matrix id and is asked again after a few minutes. Patients' names are never looked up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import quote

log = logging.getLogger(__name__)

#: Fetches GET /profile/{user}/displayname's body; raises when the homeserver does not answer.
ProfileFetch = Callable[[str], Awaitable[dict[str, object]]]

KEEP_FOR = 3600.0
RETRY_AFTER = 300.0
TIMEOUT = 2.0


def profile_path(user_id: str) -> str:
    return f"/_matrix/client/v3/profile/{quote(user_id, safe='')}/displayname"


class ProfileNames:
    """Display names by user id, cached; the id itself when there is none."""

    def __init__(self, fetch: ProfileFetch, *, clock: Callable[[], float] = time.monotonic):
        self._fetch = fetch
        self._clock = clock
        self._known: dict[str, tuple[str, float]] = {}

    async def _one(self, user_id: str) -> tuple[str, float]:
        try:
            body = await asyncio.wait_for(self._fetch(user_id), TIMEOUT)
        except Exception as exc:
            log.info("display name lookup failed", extra={"error": type(exc).__name__})
            return user_id, self._clock() + RETRY_AFTER
        name = body.get("displayname")
        shown = name.strip() if isinstance(name, str) and name.strip() else user_id
        return shown, self._clock() + KEEP_FOR

    async def names(self, user_ids: Iterable[str]) -> dict[str, str]:
        wanted = sorted(set(user_ids))
        now = self._clock()
        missing = [u for u in wanted if u not in self._known or self._known[u][1] <= now]
        if missing:
            found = await asyncio.gather(*(self._one(u) for u in missing))
            self._known.update(zip(missing, found, strict=True))
        return {u: self._known[u][0] for u in wanted}


__all__ = ["ProfileNames", "profile_path"]
