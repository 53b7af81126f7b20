"""What the patient is told in the pair room: the expected reply time, and a missed one.

Both notices quote the pair's own clock and policy, and carry a transaction id derived
from the clock, so a retried decision never posts twice.
"""

from __future__ import annotations

from typing import Any

from bridge.core.model import Pair, SendMessage
from bridge.core.sla.clock import Clock, Step, iso_local, iso_utc
from bridge.core.sla.hours import delivered_at
from bridge.core.sla.policy import SlaPolicy
from bridge.core.workhours import WorkingCalendar


def expected_reply_notice(
    clock: Clock,
    pair: Pair,
    policy: SlaPolicy,
    cal: WorkingCalendar,
    *,
    out_of_hours: bool,
    therapist_away: bool,
) -> SendMessage | None:
    """The note with the expected reply time for a clock just opened; None if the policy says no.

    Out of hours it carries the policy's crisis line, if it has one. The time quoted is
    when the due reminder reaches the therapist: the due time itself, or the next opening
    where the policy holds reminders until then, so it never promises a time that no
    reminder backs.
    """
    if not (
        policy.patient_notice == "always"
        or (policy.patient_notice == "out_of_hours" and out_of_hours)
    ):
        return None
    reply_by = delivered_at(cal, policy, Step.DUE, clock.due_at)
    context: dict[str, Any] = {
        "pair_label": pair.label or pair.pair_id,
        "due_at": iso_utc(reply_by),
        "due_at_local": iso_local(reply_by, cal),
        "timezone": cal.tz.key,
        "out_of_hours": out_of_hours,
        "therapist_away": therapist_away,
    }
    if out_of_hours and policy.crisis_line:
        context["crisis_line"] = policy.crisis_line
    return SendMessage(
        pair.room_id,
        "sla_expected_reply",
        context,
        txn_id=f"sla:{pair.pair_id}:{clock.clock_id}:notice",
        pair_id=pair.pair_id,
    )


def breach_notice(clock: Clock, pair: Pair) -> SendMessage:
    """The note that the expected reply time has passed (`tell_patient_on_breach`)."""
    return SendMessage(
        pair.room_id,
        "sla_breach_patient",
        {"pair_label": pair.label or pair.pair_id, "due_at": iso_utc(clock.due_at)},
        txn_id=f"sla:{clock.pair_id}:{clock.clock_id}:breach_notice",
        pair_id=clock.pair_id,
    )


__all__ = ["breach_notice", "expected_reply_notice"]
