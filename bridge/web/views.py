"""How records look in the API's JSON: ids, labels and times, never content.

A pair shows no e-mail address (only whether it has one), an invitation never its code.
Times are ISO 8601 in UTC with a `Z`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.core.sla import Clock
from bridge.store.base import from_ms
from bridge.store.invitations import InvitationRecord
from bridge.store.pairs import PairRecord


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def iso_ms(value: int | None) -> str | None:
    return iso(from_ms(value)) if value is not None else None


def seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def pair_json(record: PairRecord) -> dict[str, Any]:
    """A pair as the API shows it: ids and label; the patient's e-mail address stays out."""
    return {
        "pair_id": record.pair_id,
        "label": record.label,
        "patient_id": record.patient_id,
        "therapist_id": record.therapist_id,
        "room_id": record.room_id,
        "status": record.status.value,
        "policy": record.policy,
        "consent_state": record.consent_state,
        "has_patient_email": record.has_patient_email,
        "created_at": iso_ms(record.created_at),
        "removed_at": iso_ms(record.removed_at),
    }


def invitation_json(record: InvitationRecord) -> dict[str, Any]:
    """An invitation as the API shows it: never its code (the registration token)."""
    return {
        "invitation_id": record.invitation_id,
        "email": record.email,
        "therapist_id": record.therapist_id,
        "policy": record.policy,
        "status": record.status.value,
        "created_at": iso_ms(record.created_at),
        "expires_at": iso_ms(record.expires_at),
        "sent_count": record.sent_count,
        "last_sent_at": iso_ms(record.last_sent_at),
        "patient_id": record.patient_id,
        "pair_id": record.pair_id,
        "closed_at": iso_ms(record.closed_at),
    }


def clock_json(clock: Clock, label: str | None, now: datetime) -> dict[str, Any]:
    return {
        "clock_id": clock.clock_id,
        "pair_id": clock.pair_id,
        "label": label,
        "therapist_id": clock.therapist_id,
        "policy": clock.policy,
        "opened_at": iso(clock.opened_at),
        "due_at": iso(clock.due_at),
        "heads_up_at": iso(clock.heads_up_at),
        "escalate_at": iso(clock.escalate_at),
        "overdue": clock.due_at < now,
        "paused": clock.paused_since is not None,
        "first_kind": clock.first_kind,
    }


def policy_json(values: Mapping[str, Any]) -> dict[str, Any]:
    """A policy's settings as JSON: durations in seconds, tuples as lists."""

    def plain(value: Any) -> Any:
        if isinstance(value, timedelta):
            return int(value.total_seconds())
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        return value

    return {key: plain(value) for key, value in values.items()}
