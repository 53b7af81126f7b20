"""Bringing the bot's device up on the homeserver, retried until the homeserver answers.

The bridge starts what needs only its database first (SMTP, HTTP, timers). The steps
that need the homeserver (login, device keys, cross-signing, the sync loop) then run in
a background task, in order, each retried on its own with capped exponential backoff
and jitter: a homeserver that is down or answers 5xx at start delays Matrix, never the
bridge. Every failed attempt logs one warning naming the step and the error class
(never a URL, a token or a body).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from nio import KeysUploadResponse

from bridge.adapters.matrix.client import MatrixBot
from bridge.adapters.matrix.rest import MatrixError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: One named step; it raises when the homeserver did not do what it needs.
Step = tuple[str, Callable[[], Awaitable[object]]]


@dataclass(frozen=True)
class Backoff:
    """Waits between attempts: `first` doubling up to `cap`, each shortened by up to `jitter`.

    Jitter keeps a fleet of bridges (or a bridge and its standby) from retrying in step
    against a homeserver that is just coming back.
    """

    first: float = 1.0
    cap: float = 60.0
    jitter: float = 0.25

    def delay(self, failures: int, rand: float) -> float:
        """The wait after `failures` failed attempts in a row (1 or more); `rand` in [0, 1)."""
        base = min(self.cap, self.first * 2.0 ** min(failures - 1, 32))
        return base * (1 - self.jitter * rand)


class KeysUploadFailed(RuntimeError):
    """The homeserver did not take the device keys (nio returns an error, it does not raise)."""


async def upload_device_keys(bot: MatrixBot) -> None:
    """Publish the device's keys if they are not yet, and fail loudly if that did not work."""
    client = bot.client
    if not client.should_upload_keys:
        return
    resp = await client.keys_upload()
    if not isinstance(resp, KeysUploadResponse):
        raise KeysUploadFailed(str(getattr(resp, "status_code", "") or "no answer"))


async def first_sync(bot: MatrixBot, within: float = 60.0) -> None:
    """Wait for the sync loop's first batch: until then the bot knows none of its rooms.

    The loop retries its own requests; this only bounds one wait so that a slow start is
    logged and waited for again.
    """
    await asyncio.wait_for(bot.first_sync_done.wait(), within)


def error_fields(exc: BaseException) -> dict[str, object]:
    """What a log line may say about a failure: its class, and the HTTP status if any."""
    fields: dict[str, object] = {"error": type(exc).__name__}
    if isinstance(exc, MatrixError):
        fields["status"] = exc.status
        fields["errcode"] = exc.errcode
    return fields


async def retry(
    name: str,
    action: Callable[[], Awaitable[T]],
    backoff: Backoff,
    *,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
    on_failure: Callable[[Exception, int], object] | None = None,
) -> T:
    """Run `action` until it succeeds; after each failure warn once, then wait out the backoff."""
    failures = 0
    while True:
        try:
            return await action()
        except Exception as exc:
            failures += 1
            wait = backoff.delay(failures, rand())
            log.warning(
                "matrix %s failed; retrying",
                name,
                extra={"step": name, "attempt": failures, "retry_in_s": round(wait, 1)}
                | error_fields(exc),
            )
            if on_failure is not None:
                on_failure(exc, failures)
            await sleep(wait)


class BringUp:
    """Runs the steps in order, each until it succeeds; `ready` is set once all have.

    `first_failure` is set when a step fails for the first time: the bridge's start
    waits for either, so a reachable homeserver gives a fully started bridge, as before,
    and an unreachable one a bridge whose Matrix side keeps trying in the background.
    """

    def __init__(
        self,
        steps: Sequence[Step],
        *,
        backoff: Backoff | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.steps = list(steps)
        self.backoff = backoff or Backoff()
        self.ready = asyncio.Event()
        self.first_failure = asyncio.Event()
        #: The step under way (None once ready), its failures so far and the last one's class.
        self.step: str | None = None
        self.failures = 0
        self.error: str | None = None
        self._sleep = sleep
        self._rand = rand

    @property
    def detail(self) -> str:
        """One line for /health: "ready", or the step being retried and why."""
        if self.ready.is_set():
            return "ready"
        if self.error is None:
            return f"{self.step or 'starting'}: in progress"
        attempts = f"{self.failures} failed attempt" + ("s" if self.failures != 1 else "")
        return f"{self.step}: {self.error} ({attempts})"

    async def run(self) -> None:
        """Every step in order; returns once all succeeded (cancel it to give up)."""
        for name, action in self.steps:
            self.step, self.failures, self.error = name, 0, None
            await retry(
                name,
                action,
                self.backoff,
                sleep=self._sleep,
                rand=self._rand,
                on_failure=self._failed,
            )
        self.step, self.error = None, None
        self.ready.set()

    def _failed(self, exc: Exception, failures: int) -> None:
        self.failures = failures
        self.error = type(exc).__name__
        self.first_failure.set()
