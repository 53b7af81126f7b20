"""How often an invitation may be e-mailed: pure, from the times its e-mails went out.

A resend is the operator's answer to "I did not get it"; a loop of them (a script, a button
pressed in a hurry) must not flood the patient's mailbox or make the practice's relay look
like a spammer's. One e-mail per invitation a minute, five in any day.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The shortest time between two e-mails of one invitation.
MIN_INTERVAL_MS = 60_000
#: The window the daily limit counts in.
DAY_MS = 86_400_000
#: How many e-mails one invitation may send within a day (the first one included).
PER_DAY = 5


@dataclass(frozen=True, slots=True)
class SendSlot:
    """The answer for one more e-mail: allowed (`wait_ms` 0) with the sends to record, or
    refused for `wait_ms` more milliseconds."""

    wait_ms: int
    sends: tuple[int, ...]
    reason: str = ""


def next_send(recent: tuple[int, ...], now_ms: int) -> SendSlot:
    """May one more e-mail go out at `now_ms`, given when the recent ones went out?"""
    kept = tuple(sorted(ms for ms in recent if now_ms - ms < DAY_MS))
    if kept and now_ms - kept[-1] < MIN_INTERVAL_MS:
        return SendSlot(kept[-1] + MIN_INTERVAL_MS - now_ms, kept, "one e-mail a minute")
    if len(kept) >= PER_DAY:
        # The oldest e-mail of the window leaves it first.
        return SendSlot(kept[-PER_DAY] + DAY_MS - now_ms, kept, f"{PER_DAY} e-mails a day")
    return SendSlot(0, (*kept, now_ms))
