"""The SLA report's rows kept for a while, so the trends page does not read every week anew.

The trends page asks `sla_report` once per week of its range; a week that has ended changes
only when one of its clocks still open closes, so its rows are kept for `PAST_FOR`; a period
that reaches into the present is kept for `PRESENT_FOR` (the page says "as of"). Kept in
memory, per running bridge; only ids and figures, never content.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime

from bridge.core.sla_report import TherapistStats

PAST_FOR = 600.0
PRESENT_FOR = 60.0
#: Enough for two years of weeks for a few ranges; the oldest go first past it.
MAX_ENTRIES = 512

Key = tuple[datetime, datetime, str]


class ReportCache:
    """`sla_report` rows by (start, end, grouping), each with its expiry."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._rows: dict[Key, tuple[float, list[TherapistStats]]] = {}

    async def rows(
        self,
        key: Key,
        now: datetime,
        compute: Callable[[], Awaitable[list[TherapistStats]]],
    ) -> list[TherapistStats]:
        at = self._clock()
        kept = self._rows.get(key)
        if kept is not None and kept[0] > at:
            return kept[1]
        rows = await compute()
        keep_for = PAST_FOR if key[1] <= now else PRESENT_FOR
        if len(self._rows) >= MAX_ENTRIES:
            for old in sorted(self._rows, key=lambda k: self._rows[k][0])[: MAX_ENTRIES // 4]:
                del self._rows[old]
        self._rows[key] = (at + keep_for, rows)
        return rows


__all__ = ["PAST_FOR", "PRESENT_FOR", "ReportCache"]
