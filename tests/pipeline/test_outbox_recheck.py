"""How often a notice waiting for its member is looked at again: rarely, once it has waited."""

from __future__ import annotations

from bridge.outbox import AWAIT_RECHECK_MAX_SECONDS, AWAIT_RECHECK_SECONDS, await_recheck_seconds


def test_looks_double_up_to_a_cap() -> None:
    waits = [await_recheck_seconds(n) for n in range(8)]
    assert waits[0] == AWAIT_RECHECK_SECONDS
    assert waits == sorted(waits) and waits[1] == 2 * waits[0]
    assert waits[-1] == AWAIT_RECHECK_MAX_SECONDS
    assert await_recheck_seconds(10_000) == AWAIT_RECHECK_MAX_SECONDS
