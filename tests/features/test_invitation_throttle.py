"""The resend limit, as a table: one e-mail a minute and five a day per invitation."""

from __future__ import annotations

import pytest

from bridge.features.onboarding.throttle import DAY_MS, MIN_INTERVAL_MS, PER_DAY, next_send

MIN = 60_000


@pytest.mark.parametrize(
    ("recent", "now", "wait_ms"),
    [
        ((), 0, 0),  # the first e-mail
        ((0,), MIN_INTERVAL_MS - 1, 1),  # within the minute
        ((0,), MIN_INTERVAL_MS, 0),  # a minute later
        ((0, 2 * MIN, 4 * MIN, 6 * MIN), 8 * MIN, 0),  # the fifth of the day
        ((0, 2 * MIN, 4 * MIN, 6 * MIN, 8 * MIN), 10 * MIN, DAY_MS - 10 * MIN),  # a sixth
        ((0, 2 * MIN, 4 * MIN, 6 * MIN, 8 * MIN), DAY_MS, 0),  # the first left the day
        ((8 * MIN, 0, 6 * MIN, 2 * MIN, 4 * MIN), 10 * MIN, DAY_MS - 10 * MIN),  # any order
    ],
)
def test_next_send(recent: tuple[int, ...], now: int, wait_ms: int) -> None:
    slot = next_send(recent, now)
    assert slot.wait_ms == wait_ms
    if wait_ms == 0:
        assert slot.sends[-1] == now and len(slot.sends) <= PER_DAY
    else:
        assert slot.reason


def test_sends_older_than_a_day_are_not_kept() -> None:
    slot = next_send((0, MIN), DAY_MS + 2 * MIN)
    assert slot.sends == (DAY_MS + 2 * MIN,)
