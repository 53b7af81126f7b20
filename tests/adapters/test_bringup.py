"""The Matrix bring-up's retries and the bot's reserved device."""

from __future__ import annotations

import asyncio
import logging
import stat
from pathlib import Path

import pytest

from bridge.adapters.matrix.bringup import Backoff, BringUp, retry
from bridge.adapters.matrix.rest import HomeserverUnavailable, MatrixError
from bridge.adapters.matrix.session import (
    BotCredentials,
    deferred_credentials,
    device_id_path,
    reserved_device_id,
    save_credentials,
)

# ------------------------------------------------------------------ backoff


def test_backoff_doubles_from_one_second_up_to_a_minute_without_jitter():
    backoff = Backoff()
    assert [backoff.delay(n, 0.0) for n in range(1, 10)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert backoff.delay(10_000, 0.0) == 60


def test_jitter_only_shortens_the_wait_by_at_most_a_quarter():
    backoff = Backoff()
    assert backoff.delay(3, 0.999) == pytest.approx(4 * 0.75, rel=1e-3)
    assert Backoff(jitter=0).delay(3, 0.999) == 4


# ------------------------------------------------------------------ retries


class Flaky:
    """Fails with the given errors in turn, then succeeds; counts its calls."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def test_retry_warns_once_per_failure_with_step_and_error_class(caplog):
    flaky = Flaky(HomeserverUnavailable("POST /login: HTTP 502"), ConnectionResetError())
    sleeps = Sleeps()
    with caplog.at_level(logging.WARNING, logger="bridge.adapters.matrix.bringup"):
        result = await retry("login", flaky, Backoff(), sleep=sleeps, rand=lambda: 0.0)
    assert result == "done"
    assert flaky.calls == 3
    assert sleeps.waits == [1, 2]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [(r.step, r.error, r.attempt) for r in warnings] == [
        ("login", "HomeserverUnavailable", 1),
        ("login", "ConnectionResetError", 2),
    ]
    # The error's text (a path, perhaps more) is not in the line, only its class.
    assert all("502" not in r.getMessage() for r in warnings)


async def test_a_refusal_names_its_status_and_errcode(caplog):
    flaky = Flaky(MatrixError(403, "M_FORBIDDEN", "Invalid password", {}))
    with caplog.at_level(logging.WARNING, logger="bridge.adapters.matrix.bringup"):
        await retry("login", flaky, Backoff(), sleep=Sleeps(), rand=lambda: 0.0)
    [warning] = caplog.records
    assert (warning.error, warning.status, warning.errcode) == ("MatrixError", 403, "M_FORBIDDEN")
    assert "Invalid password" not in warning.getMessage()


async def test_steps_run_in_order_and_a_done_step_is_not_repeated():
    login = Flaky()
    keys = Flaky(HomeserverUnavailable("down"), HomeserverUnavailable("down"))
    signing = Flaky(RuntimeError("the bot's device has no keys on the homeserver yet"))
    sleeps = Sleeps()
    bring_up = BringUp(
        [("login", login), ("keys upload", keys), ("cross-signing", signing)],
        sleep=sleeps,
        rand=lambda: 0.0,
    )
    await bring_up.run()
    assert (login.calls, keys.calls, signing.calls) == (1, 3, 2)
    # Each step starts its own backoff from the first wait.
    assert sleeps.waits == [1, 2, 1]
    assert bring_up.ready.is_set() and bring_up.first_failure.is_set()
    assert bring_up.detail == "ready"


async def test_the_first_failure_is_known_while_the_step_keeps_retrying():
    gate = asyncio.Event()

    async def sleep(_seconds: float) -> None:
        await gate.wait()

    bring_up = BringUp([("keys upload", Flaky(HomeserverUnavailable("down")))], sleep=sleep)
    task = asyncio.create_task(bring_up.run())
    await asyncio.wait_for(bring_up.first_failure.wait(), 5)
    assert not bring_up.ready.is_set()
    assert bring_up.detail == "keys upload: HomeserverUnavailable (1 failed attempt)"
    gate.set()
    await asyncio.wait_for(task, 5)
    assert bring_up.ready.is_set()


async def test_cancelling_the_bring_up_stops_the_retries():
    bring_up = BringUp([("login", Flaky(*[HomeserverUnavailable("down")] * 100))])
    task = asyncio.create_task(bring_up.run())
    await asyncio.wait_for(bring_up.first_failure.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not bring_up.ready.is_set()


# ------------------------------------------------------------------ the reserved device


def test_the_reserved_device_id_is_kept_until_the_login_is_saved(tmp_path: Path):
    device_id = reserved_device_id(tmp_path)
    assert device_id.startswith("CONFIDANT")
    assert reserved_device_id(tmp_path) == device_id
    assert stat.S_IMODE(device_id_path(tmp_path).stat().st_mode) == 0o600
    save_credentials(tmp_path, BotCredentials("@bot:hs", device_id, "tok"))
    assert not device_id_path(tmp_path).exists()
    # A session lost later means a new device, as a fresh login always did.
    assert reserved_device_id(tmp_path) != device_id


def test_deferred_credentials(tmp_path: Path):
    pending = deferred_credentials(tmp_path, user_id="@bot:hs", password="pw", access_token=None)
    assert pending == BotCredentials("@bot:hs", reserved_device_id(tmp_path), "")
    assert not pending.logged_in
    # A configured token names a device only the homeserver knows.
    assert (
        deferred_credentials(tmp_path, user_id="@bot:hs", password=None, access_token="t") is None
    )
    save_credentials(tmp_path, BotCredentials("@bot:hs", "DEV", "tok"))
    stored = deferred_credentials(tmp_path, user_id="@bot:hs", password="pw", access_token="t")
    assert stored == BotCredentials("@bot:hs", "DEV", "tok")
    assert stored.logged_in
    # Another bot's session is not ours.
    assert not deferred_credentials(
        tmp_path, user_id="@other:hs", password="pw", access_token=None
    ).logged_in
